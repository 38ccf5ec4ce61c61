//! Who may touch the files a gateway or adapter keeps on its own machine.
//!
//! One rule for every secret ([`check_secret`]: `sign.key`, `tls.key`, `ca.key`, the master key,
//! the HTTP API token): it belongs to the account running the service and neither group nor
//! others have any access (`mode & 0o077 == 0`). One rule for every directory holding secrets or
//! the control socket ([`check_private_dir`]): it belongs to that account and neither group nor
//! others may write to it (`mode & 0o022 == 0`), so no other account can replace what is in it.
//! Each refusal is one line naming the file, what is wrong and the command that fixes it.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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
}
