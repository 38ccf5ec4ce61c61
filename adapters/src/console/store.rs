//! What the console keeps across a restart: its sessions and the staff's drafts, in its data
//! directory.
//!
//! The directory is created with mode 0700 and refused when another account owns it or may
//! write to it. It holds three files, each written whole (a temporary file, synced, then renamed)
//! with mode 0600:
//!
//! | file | holds |
//! |---|---|
//! | `console.key` | 32 random bytes: the AES-256-GCM key of the two files below |
//! | `sessions.sealed` | each session's SHA-256 token digest (never the token), CSRF token, staff id, role and last use |
//! | `drafts.sealed` | each member of staff's saved drafts (personal data) |
//!
//! Both data files are sealed with AES-256-GCM (`ring`, a random 96-bit nonce per write, the
//! file name as associated data), so a copy of them without the key reveals nothing. A file that
//! does not open (another key, damage) is reported and the console starts without its content
//! rather than not at all: the worst that is lost is a login and a draft.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use super::accounts::Role;

/// The key file's name.
pub const KEY_FILE: &str = "console.key";
/// The sessions file's name.
pub const SESSIONS_FILE: &str = "sessions.sealed";
/// The drafts file's name.
pub const DRAFTS_FILE: &str = "drafts.sealed";

/// Why the console's data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory or a file is exposed to other accounts.
    #[error("console data directory: {0}")]
    Exposed(String),
    /// A file could not be read or written.
    #[error("console data directory: {path}: {detail}; check the disk and the directory's owner, then start the console again")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The key file is not 32 bytes.
    #[error("console data directory: {0} is not a console key (32 bytes); restore it from backup, or remove it together with sessions.sealed and drafts.sealed (everyone logs in again, saved drafts are lost)")]
    BadKey(PathBuf),
}

/// One stored session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSession {
    /// SHA-256 of the cookie token, hex.
    pub digest: String,
    /// The CSRF token of its forms.
    pub csrf: String,
    /// The account id and role, once logged in.
    pub staff: Option<(String, Role)>,
    /// Last use, milliseconds since the Unix epoch.
    pub last_seen_ms: u64,
    /// The login's account stamp ([`super::accounts::Accounts::stamp_of`]); a session stored
    /// before stamps were kept has none, and does not come back.
    #[serde(default)]
    pub stamp: String,
    /// When the session began, milliseconds since the Unix epoch (0 when stored before this
    /// was kept: such a session does not come back).
    #[serde(default)]
    pub started_ms: u64,
}

/// The drafts kept: (account id, form) → field name → values.
pub type StoredDrafts = BTreeMap<(String, String), BTreeMap<String, Vec<String>>>;

#[derive(Serialize, Deserialize)]
struct DraftRow {
    staff: String,
    form: String,
    fields: BTreeMap<String, Vec<String>>,
}

/// The console's data directory, opened.
pub struct ConsoleStore {
    dir: PathBuf,
    key: LessSafeKey,
}

impl std::fmt::Debug for ConsoleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

/// Writes `bytes` to `path` whole, mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    super::private::write(path, bytes).map_err(|e| io(path, e))
}

impl ConsoleStore {
    /// Opens (creating it, 0700, when missing) the data directory `dir` and its key.
    pub fn open(dir: &Path) -> Result<ConsoleStore, StoreError> {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io(dir, e))?;
        }
        tsunagi_certs::local::check_private_dir(dir)
            .map_err(|e| StoreError::Exposed(e.to_string()))?;
        let key_path = dir.join(KEY_FILE);
        let key = if key_path.exists() {
            tsunagi_certs::local::read_secret(&key_path)
                .map_err(|e| io(&key_path, e))?
                .map_err(|e| StoreError::Exposed(e.to_string()))?
        } else {
            let mut k = vec![0u8; 32];
            SystemRandom::new()
                .fill(&mut k)
                .map_err(|_| io(&key_path, "no randomness from the system"))?;
            write_private(&key_path, &k)?;
            k
        };
        let key = UnboundKey::new(&AES_256_GCM, &key)
            .map_err(|_| StoreError::BadKey(key_path.clone()))?;
        Ok(ConsoleStore {
            dir: dir.to_owned(),
            key: LessSafeKey::new(key),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn seal(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| io(&self.dir.join(name), "no randomness from the system"))?;
        let mut out = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut out,
            )
            .map_err(|_| io(&self.dir.join(name), "sealing failed"))?;
        let mut file = nonce.to_vec();
        file.extend(out);
        Ok(file)
    }

    /// The plain content of file `name`, `None` when there is none or it does not open (then
    /// reported in the log).
    fn open_file(&self, name: &str) -> Option<Vec<u8>> {
        let path = self.dir.join(name);
        if !path.exists() {
            return None;
        }
        let bytes = match tsunagi_certs::local::read_secret(&path) {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::warn!("{e}; its content is not used");
                return None;
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), "cannot read: {e}; its content is not used");
                return None;
            }
        };
        if bytes.len() < NONCE_LEN {
            tracing::warn!(file = %path.display(), "too short to be sealed; its content is not used");
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let mut buf = sealed.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        match self
            .key
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut buf)
        {
            Ok(plain) => Some(plain.to_vec()),
            Err(_) => {
                tracing::warn!(
                    file = %path.display(),
                    "does not open with console.key (another key, or damaged); its content is not used"
                );
                None
            }
        }
    }

    /// The sessions stored.
    pub fn load_sessions(&self) -> Vec<StoredSession> {
        self.open_file(SESSIONS_FILE)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Replaces the stored sessions.
    pub fn save_sessions(&self, sessions: &[StoredSession]) -> Result<(), StoreError> {
        let plain = serde_json::to_vec(sessions).map_err(|e| io(&self.dir, e))?;
        let sealed = self.seal(SESSIONS_FILE, &plain)?;
        write_private(&self.dir.join(SESSIONS_FILE), &sealed)
    }

    /// The drafts stored.
    pub fn load_drafts(&self) -> StoredDrafts {
        let rows: Vec<DraftRow> = self
            .open_file(DRAFTS_FILE)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        rows.into_iter()
            .map(|r| ((r.staff, r.form), r.fields))
            .collect()
    }

    /// Replaces the stored drafts.
    pub fn save_drafts(&self, drafts: &StoredDrafts) -> Result<(), StoreError> {
        let rows: Vec<DraftRow> = drafts
            .iter()
            .map(|((staff, form), fields)| DraftRow {
                staff: staff.clone(),
                form: form.clone(),
                fields: fields.clone(),
            })
            .collect();
        let plain = serde_json::to_vec(&rows).map_err(|e| io(&self.dir, e))?;
        let sealed = self.seal(DRAFTS_FILE, &plain)?;
        write_private(&self.dir.join(DRAFTS_FILE), &sealed)
    }
}

