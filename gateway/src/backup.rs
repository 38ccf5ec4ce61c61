//! Backups of a running gateway, their verification and restore; the master key's export and
//! rotation.
//!
//! # The backup file
//!
//! ```text
//! tsunagi-backup\n
//! {"backup_format":2,"store_format":1,"org":"lg:131059","created":1780000000,
//!  "created_date":"2026-06-01","records":1234,"content_bytes":56789,
//!  "sha256":"<hex of SHA-256(content)>","master_key":"not included",
//!  "seal":"<hex of a COSE_Sign1>"}\n
//! content: per record u32 BE key length, key (space tag || key), u32 BE value length, value
//! ```
//!
//! The **seal** is a COSE_Sign1 of type [`TYP_BACKUP_SEAL`] by the gateway's document-signing
//! key over the deterministic CBOR map `{org, time, header}`: `time` is `created`, `header` the
//! SHA-256 of the header line as written without its `seal` field (which covers the content's
//! digest). The digest alone only finds damage: whoever edits the file can recompute it. The
//! seal shows that the file is as the gateway wrote it — in particular that no audit records
//! were cut from its end, which the audit chain cannot show by itself (the newest records are
//! not yet under a signed checkpoint). It is verified against the federation CA as of `time`,
//! so an old backup still verifies after the certificate that sealed it has expired. Backups
//! of format 1 (earlier versions) have no seal, and neither has one whose seal was removed:
//! `backup verify` says so, and a restore takes one only with `--unsealed` (its trail still
//! checked).
//!
//! The content is every record of the store as one consistent view: the running gateway takes
//! it in one pass under a barrier that holds off every apply ([`Store::export`]), then makes
//! sure all of it is durable before the file is written (so a backup never holds a state the
//! gateway itself could lose in a crash). Personal data stays as it is stored: sealed with the
//! per-case keys, which are wrapped by the master key. The master key is **not** in the backup
//! unless `--with-master-key` asks for it (then it is one more record, key `\0master.key`, and
//! the header says `"master_key":"included"`): whoever holds such a file reads every case.
//! Without it, keep the master key apart (`tsunagi backup master-key --out FILE`); a restore
//! refuses to finish without the key that unwraps the backup's case keys.
//!
//! The file is created with mode 0600 under a temporary name and renamed into place; an
//! existing file is never overwritten.
//!
//! # Master-key rotation ([`rotate_master_key`]), crash-safe ordering
//!
//! With the gateway stopped (the store is opened exclusively, so it cannot start meanwhile):
//!
//! 1. a new random key is written to `master.key.new` (0600, fsync, directory fsync);
//! 2. `master.key` is hard-linked to `master.key.old` (the old key is never absent);
//! 3. every case key is unwrapped with the old key and wrapped with the new one, all in **one**
//!    atomic batch, then flushed: the store is wrapped wholly by the old or wholly by the new key;
//! 4. `master.key.new` is renamed over `master.key` (atomic), and the directory fsynced.
//!
//! A crash before 3 is durable leaves the store under the old key: running the rotation again
//! discards `master.key.new` and starts over. A crash between 3 and 4 leaves the store under the
//! key in `master.key.new`: the gateway refuses to start while `master.key.new` exists, and
//! running the rotation again finds that `master.key.new` unwraps the store and finishes step 4.
//! `master.key.old` stays afterwards: it no longer opens the live data, but backups taken
//! before the rotation (and stale sled segments, until sled rewrites them) still need it or are
//! readable with it; destroy it once those backups are gone or re-taken.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tsunagi_protocol::cbor::Limits;
use tsunagi_protocol::cose::{sha256, ChainVerifier, CoseError, Sign1, Signer};
use tsunagi_protocol::hex::encode as hex;
use tsunagi_protocol::{OrgId, Timestamp};

use crate::config::Config;
use crate::store::schema::{Key, FORMAT_VERSION};
use crate::store::{Batch, MasterKey, MemStore, Read, SledStore, Space, Store};

/// The first line of every backup file.
pub const MAGIC: &[u8] = b"tsunagi-backup\n";
/// The layout of the backup file this build writes (it also reads format 1, unsealed).
pub const BACKUP_FORMAT: u32 = 2;
/// `typ` of a backup's seal.
pub const TYP_BACKUP_SEAL: &str = "application/tsunagi-backup-seal+cose";
/// The key of the optional master-key record (tag 0 is no space).
const MASTER_KEY_RECORD: &[u8] = b"\0master.key";

/// The header line of a backup file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// [`BACKUP_FORMAT`].
    pub backup_format: u32,
    /// The store's format version ([`FORMAT_VERSION`] of the build that wrote it).
    pub store_format: u32,
    /// The gateway's org.
    pub org: String,
    /// When the snapshot was taken (Unix seconds).
    pub created: u64,
    /// Its date in Japan.
    pub created_date: String,
    /// Store records in the content.
    pub records: u64,
    /// Bytes of content after the header line.
    pub content_bytes: u64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// `"included"` or `"not included"`.
    pub master_key: String,
    /// The seal (see the [module docs](self)), hex; absent in format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

