//! Reading and writing the files a user names on the command line.
//!
//! Every error names the file and what went wrong with it, in one line, so that a user who typed
//! a wrong path or picked the wrong file knows which. Outputs are written to a temporary name in
//! the same directory and renamed into place, so a crash never leaves half a document behind.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A command failure: one line for the user.
#[derive(Debug)]
pub struct Fail(pub String);

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fail {}

/// The result of a command.
pub type CliResult<T = ()> = Result<T, Fail>;

/// Makes a [`Fail`] from anything displayable, prefixed with `context`.
pub fn fail(context: impl std::fmt::Display, e: impl std::fmt::Display) -> Fail {
    Fail(format!("{context}: {e}"))
}

/// Reads a whole file.
pub fn read(path: &Path) -> CliResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| fail(format!("cannot read {}", path.display()), e))
}

/// Reads a whole file as UTF-8 text.
pub fn read_text(path: &Path) -> CliResult<String> {
    String::from_utf8(read(path)?)
        .map_err(|_| Fail(format!("{} is not UTF-8 text", path.display())))
}

/// Reads a whole file as JSON.
pub fn read_json(path: &Path) -> CliResult<serde_json::Value> {
    serde_json::from_slice(&read(path)?)
        .map_err(|e| fail(format!("{} is not valid JSON", path.display()), e))
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, directory fsync),
/// readable by its owner only (0600, whatever the umask): what the CLI writes includes signed
/// documents, the disclosure answer and the printable Form 7 package, all personal data.
///
/// The temporary file is created by [`create_temp`], never through a name that already exists:
/// a symbolic link planted at the temporary name (in a shared directory) is neither followed nor
/// removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> CliResult {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| Fail(format!("{} is not a file name", path.display())))?;
    let (tmp, mut f) =
        create_temp(dir, name).map_err(|e| fail(format!("cannot write {}", path.display()), e))?;
    let mut write = || -> std::io::Result<()> {
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        // Created by this call (create_new), so ours to remove.
        let _ = std::fs::remove_file(&tmp);
        fail(format!("cannot write {}", path.display()), e)
    })?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail(format!("cannot sync {}", dir.display()), e))
}

/// The directory `path` is in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates a new temporary file for `name` in `dir`, mode 0600, with `create_new` (O_EXCL): a
/// file or symbolic link already at the name is never opened, followed, truncated or removed.
/// Tries `.NAME.tmp-PID` first, then `.NAME.tmp-PID-RANDOM` names (64 random bits each, which
/// another account cannot plant in advance), [`TEMP_ATTEMPTS`](tsunagi_certs::local::TEMP_ATTEMPTS) names in all. The caller removes
/// the returned path if it does not rename it into place.
pub(crate) fn create_temp(
    dir: &Path,
    name: &std::ffi::OsStr,
) -> std::io::Result<(PathBuf, std::fs::File)> {
    let base = format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id());
    let rng = ring::rand::SystemRandom::new();
    let random = || {
        let mut b = [0u8; 8];
        ring::rand::SecureRandom::fill(&rng, &mut b)
            .map_err(|_| std::io::Error::other("the system random generator failed"))?;
        Ok(format!("{base}-{}", tsunagi_protocol::hex::encode(&b)))
    };
    tsunagi_certs::local::create_private_temp(dir, base.clone(), random)
}

/// The current time from the system clock.
pub fn now() -> tsunagi_protocol::Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    tsunagi_protocol::Timestamp(secs)
}

/// Creates `dir` (and parents) readable by this account only (0700).
pub fn create_private_dir(dir: &Path) -> CliResult {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail(format!("cannot create {}", dir.display()), e))
}

/// [`create_private_dir`] for a gateway's data directory, which is made 0700 also when it
/// existed already with more read access (made by an installer, say; one others may write to
/// is refused by [`tsunagi_certs::local::check_private_dir`]): the files in it, the store's among
/// them, are made with the umask's permissions, and would let other accounts read what the
/// store holds in the clear (case pseudonyms, audit records).
pub fn create_data_dir(dir: &Path) -> CliResult {
    use std::os::unix::fs::PermissionsExt;
    create_private_dir(dir)?;
    let mode = std::fs::metadata(dir)
        .map_err(|e| fail(format!("cannot read {}", dir.display()), e))?
        .permissions()
        .mode()
        & 0o777;
    // One that others may write to is left as it is, for `check_private_dir` to refuse: what
    // is in it may have been planted.
    if mode & 0o077 != 0 && mode & 0o022 == 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            fail(
                format!(
                    "{} is mode {mode:03o}, which lets other accounts read what is in it, and cannot be made 0700",
                    dir.display()
                ),
                e,
            )
        })?;
        tracing::warn!(
            "{} was mode {mode:03o}; made it 0700, so that other accounts cannot read the files in it",
            dir.display()
        );
    }
    Ok(())
}

