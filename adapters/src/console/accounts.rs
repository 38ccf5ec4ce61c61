//! Staff accounts of the console: ids, roles and argon2id password hashes in one file (mode
//! 0600), and the lock-out after repeated failed logins.
//!
//! The file is JSON, `{"accounts":[{"id":"tanaka","role":"clerk","hash":"$argon2id$…"}]}`; it is
//! refused when another account may read it (like every secret of the gateway). An account id is
//! what the audit chain records for the staff member (letters, digits, `.`, `_`, `-`), never a
//! name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

/// Failed logins in a row after which an account is locked.
pub const MAX_FAILURES: u32 = 5;
/// How long a locked account stays locked.
pub const LOCK_FOR: Duration = Duration::from_secs(15 * 60);
/// The most ids without an account whose failed logins are counted at once.
pub const MAX_UNKNOWN_FAILURES: usize = 10_000;
/// Shortest password accepted by `console user add`.
pub const MIN_PASSWORD: usize = 12;

/// What a member of staff may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads lists, states and documents (case pseudonyms only, no names).
    Viewer,
    /// Also sends documents (personal data) and records consents; sees names.
    Clerk,
    /// Also records a withdrawal and releases a transfer notice (Form 7).
    Approver,
    /// Also sees the operations page (peers, backlog, expiry) and manages the gateway.
    Admin,
}

impl Role {
    /// The role's name in Japanese, as staff read it.
    pub fn label(self) -> &'static str {
        match self {
            Role::Viewer => "閲覧者",
            Role::Clerk => "担当者",
            Role::Approver => "承認者",
            Role::Admin => "管理者",
        }
    }

    /// Parses `viewer`, `clerk`, `approver` or `admin`.
    pub fn parse(s: &str) -> Result<Role, AccountError> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "clerk" => Ok(Role::Clerk),
            "approver" => Ok(Role::Approver),
            "admin" => Ok(Role::Admin),
            other => Err(AccountError::Invalid(format!(
                "role {other:?} is not one of viewer, clerk, approver, admin"
            ))),
        }
    }
}

/// One staff account as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// The account id (recorded in the audit chain).
    pub id: String,
    /// Its role.
    pub role: Role,
    /// The argon2id PHC string of its password.
    pub hash: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountFile {
    accounts: Vec<Account>,
}

/// What went wrong with the account file or an account.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The file cannot be read or written.
    #[error("the account file {path}: {detail}")]
    File {
        /// The file.
        path: PathBuf,
        /// What happened.
        detail: String,
    },
    /// A bad account id, role or password.
    #[error("{0}")]
    Invalid(String),
}

/// Why a login failed (the page says the same to every failure but a lock-out, so that it does
/// not tell which account ids exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// Unknown account or wrong password.
    BadCredentials,
    /// Too many failures: locked until the time passes.
    Locked,
}

/// The staff accounts and their failure counters.
#[derive(Debug)]
pub struct Accounts {
    accounts: HashMap<String, Account>,
    failures: Mutex<HashMap<String, (u32, Option<Instant>)>>,
    /// A hash checked for unknown ids, so that they take as long as known ones.
    decoy: String,
}

fn hasher(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with argon2id (the crate's recommended cost unless `params` is given) and a
/// random salt.
pub fn hash_password(password: &str, params: Option<Params>) -> Result<String, AccountError> {
    use ring::rand::SecureRandom;
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| AccountError::Invalid("the system random generator failed".into()))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| AccountError::Invalid(format!("salt: {e}")))?;
    hasher(params.unwrap_or_default())
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Invalid(format!("cannot hash the password: {e}")))
}

fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        // The parameters come from the PHC string itself.
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Whether `id` may be an account id (the gateway records it as the staff id).
pub fn valid_id(id: &str) -> bool {
    tsunagi_control::valid_staff_id(id)
}

impl Accounts {
    /// The accounts of the file at `path` (which must be 0600 and this account's).
    pub fn load(path: &Path) -> Result<Accounts, AccountError> {
        Accounts::from_list(Accounts::read_list(path)?)
    }

    /// The list of accounts in the file at `path`, unchecked.
    fn read_list(path: &Path) -> Result<Vec<Account>, AccountError> {
        let err = |detail: String| AccountError::File {
            path: path.to_owned(),
            detail,
        };
        let bytes = tsunagi_certs::local::read_secret(path)
            .map_err(|e| {
                err(format!(
                    "{e}; create it with `tsunagi-adapter console user add --users {}`",
                    path.display()
                ))
            })?
            .map_err(|e| err(e.to_string()))?;
        let file: AccountFile =
            serde_json::from_slice(&bytes).map_err(|e| err(format!("not an account file: {e}")))?;
        Ok(file.accounts)
    }