impl Header {
    /// What the seal signs: `{org, time, header}` (see the [module docs](self)).
    fn seal_payload(&self) -> Vec<u8> {
        use tsunagi_protocol::cbor::{self, map, uint, Value};
        let unsealed = Header {
            seal: None,
            ..self.clone()
        };
        let line = serde_json::to_vec(&unsealed).expect("a header serialises");
        cbor::encode(&map([
            ("org", Value::Text(self.org.clone())),
            ("time", uint(self.created)),
            ("header", Value::Bytes(sha256(&line).to_vec())),
        ]))
    }
}

/// A decoded, checked backup.
pub struct Backup {
    /// Its header.
    pub header: Header,
    /// Every store record, `(tag || key, value)`.
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// The master key, when the backup was made with `--with-master-key`.
    master_key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backup")
            .field("header", &self.header)
            .field("entries", &self.entries.len())
            .finish()
    }
}

fn put_record(out: &mut Vec<u8>, k: &[u8], v: &[u8]) {
    out.extend_from_slice(&(k.len() as u32).to_be_bytes());
    out.extend_from_slice(k);
    out.extend_from_slice(&(v.len() as u32).to_be_bytes());
    out.extend_from_slice(v);
}

/// The content of a backup of `entries` (and the master key, when given): what the header's
/// digest covers.
pub fn content_of(entries: &[(Vec<u8>, Vec<u8>)], master_key: Option<&[u8]>) -> Vec<u8> {
    let mut content = Vec::new();
    for (k, v) in entries {
        put_record(&mut content, k, v);
    }
    if let Some(m) = master_key {
        put_record(&mut content, MASTER_KEY_RECORD, m);
    }
    content
}

/// The backup file: the first line, `header` as its line, then `content`.
pub fn assemble(header: &Header, content: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&serde_json::to_vec(header).expect("a header serialises"));
    out.push(b'\n');
    out.extend_from_slice(content);
    out
}

/// Encodes a backup of `entries` (from [`Store::export`]) taken at `now` from `org`'s store,
/// sealed by `signer` (the gateway's document-signing key).
pub fn encode(
    entries: &[(Vec<u8>, Vec<u8>)],
    org: &OrgId,
    now: Timestamp,
    master_key: Option<&[u8]>,
    signer: &Signer,
) -> (Vec<u8>, Header) {
    let content = content_of(entries, master_key);
    let mut header = Header {
        backup_format: BACKUP_FORMAT,
        store_format: FORMAT_VERSION,
        org: org.as_str().to_owned(),
        created: now.0,
        created_date: now.date().to_string(),
        records: entries.len() as u64,
        content_bytes: content.len() as u64,
        sha256: hex(&sha256(&content)),
        master_key: if master_key.is_some() {
            "included"
        } else {
            "not included"
        }
        .into(),
        seal: None,
    };
    header.seal = Some(hex(&signer.sign(TYP_BACKUP_SEAL, header.seal_payload())));
    (assemble(&header, &content), header)
}

/// Decodes and checks a backup file's bytes: the header, the digest, every record, the count,
/// the formats. Each error says what is wrong in one line.
pub fn decode(bytes: &[u8]) -> Result<Backup, String> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or("not a tsunagi backup (the first line is not `tsunagi-backup`)")?;
    let nl = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("the header line is cut off")?;
    let header: Header = serde_json::from_slice(&rest[..nl])
        .map_err(|e| format!("the header does not read ({e}): the file is damaged"))?;
    match (header.backup_format, &header.seal) {
        (1, None) | (BACKUP_FORMAT, Some(_)) => {}
        (1 | BACKUP_FORMAT, _) => {
            return Err(format!(
                "the header of a format {} backup {} a seal: the file was altered",
                header.backup_format,
                if header.seal.is_some() {
                    "has"
                } else {
                    "lacks"
                }
            ))
        }
        (other, _) => {
            return Err(format!(
                "backup format {other} is not one this build reads (1 and {BACKUP_FORMAT})"
            ))
        }
    }
    let content = &rest[nl + 1..];
    if content.len() as u64 != header.content_bytes {
        return Err(format!(
            "the content is {} bytes, the header says {}: the file is truncated or damaged",
            content.len(),
            header.content_bytes
        ));
    }
    let digest = hex(&sha256(content));
    if digest != header.sha256 {
        return Err(format!(
            "the content's SHA-256 is {digest}, the header says {}: the file was damaged or altered",
            header.sha256
        ));
    }
    let _: OrgId = header
        .org
        .parse()
        .map_err(|e| format!("the header's org {:?}: {e}", header.org))?;
    let mut entries = Vec::new();
    let mut master_key = None;
    let mut at = 0usize;
    let field = |at: &mut usize| -> Result<Vec<u8>, String> {
        let len = content
            .get(*at..*at + 4)
            .ok_or("a record is cut off")?
            .try_into()
            .map(u32::from_be_bytes)
            .map_err(|_| "a record is cut off")? as usize;
        let v = content
            .get(*at + 4..*at + 4 + len)
            .ok_or("a record is cut off")?;
        *at += 4 + len;
        Ok(v.to_vec())
    };
    while at < content.len() {
        let k = field(&mut at)?;
        let v = field(&mut at)?;
        if k == MASTER_KEY_RECORD {
            master_key = Some(v);
            continue;
        }
        match k.first().copied().and_then(Space::from_tag) {
            Some(_) => entries.push((k, v)),
            None => return Err(format!("record {} is in no known space", entries.len())),
        }
    }
    if entries.len() as u64 != header.records {
        return Err(format!(
            "{} records, the header says {}",
            entries.len(),
            header.records
        ));
    }
    if Timestamp(header.created).date().to_string() != header.created_date {
        return Err("the header's time and date disagree: the file is damaged".into());
    }
    let included = match header.master_key.as_str() {
        "included" => true,
        "not included" => false,
        other => {
            return Err(format!(
                "the header's master_key is {other:?}: the file is damaged"
            ))
        }
    };
    if master_key.is_some() != included {
        return Err("the header and the content disagree about the master key".into());
    }
    let backup = Backup {
        header,
        entries,
        master_key,
    };
    let store = backup.mem_store()?;
    let format = store
        .read(&Key::format())
        .map_err(|e| e.to_string())?
        .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
        .map(u32::from_be_bytes);
    if format != Some(backup.header.store_format) {
        return Err(format!(
            "the store inside is of format {format:?}, the header says {}",
            backup.header.store_format
        ));
    }
    Ok(backup)
}

