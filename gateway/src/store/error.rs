//! [`StoreError`]: every message names what failed and what to do about it.

use std::io;
use std::path::{Path, PathBuf};

/// A store, group-commit or encryption failure. `Clone` so that one failed flush can be
/// reported to every commit that was waiting on it.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The disk (or the quota) is full.
    #[error(
        "cannot write to the data directory {}: {detail}; free space, then retry — nothing was acknowledged",
        dir.display()
    )]
    DiskFull {
        /// The data directory.
        dir: PathBuf,
        /// The operating system's error.
        detail: String,
    },
    /// Any other I/O failure of the data directory.
    #[error(
        "cannot read or write the data directory {}: {detail}; check the disk and the directory's permissions, then retry — nothing was acknowledged",
        dir.display()
    )]
    Io {
        /// The data directory.
        dir: PathBuf,
        /// The operating system's error.
        detail: String,
    },
    /// Free space on the data directory's file system is below the configured floor
    /// (`[storage] min_free_bytes`): new work is refused until space is freed. Temporary.
    #[error(
        "the disk of the data directory {} has {free} bytes free, below the floor of {min} bytes ([storage] min_free_bytes): new work is refused until space is freed; free space, then retry — nothing was acknowledged",
        dir.display()
    )]
    LowSpace {
        /// The data directory.
        dir: PathBuf,
        /// Bytes available to the gateway.
        free: u64,
        /// The configured floor.
        min: u64,
    },
    /// An apply or a flush did not finish in time: the disk hangs, or the store does.
    #[error(
        "{what} of the store did not finish within {secs} s (the disk is hung, failing or full): the store stopped; nothing was acknowledged — check the disk, then start the gateway again"
    )]
    Stalled {
        /// What hung.
        what: &'static str,
        /// The bound, in seconds.
        secs: f64,
    },
    /// Another process holds the data directory.
    #[error(
        "the data directory {} is in use by another process (another gateway?); stop it or configure another directory",
        dir.display()
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// The stored data is damaged.
    #[error("the store is corrupt ({what}: {detail}); restore the data directory from a backup")]
    Corrupt {
        /// Where the damage was found.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// A bug or an unexpected backend failure.
    #[error(
        "the store failed unexpectedly: {detail}; nothing was acknowledged — report this with the gateway log"
    )]
    Internal {
        /// What happened.
        detail: String,
    },
    /// The master key file is accessible by group or others, or belongs to another account.
    #[error(transparent)]
    KeyFileExposed(#[from] tsunagi_certs::local::Exposed),
    /// The master key file does not hold a key.
    #[error(
        "the master key file {} holds {len} bytes, not 32: it is not a tsunagi master key; restore the right file (a new key would leave the existing data unreadable)",
        path.display()
    )]
    KeyFileLength {
        /// The key file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
    },
    /// The master key file cannot be read or created.
    #[error(
        "cannot read or create the master key file {}: {detail}; check that its directory exists and is writable by the gateway",
        path.display()
    )]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// The operating system's error.
        detail: String,
    },
    /// A case key does not unwrap with this gateway's master key.
    #[error(
        "the key of case {case} does not unwrap with this gateway's master key: the master key file does not belong to this data directory; restore the right key file"
    )]
    WrongMasterKey {
        /// The case id.
        case: String,
    },
    /// The case was purged: its key is destroyed.
    #[error("case {case} was purged: its key is destroyed and its data can no longer be read")]
    Purged {
        /// The case id.
        case: String,
    },
    /// No key was ever stored for the case.
    #[error("no key is stored for case {case}: this data directory never held data of that case")]
    UnknownCase {
        /// The case id.
        case: String,
    },
    /// Sealed data does not open with its case key.
    #[error(
        "cannot decrypt a record of case {case}: it was altered, or it belongs to another case or record; restore it from a backup"
    )]
    Decrypt {
        /// The case id.
        case: String,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed while {what}; check the operating system")]
    Random {
        /// What needed randomness.
        what: &'static str,
    },
}

impl StoreError {
    /// Maps an I/O error on the data directory `dir`: a full disk or quota becomes
    /// [`StoreError::DiskFull`].
    pub(crate) fn io(dir: &Path, e: &io::Error) -> Self {
        let full = e.kind() == io::ErrorKind::StorageFull
            || matches!(e.raw_os_error(), Some(28 /* ENOSPC */ | 122 /* EDQUOT */));
        let dir = dir.to_path_buf();
        let detail = match e.raw_os_error() {
            // sled wraps the OS error in a custom one whose text is a debug dump.
            None if full => "No space left on device".to_owned(),
            _ => e.to_string(),
        };
        if full {
            StoreError::DiskFull { dir, detail }
        } else {
            StoreError::Io { dir, detail }
        }
    }

    /// The exit status of a gateway that stops because its store stopped with this error:
    /// 75 (`EX_TEMPFAIL`) for a full disk, 74 (`EX_IOERR`) for anything else.
    pub fn exit_status(&self) -> u8 {
        match self {
            StoreError::DiskFull { .. } | StoreError::LowSpace { .. } => 75,
            _ => 74,
        }
    }

    /// The one log line of a gateway that stops because its store stopped with this error.
    pub fn stop_message(&self) -> String {
        let status = self.exit_status();
        match self {
            StoreError::DiskFull { dir, detail } => format!(
                "stopping (exit status {status}): the disk of the data directory {} is full ({detail}); nothing acknowledged was lost (every acknowledged write was on disk first) and senders retry — free space, then start the gateway again",
                dir.display()
            ),
            other => format!(
                "stopping (exit status {status}): the store cannot write any more: {other}; nothing acknowledged was lost (every acknowledged write was on disk first) and senders retry — fix the disk, then start the gateway again"
            ),
        }
    }

    /// Maps a sled error for the store in `dir`.
    pub(crate) fn sled(dir: &Path, e: sled::Error) -> Self {
        match e {
            // sled reports a held lock as a plain `Other` I/O error.
            sled::Error::Io(e) if e.to_string().contains("could not acquire lock") => {
                StoreError::Locked {
                    dir: dir.to_path_buf(),
                }
            }
            sled::Error::Io(e) => StoreError::io(dir, &e),
            sled::Error::Corruption { at, .. } => StoreError::Corrupt {
                what: dir.display().to_string(),
                detail: format!("sled found a damaged log entry at {at:?}"),
            },
            other => StoreError::Internal {
                detail: format!("sled, in {}: {other}", dir.display()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_from_sled_is_disk_full_and_says_nothing_was_acknowledged() {
        let e = sled::Error::Io(io::Error::from_raw_os_error(28));
        let e = StoreError::sled(Path::new("/x"), e);
        assert!(matches!(e, StoreError::DiskFull { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.starts_with("cannot write to the data directory /x: "),
            "{msg}"
        );
        assert!(
            msg.ends_with("free space, then retry — nothing was acknowledged"),
            "{msg}"
        );
    }
}