    /// Accounts from a list (checked: valid ids, no id twice, argon2id hashes).
    pub fn from_list(list: Vec<Account>) -> Result<Accounts, AccountError> {
        Accounts::build(list, hash_password("decoy password for unknown ids", None)?)
    }

    /// No account at all (every login fails, at the cost of `decoy`).
    fn none(decoy: String) -> Accounts {
        Accounts {
            accounts: HashMap::new(),
            failures: Mutex::new(HashMap::new()),
            decoy,
        }
    }

    /// Accounts from a list, checked, with `decoy` the hash checked for unknown ids.
    fn build(list: Vec<Account>, decoy: String) -> Result<Accounts, AccountError> {
        let mut accounts = HashMap::new();
        for a in list {
            if !valid_id(&a.id) {
                return Err(AccountError::Invalid(format!(
                    "account id {:?} is not 1 to 64 letters, digits, '.', '_' or '-'",
                    a.id
                )));
            }
            if !a.hash.starts_with("$argon2id$") || PasswordHash::new(&a.hash).is_err() {
                return Err(AccountError::Invalid(format!(
                    "account {}: the hash is not an argon2id PHC string; set the password again with `console user add`",
                    a.id
                )));
            }
            if accounts.insert(a.id.clone(), a.clone()).is_some() {
                return Err(AccountError::Invalid(format!(
                    "account {} appears twice",
                    a.id
                )));
            }
        }
        Ok(Accounts {
            accounts,
            failures: Mutex::new(HashMap::new()),
            decoy,
        })
    }

    /// The role of account `id`, if there is such an account.
    pub fn role_of(&self, id: &str) -> Option<Role> {
        self.accounts.get(id).map(|a| a.role)
    }

    /// The stamp of account `id` as it is now, if there is such an account: a digest of its
    /// id, role and password hash. A session keeps the stamp its login saw, and ends once the
    /// account's stamp is another (a new password, another role) or gone (the account removed).
    pub fn stamp_of(&self, id: &str) -> Option<String> {
        self.accounts.get(id).map(|a| {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            for part in [
                "tsunagi console account stamp",
                a.id.as_str(),
                a.role.label(),
                a.hash.as_str(),
            ] {
                ctx.update(&(part.len() as u64).to_be_bytes());
                ctx.update(part.as_bytes());
            }
            hex::encode(&ctx.finish().as_ref()[..16])
        })
    }

    /// How many accounts there are.
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// Checks a login at `now`: the account when the password is right and the account not
    /// locked. [`MAX_FAILURES`] failures in a row lock it for [`LOCK_FOR`] (also against the
    /// right password).
    pub fn login(&self, id: &str, password: &str, now: Instant) -> Result<Account, LoginFailure> {
        if !valid_id(id) {
            // No account has such an id: the same cost as a wrong password, and nothing kept.
            let _ = verify_password(password, &self.decoy);
            return Err(LoginFailure::BadCredentials);
        }
        {
            let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, Some(until))) = failures.get(id) {
                if now < *until {
                    return Err(LoginFailure::Locked);
                }
                failures.remove(id);
            }
        }
        // The password hash is checked without the lock held, so that a stream of failed
        // logins does not queue everyone else's behind it.
        let ok = match self.accounts.get(id) {
            Some(a) => verify_password(password, &a.hash).then(|| a.clone()),
            None => {
                let _ = verify_password(password, &self.decoy);
                None
            }
        };
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match ok {
            Some(a) => {
                failures.remove(id);
                Ok(a)
            }
            None => {
                // Unknown ids are counted too, so that probing costs the same, but only up to
                // a bound; a real account's failures are always counted, so that filling the
                // table with made-up ids cannot switch its lockout off.
                let real = self.accounts.contains_key(id);
                if real || failures.len() < MAX_UNKNOWN_FAILURES || failures.contains_key(id) {
                    let e = failures.entry(id.to_owned()).or_insert((0, None));
                    e.0 += 1;
                    if e.0 >= MAX_FAILURES {
                        e.1 = Some(now + LOCK_FOR);
                        tracing::warn!(
                            account = id,
                            "console account locked after repeated failed logins"
                        );
                        return Err(LoginFailure::Locked);
                    }
                }
                Err(LoginFailure::BadCredentials)
            }
        }
    }
}

/// The account file as it is now: read again whenever it changed on disk (its inode, size,
/// modification or change time), so that a new password, another role or a removed account
/// takes effect on the next request, also for sessions already open. A file that can no longer
/// be read (removed, unreadable, exposed to other accounts, not an account file) leaves no
/// account: nobody logs in or keeps a session until it is fixed, and the log says why.
#[derive(Debug)]
pub struct AccountBook {
    path: PathBuf,
    now: Mutex<(Option<FileVersion>, std::sync::Arc<Accounts>)>,
}