impl Backup {
    /// Verifies the seal (see the [module docs](self)) against `trust` as of the backup's
    /// creation; what is wrong otherwise, by kind.
    pub fn verify_seal(&self, trust: &dyn ChainVerifier) -> Result<(), SealProblem> {
        let Some(seal) = &self.header.seal else {
            return Err(SealProblem::Missing);
        };
        let altered = |why: &str| SealProblem::Altered(why.to_owned());
        let bytes = tsunagi_protocol::hex::decode(seal).ok_or_else(|| altered("is not hex"))?;
        let s = Sign1::parse(&bytes, "backup seal", &Limits::default())
            .map_err(|e| altered(&format!("does not read ({e})")))?;
        if s.payload != self.header.seal_payload() {
            return Err(altered("does not match the header"));
        }
        let signer = s
            .verify(
                TYP_BACKUP_SEAL,
                "backup seal",
                trust,
                Timestamp(self.header.created),
            )
            .map_err(|e| match e {
                // The certificate chain is not one the CA and CRL trust (now or when sealed).
                CoseError::Chain { .. } => SealProblem::Untrusted(e.to_string()),
                other => altered(&format!("does not verify ({other})")),
            })?;
        if signer.org.as_str() != self.header.org {
            return Err(altered(&format!(
                "is signed by {}, not by {}",
                signer.org, self.header.org
            )));
        }
        Ok(())
    }

    /// The backup's records in an in-memory store.
    pub fn mem_store(&self) -> Result<MemStore, String> {
        let store = MemStore::new();
        let mut batch = Batch::new();
        for (k, v) in &self.entries {
            let space = k
                .first()
                .copied()
                .and_then(Space::from_tag)
                .ok_or_else(|| "a record is in no known space".to_string())?;
            batch.put(space, &k[1..], v);
        }
        store.apply(batch).map_err(|e| e.to_string())?;
        Ok(store)
    }

    /// Whether the master key is inside.
    pub fn has_master_key(&self) -> bool {
        self.master_key.is_some()
    }

    /// Checks the audit chain and its signed checkpoints inside the backup against `trust`.
    pub fn verify_audit(
        &self,
        trust: &dyn ChainVerifier,
        now: Timestamp,
    ) -> Result<crate::audit::AuditReport, String> {
        let org: OrgId = self.header.org.parse().map_err(|e| format!("{e}"))?;
        crate::audit::verify(&self.mem_store()?, &org, trust, now).map_err(|e| e.to_string())
    }

    /// The non-empty wrapped case keys, `(case, wrapped)`.
    fn case_keys(&self) -> Vec<(String, &[u8])> {
        self.entries
            .iter()
            .filter(|(k, v)| k.first() == Some(&Space::CaseKeys.tag()) && !v.is_empty())
            .map(|(k, v)| (String::from_utf8_lossy(&k[1..]).into_owned(), v.as_slice()))
            .collect()
    }
}