/// Removes the directory it holds when dropped, however the scope ends (`None`: nothing).
pub struct RemovedOnDrop(pub Option<PathBuf>);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Creates a new directory, mode 0700, under `parent` (a shared one such as `/tmp`) with a name
/// that starts with `prefix` and ends in 64 random bits: a name no other account can guess and
/// plant first. The directory is created, never reused: a name that exists is skipped.
pub fn create_fresh_private_dir(parent: &Path, prefix: &str) -> CliResult<PathBuf> {
    use ring::rand::SecureRandom;
    use std::os::unix::fs::DirBuilderExt;
    let rng = ring::rand::SystemRandom::new();
    for _ in 0..16 {
        let mut suffix = [0u8; 8];
        rng.fill(&mut suffix)
            .map_err(|_| Fail("the system random number generator failed".into()))?;
        let dir = parent.join(format!(
            "{prefix}{}",
            tsunagi_protocol::hex::encode(&suffix)
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(fail(format!("cannot create {}", dir.display()), e)),
        }
    }
    Err(Fail(format!(
        "cannot create a new directory {prefix}… in {}: every name tried exists",
        parent.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::TempDir;

    #[test]
    fn a_data_dir_that_others_may_read_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = TempDir::new("files-data-dir");
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_data_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // One that others may write to is not made private here: it is refused elsewhere.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o757)).unwrap();
        create_data_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o757);
        // Created when missing, 0700.
        let new = tmp.path().join("new");
        create_data_dir(&new).unwrap();
        assert_eq!(
            std::fs::metadata(&new).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    /// The demo's directory in a shared `/tmp`: each one new, private, and named so that no
    /// other account can plant it first (a name that exists is never taken over).
    #[test]
    fn a_fresh_private_dir_is_new_private_and_unguessable() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = TempDir::new("files-fresh");
        let a = create_fresh_private_dir(tmp.path(), "tsunagi-demo-").unwrap();
        let b = create_fresh_private_dir(tmp.path(), "tsunagi-demo-").unwrap();
        assert_ne!(a, b);
        for d in [&a, &b] {
            let meta = std::fs::symlink_metadata(d).unwrap();
            assert!(meta.is_dir());
            assert_eq!(meta.permissions().mode() & 0o777, 0o700);
            assert_eq!(std::fs::read_dir(d).unwrap().count(), 0);
            let name = d.file_name().unwrap().to_str().unwrap();
            let suffix = name.strip_prefix("tsunagi-demo-").unwrap();
            assert_eq!(suffix.len(), 16, "{name}");
            assert!(suffix.bytes().all(|c| c.is_ascii_hexdigit()), "{name}");
        }
    }

    /// Another account plants a symbolic link at the temporary name the write uses first (the
    /// name a run of this process would have used), pointing at a file of its own. Whether the
    /// writer could remove the link (root, or a directory it may write to) or not (another
    /// account's link in a sticky directory), the link must be neither followed nor removed.
    #[test]
    fn write_atomic_neither_follows_nor_removes_a_symlink_planted_at_its_temporary_name() {
        let tmp = TempDir::new("files-symlink");
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        let loot = tmp.path().join("loot");
        std::fs::write(&loot, b"").unwrap();
        let link = shared.join(format!(".answer.html.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&loot, &link).unwrap();
        let out = shared.join("answer.html");

        write_atomic(&out, b"personal data").unwrap();

        let leaked = std::fs::read(&loot).unwrap();
        assert!(
            leaked.is_empty(),
            "written through the planted link: {:?}",
            String::from_utf8_lossy(&leaked)
        );
        assert_eq!(
            std::fs::read_link(&link).ok().as_deref(),
            Some(loot.as_path()),
            "the planted link was removed or replaced"
        );
        assert_eq!(std::fs::read(&out).unwrap(), b"personal data");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Nothing but the link and the output: the temporary file was renamed into place.
        let mut names: Vec<String> = std::fs::read_dir(&shared)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn create_temp_draws_unpredictable_names_after_the_first() {
        let tmp = TempDir::new("files-random");
        let name = std::ffi::OsStr::new("doc.json");
        let (a, _) = create_temp(tmp.path(), name).unwrap();
        let (b, _) = create_temp(tmp.path(), name).unwrap();
        let (c, _) = create_temp(tmp.path(), name).unwrap();
        let first = format!(".doc.json.tmp-{}", std::process::id());
        assert_eq!(a, tmp.path().join(&first));
        assert_ne!(b, c);
        for p in [&b, &c] {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                n.starts_with(&format!("{first}-")) && n.len() == first.len() + 17,
                "{n}"
            );
        }
    }
}