/// The staff's saved drafts: in memory, and sealed in the data directory when there is one.
#[derive(Debug, Default)]
pub struct Drafts {
    map: std::sync::Mutex<StoredDrafts>,
    store: Option<std::sync::Arc<ConsoleStore>>,
}

impl Drafts {
    /// Drafts in memory only.
    pub fn in_memory() -> Drafts {
        Drafts::default()
    }

    /// Drafts kept in `store`, with those saved there before.
    pub fn with_store(store: std::sync::Arc<ConsoleStore>) -> Drafts {
        Drafts {
            map: std::sync::Mutex::new(store.load_drafts()),
            store: Some(store),
        }
    }

    /// The draft of `form` saved by `staff`.
    pub fn get(&self, staff: &str, form: &str) -> Option<BTreeMap<String, Vec<String>>> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(staff.to_owned(), form.to_owned()))
            .cloned()
    }

    /// Saves (`Some`) or discards (`None`) the draft of `form` of `staff`. A failure to write it
    /// to the data directory is logged; the draft is kept in memory.
    pub fn set(&self, staff: &str, form: &str, fields: Option<BTreeMap<String, Vec<String>>>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = (staff.to_owned(), form.to_owned());
        let changed = match fields {
            Some(f) => map.insert(key, f.clone()).as_ref() != Some(&f),
            None => map.remove(&key).is_some(),
        };
        if let (true, Some(store)) = (changed, &self.store) {
            if let Err(e) = store.save_drafts(&map) {
                tracing::warn!("drafts not saved to disk (kept until the console restarts): {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "tsunagi-console-store-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn sessions_and_drafts_survive_sealed_and_private() {
        let dir = tmp("roundtrip").join("data");
        let s = ConsoleStore::open(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        let session = StoredSession {
            digest: "ab".repeat(32),
            csrf: "c".repeat(64),
            staff: Some(("clerk1".into(), Role::Clerk)),
            last_seen_ms: 5,
            stamp: "0f".repeat(16),
            started_ms: 4,
        };
        s.save_sessions(std::slice::from_ref(&session)).unwrap();
        let mut drafts = StoredDrafts::new();
        drafts.insert(
            ("clerk1".into(), "plan".into()),
            BTreeMap::from([("person_name".to_owned(), vec!["鈴木 一郎".to_owned()])]),
        );
        s.save_drafts(&drafts).unwrap();
        for f in [SESSIONS_FILE, DRAFTS_FILE] {
            assert_eq!(mode(&dir.join(f)), 0o600);
            let raw = std::fs::read(dir.join(f)).unwrap();
            let text = String::from_utf8_lossy(&raw);
            assert!(
                !text.contains("clerk1") && !text.contains("鈴木"),
                "{f} is not sealed"
            );
        }
        // Opened again (a restart): the same content.
        let s = ConsoleStore::open(&dir).unwrap();
        assert_eq!(s.load_sessions(), vec![session]);
        assert_eq!(s.load_drafts(), drafts);
        // Another key opens nothing, and says so without failing.
        std::fs::remove_file(dir.join(KEY_FILE)).unwrap();
        let s = ConsoleStore::open(&dir).unwrap();
        assert!(s.load_sessions().is_empty() && s.load_drafts().is_empty());
        // A directory others may write to is refused.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ConsoleStore::open(&dir).unwrap_err().to_string();
        assert!(e.contains("chmod"), "{e}");
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }
}
