//! Console sessions and their CSRF tokens.
//!
//! A session is a random 256-bit token in a cookie (`HttpOnly; SameSite=Strict; Path=/`, and
//! `Secure` when the console is served over TLS). The console keeps only the token's SHA-256
//! digest; with a data directory ([`super::store`]) the sessions are also written there, sealed,
//! so that a restart logs nobody out. Each session has its own CSRF token, which every form
//! carries in a hidden field and every POST must present. A session unused for the idle time is
//! gone (after a restart too: the time of last use is kept, to within a tenth of the idle time
//! and at most 30 s). A visitor who is not logged in gets an anonymous session too, so that the
//! login form has a CSRF token.
//!
//! A signed-in session also ends [`MAX_LIFETIME`] after its login however much it is used, and
//! at once when its account changes: it keeps the account's stamp from the login (a digest of
//! the id, role and password hash), and every request compares it with the account file as it
//! is now. A new password, another role or the account's removal therefore ends every session
//! of the account, without a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::accounts::Role;
use super::store::{ConsoleStore, StoredSession};

/// The session cookie's name.
pub const COOKIE: &str = "tsunagi_console";
/// Most sessions kept at once (the oldest idle ones go first when full).
const MAX_SESSIONS: usize = 10_000;
/// How long a signed-in session lasts at most, however much it is used: a working day.
pub const MAX_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Most anonymous sessions (opened by the login page, before a login) kept at once.
const MAX_ANONYMOUS_SESSIONS: usize = MAX_SESSIONS / 2;

/// Who a session belongs to, once logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    /// The account id.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// The account's stamp at the login ([`super::accounts::Accounts::stamp_of`]).
    pub stamp: String,
}

/// One session as a request sees it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The cookie token.
    pub token: String,
    /// The CSRF token its forms carry.
    pub csrf: String,
    /// The staff member, when logged in.
    pub staff: Option<Staff>,
}

#[derive(Debug)]
struct Entry {
    csrf: String,
    staff: Option<Staff>,
    last_seen: SystemTime,
    /// The last use as last written to the data directory.
    saved_seen: SystemTime,
    /// When the session began.
    started: SystemTime,
}

impl Entry {
    /// Whether the session has ended at `now`: unused for `idle`, or signed in longer than
    /// [`MAX_LIFETIME`], or its account's stamp is no longer `stamp_of` the account.
    fn ended(
        &self,
        now: SystemTime,
        idle: Duration,
        stamp_of: &dyn Fn(&str) -> Option<String>,
    ) -> bool {
        idle_for(now, self.last_seen) >= idle
            || self.staff.as_ref().is_some_and(|s| {
                idle_for(now, self.started) >= MAX_LIFETIME
                    || stamp_of(&s.id).is_none_or(|now| !same_token(&now, &s.stamp))
            })
    }
}

/// The sessions of one console, keyed by the digest of their token.
#[derive(Debug)]
pub struct Sessions {
    idle: Duration,
    map: Mutex<HashMap<String, Entry>>,
    store: Option<Arc<ConsoleStore>>,
}

fn random_token() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    // The system generator does not fail on Linux; an all-zero token would only be used if it
    // did, and is refused below.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    hex::encode(b)
}

