//! Who may touch the files a gateway or adapter keeps on its own machine.
//!
//! One rule for every secret ([`check_secret`]: `sign.key`, `tls.key`, `ca.key`, the master key,
//! the HTTP API token): it belongs to the account running the service and neither group nor
//! others have any access (`mode & 0o077 == 0`). One rule for every directory holding secrets or
//! the control socket ([`check_private_dir`]): it belongs to that account and neither group nor
//! others may write to it (`mode & 0o022 == 0`), so no other account can replace what is in it.
//! Each refusal is one line naming the file, what is wrong and the command that fixes it.
//!
//! And one way to create the temporary file of an atomic write ([`create_private_temp`]): new,
//! mode 0600, never through a name that exists, so never through a symbolic link another account
//! planted.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The effective uid of this process (the owner of `/proc/self`), without unsafe code.
pub fn effective_uid() -> io::Result<u32> {
    std::fs::metadata("/proc/self").map(|m| m.uid())
}

/// A secret file or private directory other accounts could read or tamper with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Exposed(pub String);

/// The effective uid, or a refusal saying it cannot be determined.
fn euid_for(path: &Path) -> Result<u32, Exposed> {
    effective_uid().map_err(|e| {
        Exposed(format!(
            "cannot check who owns {}: this account's uid is unknown (/proc/self: {e}); mount /proc",
            path.display()
        ))
    })
}

/// Checks a secret file from its metadata (from the open file, so that it is the file read):
/// owned by this process's effective uid and `mode & 0o077 == 0`.
pub fn check_secret(path: &Path, meta: &Metadata) -> Result<(), Exposed> {
    let euid = euid_for(path)?;
    let mode = meta.mode() & 0o7777;
    let p = path.display();
    if meta.uid() != euid {
        return Err(Exposed(format!(
            "the secret file {p} (mode {mode:04o}) belongs to uid {}, not to this account (uid {euid}), so another account controls it; as root run `chown {euid} {p}` and `chmod 600 {p}`, or run the service as its owner",
            meta.uid()
        )));
    }
    if mode & 0o077 != 0 {
        return Err(Exposed(format!(
            "the secret file {p} is mode {mode:04o}, so other accounts can read or change it; run `chmod 600 {p}`, then start again"
        )));
    }
    Ok(())
}

/// Reads `path` after checking it with [`check_secret`] (on the opened file).
pub fn read_secret(path: &Path) -> io::Result<Result<Vec<u8>, Exposed>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    if let Err(e) = check_secret(path, &meta) {
        return Ok(Err(e));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut bytes)?;
    Ok(Ok(bytes))
}

/// Checks a directory that holds secrets or the control socket: it exists, is a directory, is
/// owned by this process's effective uid and `mode & 0o022 == 0`.
pub fn check_private_dir(dir: &Path) -> Result<(), Exposed> {
    let d = dir.display();
    let meta = std::fs::metadata(dir)
        .map_err(|e| Exposed(format!("cannot use the directory {d}: {e}")))?;
    if !meta.is_dir() {
        return Err(Exposed(format!("{d} is not a directory")));
    }
    let euid = euid_for(dir)?;
    if meta.uid() != euid {
        return Err(Exposed(format!(
            "the directory {d} belongs to uid {}, not to the account running this service (uid {euid}), so another account could replace the keys or the control socket in it; as root run `chown {euid} {d}`, or run the service as its owner",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Exposed(format!(
            "the directory {d} is mode {mode:04o}, so other accounts can write to it and replace the keys or the control socket in it; run `chmod go-w {d}` (or `chmod 700 {d}`), then start again"
        )));
    }
    Ok(())
}

/// How many names [`create_private_temp`] tries before giving up.
pub const TEMP_ATTEMPTS: usize = 8;

/// Creates a new temporary file in `dir`, mode 0600 whatever the umask, with `create_new`
/// (O_EXCL): a file or symbolic link already at the name is never opened, followed, truncated or
/// removed. Tries `first`, then names drawn from `next` (callers draw random ones, which another
/// account cannot plant in advance), [`TEMP_ATTEMPTS`] names in all, then fails with an error
/// that names the directory. The caller removes the returned path if it does not rename it into
/// place.
pub fn create_private_temp(
    dir: &Path,
    first: String,
    mut next: impl FnMut() -> io::Result<String>,
) -> io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut name = first;
    let mut tries = 0;
    loop {
        tries += 1;
        let tmp = dir.join(&name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < TEMP_ATTEMPTS => {
                name = next()?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "no free temporary name in {} after {TEMP_ATTEMPTS} tries (the last: {name}); something keeps creating files there: check who can write to that directory, or write elsewhere",
                        dir.display()
                    ),
                ));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::test_support::TempDir;

    #[test]
    fn secrets_must_be_private_and_directories_not_writable_by_others() {
        let tmp = TempDir::new("local");
        let key = tmp.path().join("k.key");
        std::fs::write(&key, b"x").unwrap();
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        for (mode, ok) in [(0o600, true), (0o400, true), (0o640, false), (0o604, false)] {
            set(&key, mode);
            let r = check_secret(&key, &std::fs::metadata(&key).unwrap());
            assert_eq!(r.is_ok(), ok, "{mode:o}: {r:?}");
            if let Err(e) = r {
                let m = e.to_string();
                assert!(m.contains(&format!("mode {mode:04o}")), "{m}");
                assert!(m.contains(&format!("chmod 600 {}", key.display())), "{m}");
            }
        }
        set(&key, 0o644);
        assert!(read_secret(&key).unwrap().is_err());
        set(&key, 0o600);
        assert_eq!(read_secret(&key).unwrap().unwrap(), b"x");

        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        for (mode, ok) in [(0o700, true), (0o755, true), (0o775, false), (0o777, false)] {
            set(&dir, mode);
            let r = check_private_dir(&dir);
            assert_eq!(r.is_ok(), ok, "{mode:o}: {r:?}");
            if let Err(e) = r {
                assert!(e.0.contains("chmod go-w"), "{e}");
            }
        }
        assert!(check_private_dir(&key).is_err());
        assert!(check_private_dir(&tmp.path().join("nowhere"))
            .unwrap_err()
            .0
            .contains("nowhere"));
    }

    #[test]
    fn create_private_temp_gives_up_with_a_clear_error_when_every_name_is_taken() {
        let tmp = TempDir::new("temp-taken");
        let mut n = 0;
        let mut next = || {
            n += 1;
            Ok(format!(".x.tmp-{n}"))
        };
        // Every name the call will try exists already (as another account's files).
        std::fs::write(tmp.path().join(".x.tmp-0"), b"theirs").unwrap();
        for i in 1..TEMP_ATTEMPTS {
            std::fs::write(tmp.path().join(format!(".x.tmp-{i}")), b"theirs").unwrap();
        }
        let e = create_private_temp(tmp.path(), ".x.tmp-0".into(), &mut next).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(
            e.to_string().contains("no free temporary name")
                && e.to_string().contains(&TEMP_ATTEMPTS.to_string()),
            "{e}"
        );
        for i in 0..TEMP_ATTEMPTS {
            let p = tmp.path().join(format!(".x.tmp-{i}"));
            assert_eq!(std::fs::read(p).unwrap(), b"theirs");
        }
        // One free name more, and the next call takes it.
        let (p, _) = create_private_temp(tmp.path(), ".x.tmp-0".into(), || {
            Ok(".x.tmp-free".to_string())
        })
        .unwrap();
        assert_eq!(p, tmp.path().join(".x.tmp-free"));
    }
}
