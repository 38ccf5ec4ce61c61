//! Reading and writing the files a user names on the command line.
//!
//! Every error names the file and what went wrong with it, in one line, so that a user who typed
//! a wrong path or picked the wrong file knows which. Outputs are written to a temporary name in
//! the same directory and renamed into place, so a crash never leaves half a document behind.

use std::io::Write;
use std::path::Path;

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

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename), readable by its owner
/// only (0600, whatever the umask): what the CLI writes includes signed documents, the
/// disclosure answer and the printable Form 7 package, all personal data.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> CliResult {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Fail(format!("{} is not a file name", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        // A temporary file left by a crash may have other permissions: start afresh.
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(format!("cannot write {}", path.display()), e)
    })
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