/// What tells one version of the account file from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileVersion {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileVersion {
    fn of(path: &Path) -> Option<FileVersion> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileVersion {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

impl AccountBook {
    /// The accounts of the file at `path` (refused as [`Accounts::load`] refuses it).
    pub fn load(path: &Path) -> Result<AccountBook, AccountError> {
        let version = FileVersion::of(path);
        let accounts = Accounts::load(path)?;
        Ok(AccountBook {
            path: path.to_owned(),
            now: Mutex::new((version, std::sync::Arc::new(accounts))),
        })
    }

    /// The accounts as the file holds them now (read again if it changed). Failed logins and
    /// lock-outs carry over to the new version.
    pub fn current(&self) -> std::sync::Arc<Accounts> {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        let version = FileVersion::of(&self.path);
        // Unchanged (a file that is gone stays gone: read, and logged, once).
        if version == now.0 {
            return now.1.clone();
        }
        let old = now.1.clone();
        let list = match version.map(|_| Accounts::read_list(&self.path)) {
            Some(Ok(list)) => Ok(list),
            Some(Err(e)) => Err(e.to_string()),
            None => Err(format!("the account file {} is gone", self.path.display())),
        };
        let next = list
            .and_then(|list| Accounts::build(list, old.decoy.clone()).map_err(|e| e.to_string()))
            .unwrap_or_else(|why| {
                tracing::error!("console accounts: {why}; nobody can log in until it is fixed");
                Accounts::none(old.decoy.clone())
            });
        let failures = std::mem::take(&mut *old.failures.lock().unwrap_or_else(|p| p.into_inner()));
        *next.failures.lock().unwrap_or_else(|p| p.into_inner()) = failures;
        if !next.is_empty() {
            tracing::info!(
                accounts = next.len(),
                "console accounts read again (the file changed)"
            );
        }
        *now = (version, std::sync::Arc::new(next));
        now.1.clone()
    }
}

/// Adds (or replaces the password and role of) account `id` in the file at `path`, creating the
/// file with mode 0600 when missing. The file is rewritten through a 0600 temporary file.
pub fn add_user(
    path: &Path,
    id: &str,
    role: Role,
    password: &str,
    params: Option<Params>,
) -> Result<(), AccountError> {
    if !valid_id(id) {
        return Err(AccountError::Invalid(format!(
            "account id {id:?} must be 1 to 64 letters, digits, '.', '_' or '-' (it is recorded in the audit trail; do not use a person's name)"
        )));
    }
    if password.chars().count() < MIN_PASSWORD {
        return Err(AccountError::Invalid(format!(
            "the password must have at least {MIN_PASSWORD} characters"
        )));
    }
    let err = |detail: String| AccountError::File {
        path: path.to_owned(),
        detail,
    };
    let mut file = if path.exists() {
        let bytes = tsunagi_certs::local::read_secret(path)
            .map_err(|e| err(e.to_string()))?
            .map_err(|e| err(e.to_string()))?;
        serde_json::from_slice::<AccountFile>(&bytes)
            .map_err(|e| err(format!("not an account file: {e}")))?
    } else {
        AccountFile::default()
    };
    let hash = hash_password(password, params)?;
    file.accounts.retain(|a| a.id != id);
    file.accounts.push(Account {
        id: id.to_owned(),
        role,
        hash,
    });
    super::private::write(path, &serde_json::to_vec_pretty(&file).unwrap_or_default())
        .map_err(|e| err(e.to_string()))
}

/// Removes account `id` from the file at `path`: its sessions end at their next request.
pub fn remove_user(path: &Path, id: &str) -> Result<(), AccountError> {
    let mut file = AccountFile {
        accounts: Accounts::read_list(path)?,
    };
    let before = file.accounts.len();
    file.accounts.retain(|a| a.id != id);
    if file.accounts.len() == before {
        return Err(AccountError::Invalid(format!(
            "no account {id:?} in {}",
            path.display()
        )));
    }
    super::private::write(path, &serde_json::to_vec_pretty(&file).unwrap_or_default()).map_err(
        |e| AccountError::File {
            path: path.to_owned(),
            detail: e.to_string(),
        },
    )
}

#[cfg(test)]
pub(crate) fn cheap() -> Option<Params> {
    Params::new(256, 1, 1, None).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Clerk);
        assert!(Role::Clerk < Role::Approver);
        assert!(Role::Approver < Role::Admin);
        assert_eq!(Role::parse("approver").unwrap(), Role::Approver);
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn add_user_writes_argon2id_hashes_in_a_0600_file() {
        let dir = tempdir();
        let path = dir.join("users.json");
        add_user(
            &path,
            "tanaka",
            Role::Clerk,
            "correct horse battery",
            cheap(),
        )
        .unwrap();
        add_user(&path, "sato", Role::Admin, "another long password", cheap()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("$argon2id$"), "{text}");
        assert!(!text.contains("correct horse"));
        let accounts = Accounts::load(&path).unwrap();
        assert_eq!(accounts.len(), 2);
        let now = Instant::now();
        let a = accounts
            .login("tanaka", "correct horse battery", now)
            .unwrap();
        assert_eq!(a.role, Role::Clerk);
        // Replacing keeps one account per id.
        add_user(
            &path,
            "tanaka",
            Role::Approver,
            "a new long password",
            cheap(),
        )
        .unwrap();
        let accounts = Accounts::load(&path).unwrap();
        assert_eq!(accounts.len(), 2);
        assert_eq!(
            accounts.login("tanaka", "correct horse battery", now),
            Err(LoginFailure::BadCredentials)
        );
        assert_eq!(
            accounts
                .login("tanaka", "a new long password", now)
                .unwrap()
                .role,
            Role::Approver
        );
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let dir = tempdir();
        let path = dir.join("users.json");
        let e = add_user(&path, "田中", Role::Clerk, "long enough password", cheap()).unwrap_err();
        assert!(e.to_string().contains("account id"), "{e}");
        let e = add_user(&path, "tanaka", Role::Clerk, "short", cheap()).unwrap_err();
        assert!(e.to_string().contains("at least 12"), "{e}");
        std::fs::write(&path, "{\"accounts\":[]}").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Accounts::load(&path).unwrap_err();
        assert!(e.to_string().contains("users.json"), "{e}");
        let e = Accounts::from_list(vec![Account {
            id: "x".into(),
            role: Role::Viewer,
            hash: "plain".into(),
        }])
        .unwrap_err();
        assert!(e.to_string().contains("argon2id"), "{e}");
    }

    /// [`MAX_FAILURES`] wrong passwords for `tanaka` at `t0`: the last one locks the account.
    fn fail_until_locked(accounts: &Accounts, t0: Instant) {
        for _ in 0..MAX_FAILURES - 1 {
            assert_eq!(
                accounts.login("tanaka", "wrong", t0),
                Err(LoginFailure::BadCredentials)
            );
        }
        assert_eq!(
            accounts.login("tanaka", "wrong", t0),
            Err(LoginFailure::Locked)
        );
    }

    /// One clerk account, `tanaka`, whose password is "the right password".
    fn tanaka() -> Accounts {
        let hash = hash_password("the right password", cheap()).unwrap();
        Accounts::from_list(vec![Account {
            id: "tanaka".into(),
            role: Role::Clerk,
            hash,
        }])
        .unwrap()
    }

    #[test]
    fn repeated_failures_lock_the_account_for_a_while() {
        let accounts = tanaka();
        let t0 = Instant::now();
        fail_until_locked(&accounts, t0);
        // Locked even against the right password, until the time passes.
        assert_eq!(
            accounts.login("tanaka", "the right password", t0 + Duration::from_secs(60)),
            Err(LoginFailure::Locked)
        );
        assert!(accounts
            .login("tanaka", "the right password", t0 + LOCK_FOR)
            .is_ok());
        // Unknown ids fail the same way as wrong passwords.
        assert_eq!(
            accounts.login("nobody", "x", t0),
            Err(LoginFailure::BadCredentials)
        );
    }

    #[test]
    fn made_up_ids_cannot_switch_off_the_lockout_of_a_real_account() {
        let accounts = tanaka();
        let t0 = Instant::now();
        // The table of failures is full of made-up ids (as after 10,000 failed logins).
        {
            let mut failures = accounts.failures.lock().unwrap();
            for i in 0..MAX_UNKNOWN_FAILURES {
                failures.insert(format!("made-up-{i}"), (1, None));
            }
        }
        assert_eq!(
            accounts.login("another-made-up-id", "x", t0),
            Err(LoginFailure::BadCredentials)
        );
        assert_eq!(
            accounts.failures.lock().unwrap().len(),
            MAX_UNKNOWN_FAILURES,
            "unknown ids beyond the bound are not kept"
        );
        // The real account's failures still count, and lock it.
        fail_until_locked(&accounts, t0);
        // An id no account could have (here 100 KiB long) is refused and never kept.
        let huge = "a".repeat(100 * 1024);
        assert_eq!(
            accounts.login(&huge, "x", t0),
            Err(LoginFailure::BadCredentials)
        );
        assert!(!accounts.failures.lock().unwrap().contains_key(&huge));
    }

    fn tempdir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "tsunagi-accounts-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