/// Writes `bytes` to a new file `path`, mode 0600: a temporary name in the same directory,
/// fsync, rename, directory fsync. Refuses to replace an existing file.
pub fn write_private_new(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Err(format!(
            "{} exists; choose a new file name (nothing is overwritten)",
            path.display()
        ));
    }
    let dir = crate::files::parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file name", path.display()))?;
    // A new file (never through a name that exists, e.g. a planted link), with a fresh name
    // when the usual one is taken.
    let (tmp, mut f) = crate::files::create_temp(dir, name)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut write = || -> std::io::Result<()> {
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        // Created by this call, so ours to remove.
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// The raw bytes of the master key file `path` (checked: 0600, 32 bytes).
fn master_key_bytes(path: &Path) -> Result<Vec<u8>, String> {
    MasterKey::open(path).map_err(|e| e.to_string())?;
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Takes a backup of the running gateway `gw` into `out` (the control operation `backup`).
pub async fn backup_running(
    gw: &crate::engine::Gateway,
    out: PathBuf,
    with_master_key: bool,
) -> Result<Header, String> {
    if !out.is_absolute() {
        return Err(format!("{}: give an absolute path", out.display()));
    }
    let snapshot = {
        let gw = gw.clone();
        tokio::task::spawn_blocking(move || gw.durable().store().export())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
    };
    // Everything exported was applied before this commit started: once it returns, all of it
    // is durable.
    gw.durable()
        .commit(Batch::new())
        .await
        .map_err(|e| e.to_string())?;
    let key = if with_master_key {
        Some(master_key_bytes(&gw.config().master_key)?)
    } else {
        None
    };
    let (bytes, header) = encode(&snapshot, gw.org(), gw.now(), key.as_deref(), &gw.signer());
    tokio::task::spawn_blocking(move || write_private_new(&out, &bytes))
        .await
        .map_err(|e| e.to_string())??;
    Ok(header)
}

/// Exports the master key of `cfg` to the new file `out` (mode 0600).
pub fn export_master_key(cfg: &Config, out: &Path) -> Result<(), String> {
    let bytes = master_key_bytes(&cfg.master_key)?;
    write_private_new(out, &bytes)
}

/// What [`restore`] did.
#[derive(Debug)]
pub struct Restored {
    /// Records written.
    pub records: u64,
    /// Whether the master key came from the backup (it was written to the configured path).
    pub master_key_from_backup: bool,
    /// The backup's audit trail as checked before the restore: intact, or (only when the
    /// restore was asked to go on despite them, [`Accepting::problems`]) its problems, a seal
    /// that does not hold among them.
    pub audit: crate::audit::AuditReport,
    /// Whether the backup had no seal (taken only with [`Accepting::unsealed`] or
    /// [`Accepting::problems`]).
    pub unsealed: bool,
}

/// Why a backup's seal does not hold ([`Backup::verify_seal`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealProblem {
    /// No seal: a backup of format 1, written before backups were sealed — or one whose seal
    /// was removed, which looks the same.
    #[error("the backup has no seal: it was written by a version before backups were sealed (backup format 1), or its seal was removed; records cut from its end, or any change made together with a new digest, cannot be seen")]
    Missing,
    /// The seal does not match the header or its signature does not verify: the file was
    /// changed after the gateway wrote it.
    #[error("the backup's seal {0}: the file was altered after the gateway wrote it")]
    Altered(String),
    /// The seal's certificate chain is not trusted by the configured CA and CRL (revoked,
    /// another federation's, not valid when the backup was taken, or a seal replaced by one
    /// under a certificate of someone else's).
    #[error("the backup's seal is not signed by a certificate the federation CA trusts ({0}): check the CA and CRL given; if they are right, the seal was replaced")]
    Untrusted(String),
}

/// What [`restore`] takes besides an intact, sealed backup. The default takes nothing else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepting {
    /// A backup without a seal (`--unsealed`): one written before backups were sealed. Its
    /// audit trail must still verify.
    pub unsealed: bool,
    /// A backup whose seal does not hold, or whose audit trail does not verify
    /// (`--despite-audit-problems`): the last backup there is, of a damaged store.
    pub problems: bool,
}

/// The most audit problems a refusal names (the count says how many there are).
const PROBLEMS_NAMED: usize = 5;

