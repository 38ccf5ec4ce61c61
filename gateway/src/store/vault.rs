//! Encryption at rest: the gateway's [`MasterKey`], per-case keys wrapped by it and kept in
//! [`Space::CaseKeys`] ([`Vault`]), and sealing with a [`CaseKey`] (AES-256-GCM from ring).
//!
//! Formats: a wrapped case key is `nonce (12) || AES-256-GCM(master, case key) || tag (16)`
//! with the case id as AAD; sealed data is `nonce (12) || ciphertext || tag (16)` with the
//! caller's AAD. Nonces are random (96 bits), which is safe far beyond the number of records one
//! case key seals. A purged case keeps an empty record in [`Space::CaseKeys`] as a tombstone.
//!
//! Key bytes are never logged: the `Debug` impls print the case id only.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use super::{Batch, Space, Store, StoreError};

const KEY_LEN: usize = 32;

/// The gateway's master key: 32 random bytes in a file only the gateway's user may read. It wraps
/// every case key; losing it makes the whole store unreadable, so back it up apart from the data.
pub struct MasterKey {
    key: LessSafeKey,
}

impl MasterKey {
    /// Loads the key in `path`, or creates it (mode 0600 from the start) if the file does not
    /// exist. Refuses a file that group or others may access, and a file that is not 32 bytes.
    pub fn load_or_create(path: &Path) -> Result<Self, StoreError> {
        let key_err = |e: std::io::Error| StoreError::KeyFile {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        loop {
            match File::open(path) {
                Ok(file) => return Self::load(path, file),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(key_err(e)),
            }
            let mut bytes = [0u8; KEY_LEN];
            random(&mut bytes, "creating the master key")?;
            // Written whole and synced under a temporary name, then linked to its own name,
            // which therefore never names a short file: a crash while creating it leaves no
            // key file (or only the temporary one, replaced next time), never one that stops
            // the gateway from starting.
            let creating = {
                let mut name = path.as_os_str().to_owned();
                name.push(".creating");
                std::path::PathBuf::from(name)
            };
            let _ = std::fs::remove_file(&creating);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&creating)
                .map_err(key_err)?;
            file.write_all(&bytes).map_err(key_err)?;
            file.sync_all().map_err(key_err)?;
            let linked = std::fs::hard_link(&creating, path);
            let _ = std::fs::remove_file(&creating);
            match linked {
                Ok(()) => {}
                // Another process created it meanwhile: load theirs.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(key_err(e)),
            }
            // Make the new directory entry durable too: the key must outlive any data it seals.
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            File::open(parent.unwrap_or(Path::new(".")))
                .and_then(|d| d.sync_all())
                .map_err(key_err)?;
            return Ok(Self::from_bytes(&bytes));
        }
    }

    fn load(path: &Path, mut file: File) -> Result<Self, StoreError> {
        let key_err = |e: std::io::Error| StoreError::KeyFile {
            path: path.to_path_buf(),
            detail: e.to_string(),
        };
        let meta = file.metadata().map_err(key_err)?;
        tsunagi_certs::local::check_secret(path, &meta)?;
        if meta.len() != KEY_LEN as u64 {
            return Err(StoreError::KeyFileLength {
                path: path.to_path_buf(),
                len: meta.len(),
            });
        }
        let mut bytes = [0u8; KEY_LEN];
        file.read_exact(&mut bytes).map_err(key_err)?;
        Ok(Self::from_bytes(&bytes))
    }