/// The SHA-256 digest of a cookie token, hex: all the console keeps of it.
fn digest(token: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

fn idle_for(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or(Duration::ZERO)
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Compares two tokens in constant time.
pub fn same_token(a: &str, b: &str) -> bool {
    // Compare digests, so that neither the length nor the first differing byte shows in timing.
    let d = |x: &str| ring::digest::digest(&ring::digest::SHA256, x.as_bytes());
    let (da, db) = (d(a), d(b));
    let diff = da
        .as_ref()
        .iter()
        .zip(db.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    diff == 0 && !a.is_empty()
}

impl Sessions {
    /// Sessions kept in memory only, that end after `idle` without use.
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            idle,
            map: Mutex::new(HashMap::new()),
            store: None,
        }
    }

    /// Sessions also kept in `store`, with those stored there that are still live at `now`
    /// (`stamp_of`: the accounts as they are now; a session whose account changed does not
    /// come back).
    pub fn with_store(
        idle: Duration,
        store: Arc<ConsoleStore>,
        now: SystemTime,
        stamp_of: &dyn Fn(&str) -> Option<String>,
    ) -> Sessions {
        let mut map = HashMap::new();
        for s in store.load_sessions() {
            let at = |ms| UNIX_EPOCH + Duration::from_millis(ms);
            let entry = Entry {
                csrf: s.csrf,
                staff: s.staff.map(|(id, role)| Staff {
                    id,
                    role,
                    stamp: s.stamp,
                }),
                last_seen: at(s.last_seen_ms),
                saved_seen: at(s.last_seen_ms),
                started: at(s.started_ms),
            };
            if s.digest.len() != 64 || entry.ended(now, idle, stamp_of) {
                continue;
            }
            map.insert(s.digest, entry);
        }
        Sessions {
            idle,
            map: Mutex::new(map),
            store: Some(store),
        }
    }

    /// The idle time after which a session ends.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Writes the sessions to the data directory, if there is one (a failure is logged: the
    /// sessions go on in memory).
    fn persist(&self, map: &HashMap<String, Entry>) {
        let Some(store) = &self.store else { return };
        let rows: Vec<StoredSession> = map
            .iter()
            .map(|(digest, e)| StoredSession {
                digest: digest.clone(),
                csrf: e.csrf.clone(),
                staff: e.staff.as_ref().map(|s| (s.id.clone(), s.role)),
                last_seen_ms: millis(e.last_seen),
                stamp: e
                    .staff
                    .as_ref()
                    .map(|s| s.stamp.clone())
                    .unwrap_or_default(),
                started_ms: millis(e.started),
            })
            .collect();
        if let Err(e) = store.save_sessions(&rows) {
            tracing::warn!("sessions not saved (they last until the console restarts): {e}");
        }
    }

    /// The live session of cookie `token` at `now` (touching it), or `None` when there is none
    /// or it has ended (idle too long, too old, its account changed: `stamp_of` gives the
    /// accounts as they are now); an ended session is removed.
    pub fn get(
        &self,
        token: &str,
        now: SystemTime,
        stamp_of: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let key = digest(token);
        let e = map.get_mut(&key)?;
        if e.ended(now, self.idle, stamp_of) {
            map.remove(&key);
            self.persist(&map);
            return None;
        }
        e.last_seen = now;
        let session = Session {
            token: token.to_owned(),
            csrf: e.csrf.clone(),
            staff: e.staff.clone(),
        };
        // The time of last use is written now and then, not on every request.
        let every = (self.idle / 10).min(Duration::from_secs(30));
        if idle_for(now, e.saved_seen) >= every {
            e.saved_seen = now;
            self.persist(&map);
        }
        Some(session)
    }

    /// Starts a new session (anonymous, or for `staff` after a login) with fresh tokens.
    pub fn start(&self, staff: Option<Staff>, now: SystemTime) -> Session {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let idle = self.idle;
        map.retain(|_, e| idle_for(now, e.last_seen) < idle);
        // Room is made from the anonymous sessions (the login form's) first, and they are
        // bounded on their own: requests for the login page, which anyone can send, never
        // push out a session of staff who logged in.
        let anonymous = map.values().filter(|e| e.staff.is_none()).count();
        let full = map.len() >= MAX_SESSIONS;
        if full || (staff.is_none() && anonymous >= MAX_ANONYMOUS_SESSIONS) {
            let oldest = |anonymous_only: bool| {
                map.iter()
                    .filter(|(_, e)| !anonymous_only || e.staff.is_none())
                    .min_by_key(|(_, e)| e.last_seen)
                    .map(|(k, _)| k.clone())
            };
            if let Some(k) = oldest(true).or_else(|| oldest(false)) {
                map.remove(&k);
            }
        }
        let token = random_token();
        let csrf = random_token();
        map.insert(
            digest(&token),
            Entry {
                csrf: csrf.clone(),
                staff: staff.clone(),
                last_seen: now,
                saved_seen: now,
                started: now,
            },
        );
        // An anonymous session (the login form's) need not outlive a restart.
        if staff.is_some() {
            self.persist(&map);
        }
        Session { token, csrf, staff }
    }

    /// Ends the session of `token`.
    pub fn end(&self, token: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.remove(&digest(token)) {
            if e.staff.is_some() {
                self.persist(&map);
            }
        }
    }
}

/// The `Set-Cookie` value for session `token` (`secure` under TLS).
pub fn set_cookie(token: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The session token in a `Cookie` header, if any.
pub fn cookie_token(header: &str) -> Option<&str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == COOKIE).then_some(v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tanaka's account stamp while the account is unchanged.
    const STAMP: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

    /// The accounts while tanaka's is unchanged.
    fn unchanged(id: &str) -> Option<String> {
        (id == "tanaka").then(|| STAMP.to_owned())
    }

    fn tanaka() -> Staff {
        Staff {
            id: "tanaka".into(),
            role: Role::Clerk,
            stamp: STAMP.into(),
        }
    }

    #[test]
    fn sessions_end_after_the_idle_time() {
        let s = Sessions::new(Duration::from_secs(600));
        let t0 = SystemTime::now();
        let staff = tanaka();
        let a = s.start(Some(staff.clone()), t0);
        assert_eq!(a.token.len(), 64);
        assert_ne!(a.token, a.csrf);
        // Use keeps it alive.
        let b = s
            .get(&a.token, t0 + Duration::from_secs(500), &unchanged)
            .unwrap();
        assert_eq!(b.staff, Some(staff));
        assert_eq!(b.csrf, a.csrf);
        assert!(s
            .get(&a.token, t0 + Duration::from_secs(1000), &unchanged)
            .is_some());
        // Idle too long: gone, and stays gone.
        assert!(s
            .get(&a.token, t0 + Duration::from_secs(1600), &unchanged)
            .is_none());
        assert!(s
            .get(&a.token, t0 + Duration::from_secs(1000), &unchanged)
            .is_none());
        // Ended: gone.
        let c = s.start(None, t0);
        s.end(&c.token);
        assert!(s.get(&c.token, t0, &unchanged).is_none());
        assert!(s.get("not a token", t0, &unchanged).is_none());
    }

    #[test]
    fn sessions_survive_a_restart_with_a_data_directory() {
        let dir =
            std::env::temp_dir().join(format!("tsunagi-console-sessions-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(ConsoleStore::open(&dir).unwrap());
        let idle = Duration::from_secs(600);
        let t0 = SystemTime::now();
        let s = Sessions::with_store(idle, store.clone(), t0, &unchanged);
        let staff = tanaka();
        let a = s.start(Some(staff.clone()), t0);
        let gone = s.start(Some(staff.clone()), t0);
        s.end(&gone.token);
        // Only the digest is on disk (and sealed); a restart keeps the session and its CSRF.
        let raw = std::fs::read(dir.join(super::super::store::SESSIONS_FILE)).unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains(&a.token));
        assert!(store.load_sessions().iter().all(|x| x.digest != a.token));
        drop(s);
        let s = Sessions::with_store(
            idle,
            store.clone(),
            t0 + Duration::from_secs(100),
            &unchanged,
        );
        let b = s
            .get(&a.token, t0 + Duration::from_secs(100), &unchanged)
            .unwrap();
        assert_eq!((b.staff, b.csrf), (Some(staff), a.csrf));
        assert!(
            s.get(&gone.token, t0, &unchanged).is_none(),
            "an ended session stays ended"
        );
        // The account removed, or changed (its role, its password), before a restart: its
        // sessions end.
        drop(s);
        let removed =
            Sessions::with_store(idle, store.clone(), t0 + Duration::from_secs(100), &|_| {
                None
            });
        assert!(removed
            .get(&a.token, t0 + Duration::from_secs(100), &unchanged)
            .is_none());
        let another = |_: &str| Some("a6".repeat(16));
        let changed =
            Sessions::with_store(idle, store.clone(), t0 + Duration::from_secs(100), &another);
        assert!(changed
            .get(&a.token, t0 + Duration::from_secs(100), &unchanged)
            .is_none());
        // Idle across the restart: gone.
        let s = Sessions::with_store(idle, store, t0 + Duration::from_secs(2000), &unchanged);
        assert!(s
            .get(&a.token, t0 + Duration::from_secs(2000), &unchanged)
            .is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_session_ends_when_its_account_changes_and_after_a_working_day() {
        let s = Sessions::new(Duration::from_secs(600));
        let t0 = SystemTime::now();
        let a = s.start(Some(tanaka()), t0);
        assert!(s.get(&a.token, t0, &unchanged).is_some());
        // A new password or role (another stamp): ended, also once the stamp is back.
        let another = |_: &str| Some("a6".repeat(16));
        assert!(s.get(&a.token, t0, &another).is_none());
        assert!(s.get(&a.token, t0, &unchanged).is_none());
        // The account removed: ended.
        let b = s.start(Some(tanaka()), t0);
        assert!(s.get(&b.token, t0, &|_| None).is_none());
        // An anonymous session has no account to change.
        let anonymous = s.start(None, t0);
        assert!(s.get(&anonymous.token, t0, &|_| None).is_some());
        // Used every few minutes, it still ends MAX_LIFETIME after the login.
        let c = s.start(Some(tanaka()), t0);
        let mut t = t0;
        while t < t0 + MAX_LIFETIME - Duration::from_secs(300) {
            t += Duration::from_secs(300);
            assert!(s.get(&c.token, t, &unchanged).is_some());
        }
        t += Duration::from_secs(300);
        assert!(s.get(&c.token, t, &unchanged).is_none());
    }

    #[test]
    fn requests_for_the_login_page_never_push_out_a_staff_session() {
        let sessions = Sessions::new(Duration::from_secs(3600));
        let t0 = SystemTime::now();
        let staff = sessions.start(Some(tanaka()), t0);
        for i in 0..MAX_SESSIONS + 1 {
            sessions.start(None, t0 + Duration::from_millis(i as u64 + 1));
        }
        let later = t0 + Duration::from_secs(60);
        assert!(sessions.get(&staff.token, later, &unchanged).is_some());
        assert_eq!(
            sessions.map.lock().unwrap().len(),
            MAX_ANONYMOUS_SESSIONS + 1
        );
    }

    #[test]
    fn cookies_are_httponly_and_strict() {
        let c = set_cookie("abc", false);
        assert_eq!(c, "tsunagi_console=abc; Path=/; HttpOnly; SameSite=Strict");
        assert!(set_cookie("abc", true).ends_with("; Secure"));
        assert_eq!(cookie_token("a=1; tsunagi_console=xyz; b=2"), Some("xyz"));
        assert_eq!(cookie_token("a=1"), None);
    }

    #[test]
    fn csrf_tokens_compare_exactly() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", ""));
    }
}