fn dir_is_empty(dir: &Path) -> Result<bool, String> {
    match std::fs::read_dir(dir) {
        Ok(mut it) => Ok(it.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(format!("cannot read {}: {e}", dir.display())),
    }
}

/// Restores `backup` into the fresh data directory of the stopped gateway configured by `cfg`.
///
/// Refuses a non-empty data directory, a backup of another org, a store format newer than this
/// build's, a missing or wrong master key (the configured file, or the one inside the backup,
/// must unwrap the backup's case keys), and — unless `accepting` says otherwise — a backup
/// without a seal, or whose seal or audit trail does not verify against the federation CA and
/// CRL configured by `cfg` (the file changed after the gateway wrote it; records removed,
/// changed or inserted, checkpoints removed or not signed by this org). Every check runs before
/// anything is written. The store is built beside the data directory and renamed into place
/// once durable, so an interrupted restore leaves no half data directory.
pub fn restore(
    cfg: &Config,
    backup: &Backup,
    accepting: Accepting,
    now: Timestamp,
) -> Result<Restored, String> {
    if backup.header.org != cfg.org.as_str() {
        return Err(format!(
            "the backup is of {}, this gateway is {}: restore a backup of this org",
            backup.header.org, cfg.org
        ));
    }
    if backup.header.store_format > FORMAT_VERSION {
        return Err(format!(
            "the backup holds a store of format {}, and this build reads format {FORMAT_VERSION}: restore it with a newer tsunagi",
            backup.header.store_format
        ));
    }
    if !dir_is_empty(&cfg.data_dir)? {
        return Err(format!(
            "the data directory {} is not empty: restore into a fresh one (stop the gateway, move the old directory away)",
            cfg.data_dir.display()
        ));
    }
    let trust =
        tsunagi_certs::FederationTrust::from_files(&cfg.ca, Some(&cfg.crl)).map_err(|e| {
            format!("the federation CA, to check the backup's seal and audit trail: {e}")
        })?;
    let seal = backup.verify_seal(&trust);
    let unsealed = seal == Err(SealProblem::Missing);
    if unsealed && !accepting.unsealed && !accepting.problems {
        return Err(format!(
            "{}. Take a new backup with this version; to restore this one, pass --unsealed if it was written before backups were sealed (its audit trail is still checked)",
            SealProblem::Missing
        ));
    }
    let mut audit = backup.verify_audit(&trust, now)?;
    match &seal {
        Ok(()) => {}
        Err(SealProblem::Missing) if accepting.unsealed => {}
        Err(e) => audit.problems.insert(0, e.to_string()),
    }
    if !audit.intact() && !accepting.problems {
        let named: Vec<&str> = audit
            .problems
            .iter()
            .take(PROBLEMS_NAMED)
            .map(String::as_str)
            .collect();
        return Err(format!(
            "the backup's seal or the audit trail inside it does not hold ({} problem(s): {}{}): restore an earlier backup, or pass --despite-audit-problems to restore this one anyway (the restored trail then records that it was, and the first problems)",
            audit.problems.len(),
            named.join("; "),
            if audit.problems.len() > PROBLEMS_NAMED { "; …" } else { "" }
        ));
    }
    // The master key: the configured file, else the one in the backup; either way it must
    // unwrap the backup's case keys.
    let key_path = &cfg.master_key;
    let from_backup = !key_path.exists();
    let master = if from_backup {
        match &backup.master_key {
            // Read in memory: the key never goes through a file outside the data directory.
            Some(bytes) => MasterKey::from_key_bytes(bytes).map_err(|e| e.to_string())?,
            None => {
                return Err(format!(
                    "the master key file {} is missing, and the backup does not include it: copy the master key of this gateway (from `tsunagi backup master-key`) to {} with mode 0600, then restore again; without it the case data in the backup cannot be decrypted",
                    key_path.display(),
                    key_path.display()
                ))
            }
        }
    } else {
        MasterKey::open(key_path).map_err(|e| e.to_string())?
    };
    if let Some((case, wrapped)) = backup.case_keys().first() {
        master.check_unwraps(case, wrapped).map_err(|_| {
            format!(
                "the master key {} does not unwrap the case keys in the backup (case {case}): it is not the key this data was written with; put that key in {} (mode 0600) and restore again",
                if from_backup { "inside the backup".to_string() } else { format!("in {}", key_path.display()) },
                key_path.display()
            )
        })?;
    }
    // The gateway's document signer: a restore signs the audit checkpoint its record may be due
    // for, as the gateway would.
    let (_, signer) = crate::rotation::load_signer(cfg)?;
    // Build the store beside the data directory, then rename it into place.
    let parent = cfg
        .data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = cfg
        .data_dir
        .file_name()
        .ok_or_else(|| format!("{} is not a directory name", cfg.data_dir.display()))?;
    let staging = parent.join(format!(".{}.restoring", name.to_string_lossy()));
    let _ = std::fs::remove_dir_all(&staging);
    crate::files::create_private_dir(&staging).map_err(|e| e.0)?;
    // A restore that fails from here on leaves no copy of the store (with its wrapped case keys)
    // behind.
    let mut staged = crate::files::RemovedOnDrop(Some(staging.clone()));
    {
        let store =
            SledStore::open(&staging.join("store"), 16 * 1024 * 1024).map_err(|e| e.to_string())?;
        for chunk in backup.entries.chunks(1024) {
            let mut batch = Batch::new();
            for (k, v) in chunk {
                let space = Space::from_tag(k[0]).ok_or("a record is in no known space")?;
                batch.put(space, &k[1..], v);
            }
            store.apply(batch).map_err(|e| e.to_string())?;
        }
        // The trail says that it was restored, and despite what: the command's output is
        // gone once the terminal closes, the trail stays with the store.
        let log =
            crate::audit::AuditLog::open(&store, cfg.org.clone()).map_err(|e| e.to_string())?;
        // The first problems, as the refusal names them, and how many more: the record stays.
        let mut problems: Vec<String> = audit
            .problems
            .iter()
            .take(PROBLEMS_NAMED)
            .cloned()
            .collect();
        if audit.problems.len() > PROBLEMS_NAMED {
            problems.push(format!(
                "and {} more",
                audit.problems.len() - PROBLEMS_NAMED
            ));
        }
        let restored = crate::events::AuditEvent::Restored {
            taken: backup.header.created,
            records: backup.header.records,
            unsealed,
            problems,
        };
        log.apply(&store, Batch::new(), vec![restored], now, &signer)
            .map_err(|e| e.to_string())?;
        store.flush().map_err(|e| e.to_string())?;
    }
    if from_backup {
        if let Some(bytes) = &backup.master_key {
            write_private_new(key_path, bytes)?;
        }
    }
    if cfg.data_dir.exists() {
        std::fs::remove_dir(&cfg.data_dir)
            .map_err(|e| format!("cannot replace {}: {e}", cfg.data_dir.display()))?;
    }
    std::fs::rename(&staging, &cfg.data_dir).map_err(|e| {
        format!(
            "cannot move {} to {}: {e}",
            staging.display(),
            cfg.data_dir.display()
        )
    })?;
    staged.0 = None; // it is the data directory now
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", parent.display()))?;
    Ok(Restored {
        records: backup.header.records,
        master_key_from_backup: from_backup,
        audit,
        unsealed,
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// What [`rotate_master_key`] did.
#[derive(Debug)]
pub struct Rotated {
    /// Case keys re-wrapped (tombstones of purged cases are left as they are).
    pub rewrapped: usize,
    /// Where the old key is kept.
    pub old: PathBuf,
    /// Whether an interrupted rotation was finished rather than a new one done.
    pub resumed: bool,
}

/// Rotates the master key of the stopped gateway configured by `cfg` (see the
/// [module docs](self) for the crash-safe ordering).
pub fn rotate_master_key(cfg: &Config) -> Result<Rotated, String> {
    let path = &cfg.master_key;
    let new_path = cfg.master_key_new();
    let old_path = with_suffix(path, ".old");
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let sync_dir = || {
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("cannot sync {}: {e}", dir.display()))
    };
    let store_dir = cfg.data_dir.join("store");
    if !store_dir.exists() {
        return Err(format!(
            "{} does not exist: no store to re-wrap",
            store_dir.display()
        ));
    }
    let store = Arc::new(SledStore::open(&store_dir, 16 * 1024 * 1024).map_err(|e| {
        format!("{e} (is the gateway still running? stop it before rotating the master key)")
    })?);
    // Refuses a store of a newer format (whose case keys this build must not rewrite), before
    // anything is changed; an older one is migrated as the gateway would at start.
    match crate::store::schema::check_format(&*store).map_err(|e| e.to_string())? {
        crate::store::schema::Opened::Current => {}
        _ => store.flush().map_err(|e| e.to_string())?,
    }
    let old = MasterKey::open(path).map_err(|e| e.to_string())?;
    let keys: Vec<(String, Vec<u8>)> = store
        .scan(Space::CaseKeys, b"")
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
        .collect();
    let first = keys.iter().find(|(_, v)| !v.is_empty());
    let mut resumed = false;
    if new_path.exists() {
        let new = MasterKey::open(&new_path).map_err(|e| e.to_string())?;
        match first {
            Some((case, w)) if new.check_unwraps(case, w).is_ok() => resumed = true,
            _ => std::fs::remove_file(&new_path)
                .map_err(|e| format!("cannot remove {}: {e}", new_path.display()))?,
        }
    }
    let mut rewrapped = 0;
    if !resumed {
        // 1. The new key, durable before anything is wrapped with it.
        let new = MasterKey::load_or_create(&new_path).map_err(|e| e.to_string())?;
        // 2. Keep the old key under master.key.old (master.key itself stays until step 4). A
        // master.key.old of an earlier rotation is kept too, numbered: backups taken before
        // that rotation need it. (One that is this key, from an interrupted attempt, goes.)
        if old_path.exists() {
            if std::fs::read(&old_path).ok() == std::fs::read(path).ok() {
                let _ = std::fs::remove_file(&old_path);
            } else {
                let kept = (1..)
                    .map(|n| with_suffix(&old_path, &format!(".{n}")))
                    .find(|p| !p.exists())
                    .expect("a free name");
                std::fs::rename(&old_path, &kept).map_err(|e| {
                    format!(
                        "cannot keep the previous rotation's old key as {}: {e}",
                        kept.display()
                    )
                })?;
            }
        }
        std::fs::hard_link(path, &old_path)
            .map_err(|e| format!("cannot keep the old key as {}: {e}", old_path.display()))?;
        sync_dir()?;
        // 3. Re-wrap every case key in one atomic batch, durably.
        let mut batch = Batch::new();
        for (case, wrapped) in &keys {
            if wrapped.is_empty() {
                continue;
            }
            let again = old.rewrap(&new, case, wrapped).map_err(|e| {
                format!(
                    "{e}: the master key in {} does not unwrap case {case}; nothing was changed",
                    path.display()
                )
            })?;
            batch.put(Space::CaseKeys, case, again);
            rewrapped += 1;
        }
        store.apply(batch).map_err(|e| e.to_string())?;
        store.flush().map_err(|e| e.to_string())?;
    } else if !old_path.exists() {
        std::fs::hard_link(path, &old_path)
            .map_err(|e| format!("cannot keep the old key as {}: {e}", old_path.display()))?;
    }
    // 4. The new key takes the configured name.
    std::fs::rename(&new_path, path).map_err(|e| {
        format!(
            "cannot move {} to {}: {e}",
            new_path.display(),
            path.display()
        )
    })?;
    sync_dir()?;
    Ok(Rotated {
        rewrapped,
        old: old_path,
        resumed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Vault;

    fn sample() -> (MemStore, crate::store::Entries) {
        let s = MemStore::new();
        crate::store::schema::check_format(&s).unwrap();
        let mut b = Batch::new();
        b.put(Space::Inbox, b"m1", b"{}");
        b.put(Space::CaseKeys, b"case-1", [1u8; 60]);
        s.apply(b).unwrap();
        let e = s.export().unwrap();
        (s, e)
    }

    #[test]
    fn a_backup_round_trips_and_any_flipped_byte_is_caught() {
        let (_, entries) = sample();
        let org: OrgId = "lg:131059".parse().unwrap();
        let signer = tsunagi_protocol::testkit::signer("lg:131059");
        let (bytes, header) = encode(&entries, &org, Timestamp(1_780_000_000), None, &signer);
        assert_eq!(header.records, 3);
        let b = decode(&bytes).unwrap();
        assert_eq!(b.entries, entries);
        assert!(!b.has_master_key());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            if let Ok(b) = decode(&bad) {
                // Only the header's seal and the fields the digest does not cover (time, org)
                // may change unnoticed by `decode`: the seal then no longer verifies.
                assert!(
                    b.verify_seal(&tsunagi_protocol::testkit::chains()).is_err(),
                    "flipping byte {i} went unnoticed"
                );
            }
        }
        let e = decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
    }

    /// The seal shows any change made together with a new digest (as whoever holds the file can
    /// make): an audit record cut from the end, another org or time in the header; a backup
    /// without a seal (format 1) is reported as such, and so is one sealed by another org.
    #[test]
    fn a_backup_is_sealed_and_a_change_made_with_a_new_digest_breaks_the_seal() {
        use tsunagi_protocol::cose::StaticChains;
        use tsunagi_protocol::testkit::{chains, signer};
        let (_, mut entries) = sample();
        let org: OrgId = "lg:131059".parse().unwrap();
        let at = Timestamp(1_780_000_000);
        let (bytes, _) = encode(&entries, &org, at, None, &signer("lg:131059"));
        let b = decode(&bytes).unwrap();
        b.verify_seal(&chains()).unwrap();
        // A CA that does not trust the sealing certificate says nothing about the file.
        let e = b.verify_seal(&StaticChains::new()).unwrap_err();
        assert!(matches!(e, SealProblem::Untrusted(_)), "{e}");
        assert!(!e.to_string().contains("altered"), "{e}");

        // Re-encoded by someone without the key: content and digest changed, seal kept.
        let reseal = |entries: &[(Vec<u8>, Vec<u8>)], edit: &dyn Fn(&mut Header)| {
            let content = content_of(entries, None);
            let mut h = b.header.clone();
            h.records = entries.len() as u64;
            h.content_bytes = content.len() as u64;
            h.sha256 = hex(&sha256(&content));
            edit(&mut h);
            decode(&assemble(&h, &content)).unwrap()
        };
        entries.retain(|(k, _)| k[0] != Space::Inbox.tag());
        let cut = reseal(&entries, &|_| {});
        let e = cut.verify_seal(&chains()).unwrap_err().to_string();
        assert!(
            e.contains("does not match the header") && e.contains("altered"),
            "{e}"
        );
        let e = reseal(&b.entries, &|h| h.created += 1)
            .verify_seal(&chains())
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not match"), "{e}");
        let e = reseal(&b.entries, &|h| h.seal = Some("zz".into()))
            .verify_seal(&chains())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not hex"), "{e}");
        // Format 1: no seal, said plainly; a format 1 header with a seal, or format 2 without.
        let unsealed = reseal(&b.entries, &|h| {
            h.backup_format = 1;
            h.seal = None;
        });
        let e = unsealed.verify_seal(&chains()).unwrap_err().to_string();
        assert_eq!(
            unsealed.verify_seal(&chains()),
            Err(SealProblem::Missing),
            "{e}"
        );
        assert!(e.contains("has no seal") && e.contains("format 1"), "{e}");
        let mut h = b.header.clone();
        h.seal = None;
        let e = decode(&assemble(&h, &content_of(&b.entries, None))).unwrap_err();
        assert!(e.contains("lacks a seal"), "{e}");
        // Sealed by another org's key for this org's header.
        let (other, _) = encode(&b.entries, &org, at, None, &signer("lg:131121"));
        let e = decode(&other)
            .unwrap()
            .verify_seal(&chains())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is signed by lg:131121, not by lg:131059"),
            "{e}"
        );
    }

    /// A stopped gateway's configuration and store in `dir`, with case `c` sealed.
    fn stopped_gateway(dir: &Path) -> (Config, Vec<u8>) {
        let text = "org = \"lg:131059\"\nlisten = \"127.0.0.1:7402\"\ncredentials = \"creds\"\nca = \"ca.pem\"\ncrl = \"crl.pem\"\ndirectory = \"d.cose\"\ndata_dir = \"data\"\nmaster_key = \"master.key\"\n";
        let cfg = Config::parse(text, &dir.join("gateway.toml")).unwrap();
        let store = Arc::new(SledStore::open(&cfg.data_dir.join("store"), 1 << 20).unwrap());
        let v = Vault::new(
            MasterKey::load_or_create(&cfg.master_key).unwrap(),
            Arc::clone(&store),
        );
        let sealed = v.case_key("c").unwrap().seal(b"plan", b"c");
        v.case_key("d").unwrap();
        let mut b = Batch::new();
        v.purge("d", &mut b);
        store.apply(b).unwrap();
        store.flush().unwrap();
        (cfg, sealed)
    }

    fn opens(cfg: &Config, key: &Path, sealed: &[u8]) -> bool {
        let store = Arc::new(SledStore::open(&cfg.data_dir.join("store"), 1 << 20).unwrap());
        Vault::new(MasterKey::open(key).unwrap(), store)
            .open("c", sealed, b"c")
            .is_ok()
    }

    #[test]
    fn master_key_rotation_rewraps_and_an_interrupted_one_is_finished() {
        let tmp = crate::store::testutil::TempDir::new("mkrotate");
        let (cfg, sealed) = stopped_gateway(tmp.path());
        let key = cfg.master_key.clone();
        let old = with_suffix(&key, ".old");
        let new = with_suffix(&key, ".new");
        let r = rotate_master_key(&cfg).unwrap();
        assert_eq!((r.rewrapped, r.resumed), (1, false));
        assert!(opens(&cfg, &key, &sealed));
        assert!(
            !opens(&cfg, &old, &sealed),
            "the old key still opens the data"
        );
        cfg.check_no_interrupted_rotation().unwrap();

        // A crash after the re-wrap was durable, before the new key took its name.
        std::fs::rename(&key, &new).unwrap();
        std::fs::copy(&old, &key).unwrap();
        let e = cfg.check_no_interrupted_rotation().unwrap_err();
        assert!(e.contains("master-key rotate"), "{e}");
        let r = rotate_master_key(&cfg).unwrap();
        assert!(r.resumed);
        assert!(opens(&cfg, &key, &sealed));
        assert!(!new.exists());

        // A crash before the re-wrap was durable: the new key file is discarded.
        MasterKey::load_or_create(&new).unwrap();
        let before = std::fs::read(&key).unwrap();
        let older = std::fs::read(&old).unwrap();
        let r = rotate_master_key(&cfg).unwrap();
        assert!(!r.resumed);
        assert!(opens(&cfg, &key, &sealed));
        assert!(!new.exists());
        // The key before this rotation is master.key.old; the one before that, which backups
        // taken before the earlier rotation need, is kept as master.key.old.1.
        assert_eq!(std::fs::read(&old).unwrap(), before);
        assert_eq!(std::fs::read(with_suffix(&old, ".1")).unwrap(), older);
    }

    #[test]
    fn rewrap_moves_case_keys_to_the_new_master_key() {
        let tmp = crate::store::testutil::TempDir::new("rewrap");
        let dir = tmp.path();
        let old = MasterKey::load_or_create(&dir.join("a")).unwrap();
        let new = MasterKey::load_or_create(&dir.join("b")).unwrap();
        let store = Arc::new(MemStore::new());
        let v = Vault::new(old, Arc::clone(&store));
        let sealed = v.case_key("c").unwrap().seal(b"plan", b"c");
        let wrapped = store.get(Space::CaseKeys, b"c").unwrap().unwrap();
        let old = MasterKey::open(&dir.join("a")).unwrap();
        let again = old.rewrap(&new, "c", &wrapped).unwrap();
        assert!(old.check_unwraps("c", &again).is_err());
        assert!(new.check_unwraps("c", &again).is_ok());
        let mut b = Batch::new();
        b.put(Space::CaseKeys, "c", again);
        store.apply(b).unwrap();
        let v = Vault::new(new, Arc::clone(&store));
        assert_eq!(v.open("c", &sealed, b"c").unwrap(), b"plan");
    }

    #[test]
    fn rotation_refuses_a_store_of_a_newer_format() {
        let tmp = crate::store::testutil::TempDir::new("mkrotate-newer");
        let (cfg, _) = stopped_gateway(tmp.path());
        {
            let store = SledStore::open(&cfg.data_dir.join("store"), 1 << 20).unwrap();
            let mut b = Batch::new();
            b.set(&Key::format(), 9u32.to_be_bytes());
            store.apply(b).unwrap();
            store.flush().unwrap();
        }
        let key = cfg.master_key.clone();
        let before = std::fs::read(&key).unwrap();
        let r = rotate_master_key(&cfg);
        let e = r.expect_err(&format!(
            "a store of format 9 was re-wrapped by a format-{FORMAT_VERSION} build"
        ));
        assert!(e.contains("newer tsunagi (format 9)"), "{e}");
        // Nothing changed: same key, no new or old key file.
        assert_eq!(std::fs::read(&key).unwrap(), before);
        assert!(!with_suffix(&key, ".new").exists());
        assert!(!with_suffix(&key, ".old").exists());
    }

    #[test]
    fn write_private_new_takes_a_fresh_name_when_its_temporary_name_is_planted() {
        let tmp = crate::store::testutil::TempDir::new("backup-planted");
        let loot = tmp.path().join("loot");
        std::fs::write(&loot, b"").unwrap();
        let link = tmp
            .path()
            .join(format!(".out.tkb.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&loot, &link).unwrap();
        let out = tmp.path().join("out.tkb");
        write_private_new(&out, b"backup").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"backup");
        assert_eq!(std::fs::read(&loot).unwrap(), b"");
        assert_eq!(
            std::fs::read_link(&link).ok().as_deref(),
            Some(loot.as_path())
        );
        // Three entries: loot, the link, the backup (no temporary file left).
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 3);
    }
}