    /// The key in `bytes`, as a key file holds it (a backup carries it so): the length is
    /// checked; the file checks of [`MasterKey::open`] do not apply, as there is no file.
    pub fn from_key_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        let bytes: &[u8; KEY_LEN] = bytes.try_into().map_err(|_| StoreError::Corrupt {
            what: "the master key in the backup".into(),
            detail: format!("{} bytes instead of {KEY_LEN}", bytes.len()),
        })?;
        Ok(Self::from_bytes(bytes))
    }

    fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        MasterKey {
            key: aes_key(bytes),
        }
    }

    /// Loads the key in `path`, which must exist (a restore or a rotation never makes up a key):
    /// the same checks as [`MasterKey::load_or_create`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let file = File::open(path).map_err(|e| StoreError::KeyFile {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        Self::load(path, file)
    }

    /// `nonce || AES-256-GCM(self, case key) || tag`, the case id as AAD.
    fn wrap(&self, case: &str, bytes: &[u8; KEY_LEN]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce, "wrapping a case key")?;
        let mut wrapped = bytes.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(case.as_bytes()),
                &mut wrapped,
            )
            .map_err(|_| StoreError::Internal {
                detail: "AES-GCM refused to wrap a case key".into(),
            })?;
        wrapped.splice(0..0, nonce);
        Ok(wrapped)
    }

    /// The case key in the (non-empty) wrapped record `rec` of `case`.
    fn unwrap(&self, case: &str, rec: &mut [u8]) -> Result<[u8; KEY_LEN], StoreError> {
        let wrong = || StoreError::WrongMasterKey { case: case.into() };
        if rec.len() != NONCE_LEN + KEY_LEN + AES_256_GCM.tag_len() {
            return Err(StoreError::Corrupt {
                what: format!("the key record of case {case}"),
                detail: format!("{} bytes instead of 60", rec.len()),
            });
        }
        let (nonce, body) = rec.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
        let bytes = self
            .key
            .open_in_place(nonce, Aad::from(case.as_bytes()), body)
            .map_err(|_| wrong())?;
        (&*bytes).try_into().map_err(|_| wrong())
    }

    /// Checks that this key unwraps `wrapped`, the key record of `case` (a tombstone of a
    /// purged case passes: there is nothing to unwrap).
    pub fn check_unwraps(&self, case: &str, wrapped: &[u8]) -> Result<(), StoreError> {
        if wrapped.is_empty() {
            return Ok(());
        }
        self.unwrap(case, &mut wrapped.to_vec()).map(|_| ())
    }

    /// The key record of `case` unwrapped with this key and wrapped again with `new` (a
    /// tombstone stays a tombstone).
    pub fn rewrap(
        &self,
        new: &MasterKey,
        case: &str,
        wrapped: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        if wrapped.is_empty() {
            return Ok(Vec::new());
        }
        let bytes = self.unwrap(case, &mut wrapped.to_vec())?;
        new.wrap(case, &bytes)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

/// Per-case keys over a [`Store`]. Use one `Vault` per store: it serialises key creation.
pub struct Vault<S: Store> {
    master: MasterKey,
    store: Arc<S>,
    create: Mutex<()>,
}

impl<S: Store> Vault<S> {
    /// A vault whose case keys are wrapped by `master` and kept in `store`.
    pub fn new(master: MasterKey, store: Arc<S>) -> Self {
        Vault {
            master,
            store,
            create: Mutex::new(()),
        }
    }

    /// The key of `case`: the stored one, or a new random key. A new key is wrapped and
    /// *applied* to the store before it is returned, so the flush of any [`Durable::commit`]
    /// holding data sealed under it (which starts after that apply) makes the key durable
    /// too: no data is acknowledged before its key is on disk.
    ///
    /// Fails with [`StoreError::Purged`] for a purged case (case ids are never reused, so a
    /// late message of a purged case is not given a fresh key).
    ///
    /// [`Durable::commit`]: super::Durable::commit
    pub fn case_key(&self, case: &str) -> Result<CaseKey, StoreError> {
        let _creating = self.create.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(key) = self.stored_key(case)? {
            return Ok(key);
        }
        let mut bytes = [0u8; KEY_LEN];
        random(&mut bytes, "creating a case key")?;
        let wrapped = self.master.wrap(case, &bytes)?;
        let mut batch = Batch::new();
        batch.put(Space::CaseKeys, case, &wrapped);
        self.store.apply(batch)?;
        Ok(CaseKey::new(case, &bytes))
    }

    /// Opens data of `case` sealed with [`CaseKey::seal`]; never creates a key.
    /// Fails with [`StoreError::Purged`] once the case was purged.
    pub fn open(&self, case: &str, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.stored_key(case)?
            .ok_or_else(|| StoreError::UnknownCase { case: case.into() })?
            .open(sealed, aad)
    }

    /// Fails as [`Vault::open`] would for want of a key: [`StoreError::UnknownCase`] when
    /// `case` has none, [`StoreError::Purged`] once it was purged. For callers that remember
    /// what they opened before and must not use it after a purge.
    pub fn require_key(&self, case: &str) -> Result<(), StoreError> {
        match self.store.get(Space::CaseKeys, case.as_bytes())? {
            None => Err(StoreError::UnknownCase { case: case.into() }),
            Some(rec) if rec.is_empty() => Err(StoreError::Purged { case: case.into() }),
            Some(_) => Ok(()),
        }
    }

    /// Adds to `batch` the destruction of `case`'s key (its wrapped key is overwritten by a
    /// tombstone). Once the batch is committed the case's data, in the live tree and in any
    /// stale sled segment, can no longer be decrypted. Deleting the data itself is the caller's.
    pub fn purge(&self, case: &str, batch: &mut Batch) {
        batch.put(Space::CaseKeys, case, []);
    }

    fn stored_key(&self, case: &str) -> Result<Option<CaseKey>, StoreError> {
        let Some(mut rec) = self.store.get(Space::CaseKeys, case.as_bytes())? else {
            return Ok(None);
        };
        if rec.is_empty() {
            return Err(StoreError::Purged { case: case.into() });
        }
        let bytes = self.master.unwrap(case, &mut rec)?;
        Ok(Some(CaseKey::new(case, &bytes)))
    }
}

/// The AES-256-GCM key of one case. Get it from [`Vault::case_key`] for each use rather than
/// keeping it: a purge cannot reach a copy held in memory.
pub struct CaseKey {
    case: String,
    key: LessSafeKey,
}

impl CaseKey {
    fn new(case: &str, bytes: &[u8; KEY_LEN]) -> Self {
        CaseKey {
            case: case.into(),
            key: aes_key(bytes),
        }
    }

    /// Encrypts `plaintext`, binding `aad` (say, the space and key the record is stored under):
    /// returns `nonce || ciphertext || tag`.
    ///
    /// # Panics
    /// If the operating system's random number generator fails.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce, "sealing a record").expect("the system random number generator failed");
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_LEN..],
            )
            .expect("AES-GCM input under 64 GiB");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Decrypts what [`seal`](CaseKey::seal) returned, given the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        let fail = || StoreError::Decrypt {
            case: self.case.clone(),
        };
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(fail());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut buf = body.to_vec();
        let len = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| fail())?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// The case this key belongs to.
    pub fn case(&self) -> &str {
        &self.case
    }
}

