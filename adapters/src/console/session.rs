//! Console sessions and their CSRF tokens.
//!
//! A session is a random 256-bit token in a cookie (`HttpOnly; SameSite=Strict; Path=/`, and
//! `Secure` when the console is served over TLS), kept in memory: restarting the console logs
//! everyone out. Each session has its own CSRF token, which every form carries in a hidden field
//! and every POST must present. A session unused for the idle time is gone. A visitor who is
//! not logged in gets an anonymous session too, so that the login form has a CSRF token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::accounts::Role;

/// The session cookie's name.
pub const COOKIE: &str = "tsunagi_console";
/// Most sessions kept at once (the oldest idle ones go first when full).
const MAX_SESSIONS: usize = 10_000;

/// Who a session belongs to, once logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    /// The account id.
    pub id: String,
    /// Its role.
    pub role: Role,
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
    last_seen: Instant,
}

/// The sessions of one console.
#[derive(Debug)]
pub struct Sessions {
    idle: Duration,
    map: Mutex<HashMap<String, Entry>>,
}

fn random_token() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 32];
    // The system generator does not fail on Linux; an all-zero token would only be used if it
    // did, and is refused below.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    hex::encode(b)
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
    /// Sessions that end after `idle` without use.
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            idle,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The idle time after which a session ends.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// The live session of cookie `token` at `now` (touching it), or `None` when there is none
    /// or it has been idle too long (it is then removed).
    pub fn get(&self, token: &str, now: Instant) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.get_mut(token)?;
        if now.saturating_duration_since(e.last_seen) >= self.idle {
            map.remove(token);
            return None;
        }
        e.last_seen = now;
        Some(Session {
            token: token.to_owned(),
            csrf: e.csrf.clone(),
            staff: e.staff.clone(),
        })
    }

    /// Starts a new session (anonymous, or for `staff` after a login) with fresh tokens.
    pub fn start(&self, staff: Option<Staff>, now: Instant) -> Session {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let idle = self.idle;
        map.retain(|_, e| now.saturating_duration_since(e.last_seen) < idle);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let token = random_token();
        let csrf = random_token();
        map.insert(
            token.clone(),
            Entry {
                csrf: csrf.clone(),
                staff: staff.clone(),
                last_seen: now,
            },
        );
        Session { token, csrf, staff }
    }

    /// Ends the session of `token`.
    pub fn end(&self, token: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
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

    #[test]
    fn sessions_end_after_the_idle_time() {
        let s = Sessions::new(Duration::from_secs(600));
        let t0 = Instant::now();
        let staff = Staff {
            id: "tanaka".into(),
            role: Role::Clerk,
        };
        let a = s.start(Some(staff.clone()), t0);
        assert_eq!(a.token.len(), 64);
        assert_ne!(a.token, a.csrf);
        // Use keeps it alive.
        let b = s.get(&a.token, t0 + Duration::from_secs(500)).unwrap();
        assert_eq!(b.staff, Some(staff));
        assert_eq!(b.csrf, a.csrf);
        assert!(s.get(&a.token, t0 + Duration::from_secs(1000)).is_some());
        // Idle too long: gone, and stays gone.
        assert!(s.get(&a.token, t0 + Duration::from_secs(1600)).is_none());
        assert!(s.get(&a.token, t0 + Duration::from_secs(1000)).is_none());
        // Ended: gone.
        let c = s.start(None, t0);
        s.end(&c.token);
        assert!(s.get(&c.token, t0).is_none());
        assert!(s.get("not a token", t0).is_none());
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