impl fmt::Debug for CaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaseKey")
            .field("case", &self.case)
            .field("key", &"<secret>")
            .finish()
    }
}

fn aes_key(bytes: &[u8; KEY_LEN]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32 bytes is an AES-256 key"))
}

fn random(out: &mut [u8], what: &'static str) -> Result<(), StoreError> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| StoreError::Random { what })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::store::testutil::TempDir;
    use crate::store::{Durable, MemStore};

    fn vault() -> Vault<MemStore> {
        Vault::new(MasterKey::from_bytes(&[7; 32]), Arc::new(MemStore::new()))
    }

    #[test]
    fn a_master_key_from_a_backup_must_have_the_key_length() {
        let e = MasterKey::from_key_bytes(&[7; 31]).err().unwrap();
        assert!(e.to_string().contains("31 bytes instead of 32"), "{e}");
        let k = MasterKey::from_key_bytes(&[7; 32]).unwrap();
        let v = Vault::new(k, Arc::new(MemStore::new()));
        let sealed = v.case_key("case-0007").unwrap().seal(b"x", b"aad");
        assert_eq!(v.open("case-0007", &sealed, b"aad").unwrap(), b"x");
    }

    #[test]
    fn seal_open_round_trip_and_the_key_is_stable() {
        let v = vault();
        let k = v.case_key("case-0007").unwrap();
        let sealed = k.seal(b"Form 6 summary", b"cases/case-0007/form6");
        assert!(
            !sealed.windows(7).any(|w| w == b"Form 6 "),
            "plaintext leaked"
        );
        assert_eq!(
            k.open(&sealed, b"cases/case-0007/form6").unwrap(),
            b"Form 6 summary"
        );
        let again = v.case_key("case-0007").unwrap();
        assert_eq!(
            again.open(&sealed, b"cases/case-0007/form6").unwrap(),
            b"Form 6 summary"
        );
        assert_eq!(
            v.open("case-0007", &sealed, b"cases/case-0007/form6")
                .unwrap(),
            b"Form 6 summary"
        );
        assert!(!format!("{k:?}").contains("[7"), "{k:?}");
    }

    #[test]
    fn wrong_aad_or_other_case_or_tampering_fails() {
        let v = vault();
        let k1 = v.case_key("case-1").unwrap();
        let k2 = v.case_key("case-2").unwrap();
        let sealed = k1.seal(b"secret", b"case-1");
        let e = k1.open(&sealed, b"case-2").unwrap_err();
        assert!(matches!(e, StoreError::Decrypt { .. }), "{e}");
        assert!(
            k2.open(&sealed, b"case-1").is_err(),
            "another case's key opened it"
        );
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(k1.open(&bad, b"case-1").is_err());
        assert!(k1.open(&sealed[..10], b"case-1").is_err());
    }

    #[test]
    fn a_case_key_does_not_unwrap_with_another_master_key() {
        let store = Arc::new(MemStore::new());
        Vault::new(MasterKey::from_bytes(&[1; 32]), Arc::clone(&store))
            .case_key("c")
            .unwrap();
        let other = Vault::new(MasterKey::from_bytes(&[2; 32]), store);
        let e = other.case_key("c").unwrap_err();
        assert!(matches!(e, StoreError::WrongMasterKey { .. }), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn purge_destroys_the_key_and_the_new_key_is_durable_with_the_data() {
        let store = Arc::new(MemStore::new());
        let durable = Durable::new(Arc::clone(&store));
        let v = Vault::new(MasterKey::from_bytes(&[9; 32]), Arc::clone(&store));
        let mut b = Batch::new();
        b.put(
            Space::Cases,
            "c",
            v.case_key("c").unwrap().seal(b"plan", b"c"),
        );
        durable.commit(b).await.unwrap();
        store.crash(); // the key was applied outside the commit, yet survives it
        let sealed = store.get(Space::Cases, b"c").unwrap().unwrap();
        assert_eq!(v.open("c", &sealed, b"c").unwrap(), b"plan");
        v.require_key("c").unwrap();

        let mut b = Batch::new();
        v.purge("c", &mut b);
        durable.commit(b).await.unwrap();
        assert!(matches!(v.require_key("c"), Err(StoreError::Purged { .. })));
        assert!(matches!(
            v.require_key("never-seen"),
            Err(StoreError::UnknownCase { .. })
        ));
        let e = v.open("c", &sealed, b"c").unwrap_err();
        assert!(matches!(e, StoreError::Purged { .. }), "{e}");
        assert!(e.to_string().contains("was purged"), "{e}");
        assert!(matches!(v.case_key("c"), Err(StoreError::Purged { .. })));
        let e = v.open("never-seen", &sealed, b"c").unwrap_err();
        assert!(matches!(e, StoreError::UnknownCase { .. }), "{e}");
    }

    #[test]
    fn master_key_file_is_created_0600_and_reloads() {
        let dir = TempDir::new("master");
        let path = dir.path().join("master.key");
        let m1 = MasterKey::load_or_create(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 32);
        let m2 = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(format!("{m2:?}"), "MasterKey(<secret>)");

        let store = Arc::new(MemStore::new());
        let sealed = Vault::new(m1, Arc::clone(&store))
            .case_key("c")
            .unwrap()
            .seal(b"x", b"");
        assert_eq!(Vault::new(m2, store).open("c", &sealed, b"").unwrap(), b"x");
    }

    #[test]
    fn a_key_file_left_half_written_by_a_crash_does_not_block_the_next_start() {
        // A crash while creating the key left its temporary file, short and readable by others:
        // the next start replaces it and creates the key whole.
        let dir = TempDir::new("master-crash");
        let path = dir.path().join("master.key");
        let creating = dir.path().join("master.key.creating");
        std::fs::write(&creating, b"short").unwrap();
        std::fs::set_permissions(&creating, std::fs::Permissions::from_mode(0o644)).unwrap();
        MasterKey::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 32);
        assert!(!creating.exists());
        MasterKey::open(&path).unwrap();
    }

    #[test]
    fn a_readable_or_wrong_length_key_file_is_refused() {
        let dir = TempDir::new("badkey");
        let path = dir.path().join("master.key");
        std::fs::write(&path, [0u8; 32]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = MasterKey::load_or_create(&path).unwrap_err();
        assert!(matches!(e, StoreError::KeyFileExposed(_)), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("mode 0644") && msg.contains("chmod 600"),
            "{msg}"
        );

        std::fs::write(&path, [0u8; 31]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = MasterKey::load_or_create(&path).unwrap_err();
        assert!(
            matches!(e, StoreError::KeyFileLength { len: 31, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("not 32"), "{e}");
    }
}
