//! Loopback tests: two or more transports under one federation CA on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tsunagi_certs::{Credentials, FederationCa};
use tsunagi_protocol::org::OrgId;

use super::*;

const LG: &str = "lg:131059";
const MI: &str = "mi:1310000017";

/// A unique directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "tsunagi-transport-{name}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn org(s: &str) -> OrgId {
    s.parse().unwrap()
}

/// A federation CA in a temporary directory.
struct Fed {
    tmp: TempDir,
    ca: FederationCa,
}

impl Fed {
    fn new(name: &str) -> Fed {
        let tmp = TempDir::new(name);
        let ca = FederationCa::init(tmp.path().join("ca"), "Test federation CA").unwrap();
        Fed { tmp, ca }
    }

    /// A second, unrelated CA named `name` in the same temporary directory.
    fn foreign(&self, name: &str) -> FederationCa {
        FederationCa::init(self.tmp.path().join(format!("foreign-{name}")), name).unwrap()
    }

    /// Issues credentials for `org` on 127.0.0.1 into `<tmp>/<dir>`.
    fn issue(&self, org_id: &str, dir: &str) -> PathBuf {
        issue_with(&self.ca, &self.tmp, org_id, dir)
    }

    /// The CA with its current CRL.
    fn trust(&self) -> Trust {
        Trust::from_files(
            self.ca.dir().join("ca.pem"),
            [self.ca.dir().join("crl.pem")],
        )
        .unwrap()
    }
}

fn issue_with(ca: &FederationCa, tmp: &TempDir, org_id: &str, dir: &str) -> PathBuf {
    let out = tmp.path().join(dir);
    ca.issue(&org(org_id), "127.0.0.1", &out, 30).unwrap();
    out
}

fn bind(creds: &Path, trust: &Trust, cfg: TransportConfig) -> Transport {
    let creds = Credentials::load(creds).unwrap();
    Transport::bind("127.0.0.1:0".parse().unwrap(), &creds, trust, cfg).unwrap()
}

/// What a test server saw.
#[derive(Default)]
struct Seen {
    messages: Mutex<Vec<InboundMessage>>,
}

impl Seen {
    fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }
}

/// Serves `t` with a handler that records each message and replies `receipt:<message>`, or
/// `too large: <n>` for an over-size one, or panics on `panic`, or replies 4 KiB to `big`.
fn serve(t: &Transport) -> Arc<Seen> {
    let seen = Arc::new(Seen::default());
    let recorder = seen.clone();
    let t = t.clone();
    tokio::spawn(async move {
        t.serve(move |m: InboundMessage| {
            let recorder = recorder.clone();
            async move {
                recorder.messages.lock().unwrap().push(m.clone());
                match m {
                    InboundMessage::Message { bytes, .. } if bytes == b"panic" => {
                        panic!("handler panics on purpose")
                    }
                    InboundMessage::Message { bytes, .. } if bytes == b"big" => vec![7u8; 4096],
                    InboundMessage::Message { bytes, .. } => {
                        [b"receipt:".as_slice(), &bytes].concat()
                    }
                    InboundMessage::TooLarge { len_at_least, .. } => {
                        format!("too large: {len_at_least}").into_bytes()
                    }
                }
            }
        })
        .await
    });
    seen
}

fn short_timeouts() -> TransportConfig {
    TransportConfig {
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(10),
        ..TransportConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_concurrency_and_connection_reuse() {
    let fed = Fed::new("roundtrip");
    let a = bind(&fed.issue(LG, "a"), &fed.trust(), short_timeouts());
    let b = bind(&fed.issue(MI, "b"), &fed.trust(), short_timeouts());
    let seen = serve(&b);
    assert_eq!(a.org(), &org(LG));

    let reply = a.request(&org(MI), b.local_addr(), b"hello").await.unwrap();
    assert_eq!(reply, b"receipt:hello");
    assert_eq!(
        seen.messages.lock().unwrap()[0],
        InboundMessage::Message {
            peer: org(LG),
            bytes: b"hello".to_vec()
        }
    );

    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let a = a.clone();
        let addr = b.local_addr();
        set.spawn(async move {
            let msg = format!("message {i}").into_bytes();
            let reply = a.request(&org(MI), addr, &msg).await.unwrap();
            assert_eq!(reply, [b"receipt:".as_slice(), &msg].concat());
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    assert_eq!(seen.count(), 51);
    assert!(seen
        .messages
        .lock()
        .unwrap()
        .iter()
        .all(|m| m.peer() == &org(LG)));
    assert_eq!(a.connection_count(), 1, "all requests share one connection");

    // An empty message and an empty reply are fine too.
    assert_eq!(
        a.request(&org(MI), b.local_addr(), b"").await.unwrap(),
        b"receipt:"
    );
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_peer_streams_caps_concurrent_requests() {
    let fed = Fed::new("streams");
    let a = bind(
        &fed.issue(LG, "a"),
        &fed.trust(),
        TransportConfig {
            per_peer_streams: 3,
            ..short_timeouts()
        },
    );
    let b = bind(&fed.issue(MI, "b"), &fed.trust(), short_timeouts());
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    {
        let (b, now, peak) = (b.clone(), now.clone(), peak.clone());
        tokio::spawn(async move {
            b.serve(move |_m| {
                let (now, peak) = (now.clone(), peak.clone());
                async move {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    b"ok".to_vec()
                }
            })
            .await
        });
    }
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..15 {
        let a = a.clone();
        let addr = b.local_addr();
        set.spawn(async move { a.request(&org(MI), addr, b"x").await.unwrap() });
    }
    while let Some(r) = set.join_next().await {
        assert_eq!(r.unwrap(), b"ok");
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!((1..=3).contains(&peak), "peak concurrency {peak}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_org_may_hold_only_so_many_connections_open() {
    let fed = Fed::new("connections");
    let b = bind(
        &fed.issue(MI, "b"),
        &fed.trust(),
        TransportConfig {
            per_peer_connections: 2,
            ..short_timeouts()
        },
    );
    let seen = serve(&b);
    // Three endpoints of the same org (a peer opening connection after connection): each
    // keeps its connection open after its request.
    let creds = fed.issue(LG, "a");
    let clients: Vec<Transport> = (0..3)
        .map(|_| bind(&creds, &fed.trust(), short_timeouts()))
        .collect();
    for c in &clients[..2] {
        assert_eq!(
            c.request(&org(MI), b.local_addr(), b"hi").await.unwrap(),
            b"receipt:hi"
        );
    }
    let err = clients[2]
        .request(&org(MI), b.local_addr(), b"one too many")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        err.to_string()
            .contains("too many connections from this org"),
        "{err}"
    );
    assert_eq!(seen.count(), 2);
    // Another org is not held up by this one's connections.
    let other = bind(&fed.issue("lg:131121", "c"), &fed.trust(), short_timeouts());
    assert_eq!(
        other.request(&org(MI), b.local_addr(), b"x").await.unwrap(),
        b"receipt:x"
    );
    // Once one closes, the org may connect again.
    clients[0].close().await;
    let t0 = std::time::Instant::now();
    loop {
        match clients[2].request(&org(MI), b.local_addr(), b"again").await {
            Ok(reply) => {
                assert_eq!(reply, b"receipt:again");
                break;
            }
            Err(e) => {
                assert!(t0.elapsed() < Duration::from_secs(10), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    for c in &clients[1..] {
        c.close().await;
    }
    other.close().await;
    b.close().await;
}

#[tokio::test]
async fn a_revoked_client_is_refused_with_a_tls_error() {
    let fed = Fed::new("revoked");
    let a_dir = fed.issue(LG, "a");
    let b = bind(&fed.issue(MI, "b"), &fed.trust(), short_timeouts());
    fed.ca.revoke(a_dir.join("tls.pem")).unwrap();
    // The server must learn of the revocation: reload its trust with the new CRL.
    b.reload_trust(&fed.trust()).unwrap();
    let seen = serve(&b);
    let a = bind(&a_dir, &fed.trust(), short_timeouts());

    let err = a
        .request(&org(MI), b.local_addr(), b"hello")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Tls {
                refused_by: RefusedBy::Peer,
                alert: Some(44),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_transient());
    let msg = err.to_string();
    assert!(
        msg.contains("certificate_revoked") && msg.contains("revoked in the peer's CRL"),
        "{msg}"
    );
    // A second try is refused the same way (the dead cached connection is replaced).
    let err = a
        .request(&org(MI), b.local_addr(), b"again")
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Tls { .. }), "{err:?}");
    assert_eq!(seen.count(), 0, "the handler must never see a revoked peer");
}

#[tokio::test]
async fn a_foreign_ca_is_refused_both_ways() {
    let fed = Fed::new("foreign");
    let foreign = fed.foreign("Foreign CA");
    let b = bind(&fed.issue(MI, "b"), &fed.trust(), short_timeouts());
    let seen = serve(&b);

    // A client with a certificate from another CA (same CA name, different key).
    let impostor = bind(
        &issue_with(&foreign, &fed.tmp, LG, "impostor"),
        &fed.trust(),
        short_timeouts(),
    );
    let err = impostor
        .request(&org(MI), b.local_addr(), b"hello")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Tls {
                refused_by: RefusedBy::Peer,
                alert: Some(48),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(err.to_string().contains("unknown_ca"), "{err}");
    assert_eq!(seen.count(), 0);

    // Another CA with the same name as ours: the signature gives it away.
    let lookalike = fed.foreign("Test federation CA");
    let impostor = bind(
        &issue_with(&lookalike, &fed.tmp, LG, "lookalike"),
        &fed.trust(),
        short_timeouts(),
    );
    let err = impostor
        .request(&org(MI), b.local_addr(), b"hello")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Tls {
                refused_by: RefusedBy::Peer,
                alert: Some(51),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains("another CA of the same name"),
        "{err}"
    );
    assert_eq!(seen.count(), 0);

    // A server with a certificate from another CA: we refuse it.
    let foreign_trust = Trust::from_files(
        foreign.dir().join("ca.pem"),
        [foreign.dir().join("crl.pem")],
    )
    .unwrap();
    let rogue = bind(
        &issue_with(&foreign, &fed.tmp, MI, "rogue"),
        &foreign_trust,
        short_timeouts(),
    );
    let rogue_seen = serve(&rogue);
    let a = bind(&fed.issue(LG, "a"), &fed.trust(), short_timeouts());
    let err = a
        .request(&org(MI), rogue.local_addr(), b"hello")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Tls {
                refused_by: RefusedBy::Us,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_transient());
    let msg = err.to_string();
    assert!(
        msg.contains("we refused") && msg.contains("UnknownIssuer"),
        "{msg}"
    );
    assert_eq!(rogue_seen.count(), 0);
    assert_eq!(a.connection_count(), 0);
}

#[tokio::test]
async fn a_server_naming_another_org_is_a_peer_mismatch() {
    let fed = Fed::new("mismatch");
    let a = bind(&fed.issue(LG, "a"), &fed.trust(), short_timeouts());
    let b = bind(&fed.issue(MI, "b"), &fed.trust(), short_timeouts());
    let seen = serve(&b);
    let err = a
        .request(&org("lg:132012"), b.local_addr(), b"hello")
        .await
        .unwrap_err();
    match &err {
        TransportError::PeerMismatch {
            expected, found, ..
        } => {
            assert_eq!(expected, &org("lg:132012"));
            assert_eq!(found, MI);
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains("check the directory entry"),
        "{err}"
    );
    assert_eq!(seen.count(), 0);
    assert_eq!(a.connection_count(), 0);
}

#[tokio::test]
async fn over_size_messages_reach_the_handler_as_too_large_and_replies_are_capped() {
    let fed = Fed::new("toolarge");
    let a = bind(&fed.issue(LG, "a"), &fed.trust(), short_timeouts());
    let b = bind(
        &fed.issue(MI, "b"),
        &fed.trust(),
        TransportConfig {
            max_message_bytes: 1024,
            ..short_timeouts()
        },
    );
    let a_seen = serve(&a);
    let b_seen = serve(&b);

    // Exactly at the limit is fine.
    let reply = a
        .request(&org(MI), b.local_addr(), &[1u8; 1024])
        .await
        .unwrap();
    assert!(reply.starts_with(b"receipt:"));

    // Over it: the handler is told, and its reply reaches the sender.
    let reply = a
        .request(&org(MI), b.local_addr(), &vec![1u8; 100_000])
        .await
        .unwrap();
    let reply = String::from_utf8(reply).unwrap();
    assert!(reply.starts_with("too large: "), "{reply}");
    match &b_seen.messages.lock().unwrap()[1] {
        InboundMessage::TooLarge {
            peer,
            max,
            len_at_least,
        } => {
            assert_eq!(peer, &org(LG));
            assert_eq!(*max, 1024);
            assert!(*len_at_least > 1024);
        }
        other => panic!("{other:?}"),
    }

    // A reply over our own limit is refused.
    let err = b
        .request(&org(LG), a.local_addr(), b"big")
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::TooLarge { limit: 1024, .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(a_seen.count(), 1);

    // The connection is still usable afterwards.
    let reply = a.request(&org(MI), b.local_addr(), b"next").await.unwrap();
    assert_eq!(reply, b"receipt:next");
    assert_eq!(a.connection_count(), 1);
}

#[tokio::test]
async fn nobody_listening_is_a_transient_error_within_the_connect_timeout() {
    let fed = Fed::new("nobody");
    let timeout = Duration::from_millis(300);
    let a = bind(
        &fed.issue(LG, "a"),
        &fed.trust(),
        TransportConfig {
            connect_timeout: timeout,
            ..short_timeouts()
        },
    );
    let addr = {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let started = Instant::now();
    let err = a.request(&org(MI), addr, b"hello").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        matches!(
            err,
            TransportError::Timeout { .. } | TransportError::Connect { .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    // Generous slack for a loaded machine: the point is that it does not hang.
    assert!(elapsed < timeout + Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn reload_trust_refuses_a_newly_revoked_client() {
    let fed = Fed::new("reload-server");
    let a_dir = fed.issue(LG, "a");
    let a = bind(&a_dir, &fed.trust(), short_timeouts());
    let b = bind(&fed.issue(MI, "b"), &fed.trust(), short_timeouts());
    let seen = serve(&b);
    assert_eq!(
        a.request(&org(MI), b.local_addr(), b"before")
            .await
            .unwrap(),
        b"receipt:before"
    );

    fed.ca.revoke(a_dir.join("tls.pem")).unwrap();
    b.reload_trust(&fed.trust()).unwrap();

    // The live connection is closed by the server; whichever way the client learns it, the
    // answer is a non-transient TLS refusal.
    let err = a
        .request(&org(MI), b.local_addr(), b"after")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Tls {
                refused_by: RefusedBy::Peer,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert!(err.to_string().to_lowercase().contains("revoked"), "{err}");

    // A new transport with the same certificate: refused at the handshake.
    let a2 = bind(&a_dir, &fed.trust(), short_timeouts());
    let err = a2
        .request(&org(MI), b.local_addr(), b"after")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Tls {
                refused_by: RefusedBy::Peer,
                alert: Some(44),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        seen.count(),
        1,
        "only the message sent before the revocation"
    );

    // Other peers are unaffected.
    let c = bind(&fed.issue("lg:132012", "c"), &fed.trust(), short_timeouts());
    assert_eq!(
        c.request(&org(MI), b.local_addr(), b"other").await.unwrap(),
        b"receipt:other"
    );
}

#[tokio::test]
async fn reload_trust_on_the_client_drops_cached_connections() {
    let fed = Fed::new("reload-client");
    let b_dir = fed.issue(MI, "b");
    let a = bind(&fed.issue(LG, "a"), &fed.trust(), short_timeouts());
    let b = bind(&b_dir, &fed.trust(), short_timeouts());
    let seen = serve(&b);
    a.request(&org(MI), b.local_addr(), b"one").await.unwrap();
    // A reload without changes: the next request uses a new connection and succeeds.
    a.reload_trust(&fed.trust()).unwrap();
    a.request(&org(MI), b.local_addr(), b"two").await.unwrap();
    assert_eq!(a.connection_count(), 2);

    fed.ca.revoke(b_dir.join("tls.pem")).unwrap();
    a.reload_trust(&fed.trust()).unwrap();
    let err = a
        .request(&org(MI), b.local_addr(), b"three")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Tls {
                refused_by: RefusedBy::Us,
                alert: Some(44),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("revoked in our CRL"), "{err}");
    assert_eq!(seen.count(), 2);
}

#[tokio::test]
async fn a_server_revoked_by_a_reload_gets_nothing_answered_on_an_older_connection() {
    let fed = Fed::new("reload-back");
    let b_dir = fed.issue(MI, "b");
    let a = bind(&fed.issue(LG, "a"), &fed.trust(), short_timeouts());
    let b = bind(&b_dir, &fed.trust(), short_timeouts());
    let seen_a = serve(&a);
    let _seen_b = serve(&b);
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.request(&org(MI), b.local_addr(), b"one").await.unwrap();
    // The server asks back on the client's connection: answered.
    let back = b
        .request_back(&org(LG), b"back", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(back, b"receipt:back");
    assert_eq!(seen_a.count(), 1);

    // The client's trust now revokes the server: its connection from before answers nothing.
    fed.ca.revoke(b_dir.join("tls.pem")).unwrap();
    a.reload_trust(&fed.trust()).unwrap();
    let refused = b
        .request_back(&org(LG), b"after", Duration::from_secs(2))
        .await;
    assert!(refused.is_err(), "answered a revoked server: {refused:?}");
    assert_eq!(
        seen_a.count(),
        1,
        "the handler saw the revoked server's message"
    );
}

#[tokio::test]
async fn a_connection_made_before_serving_answers_once_the_handler_is_installed() {
    let fed = Fed::new("serve-late");
    let a = bind(&fed.issue(LG, "a"), &fed.trust(), short_timeouts());
    let b = bind(&fed.issue(MI, "b"), &fed.trust(), short_timeouts());
    let _seen_b = serve(&b);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // `a` connects before it serves (a gateway's dispatcher can start before its server).
    a.request(&org(MI), b.local_addr(), b"early").await.unwrap();
    let seen_a = serve(&a);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let back = b
        .request_back(&org(LG), b"back", Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(back, b"receipt:back");
    assert_eq!(seen_a.count(), 1);
}

#[tokio::test]
async fn a_panicking_handler_resets_the_stream_and_a_closed_server_is_transient() {
    let fed = Fed::new("panic");
    let a = bind(&fed.issue(LG, "a"), &fed.trust(), short_timeouts());
    let b_dir = fed.issue(MI, "b");
    let b = bind(&b_dir, &fed.trust(), short_timeouts());
    serve(&b);

    let err = a
        .request(&org(MI), b.local_addr(), b"panic")
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Stream { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("handler failed"), "{err}");
    // The connection survives a failed stream.
    a.request(&org(MI), b.local_addr(), b"fine").await.unwrap();
    assert_eq!(a.connection_count(), 1);

    // A server closing tells its peers: the next request connects anew.
    b.close().await;
    let b2 = bind(&b_dir, &fed.trust(), short_timeouts());
    serve(&b2);
    let err = a
        .request(&org(MI), b.local_addr(), b"gone")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let reply = a
        .request(&org(MI), b2.local_addr(), b"moved")
        .await
        .unwrap();
    assert_eq!(reply, b"receipt:moved");
    assert_eq!(a.connection_count(), 2);
    assert_eq!(a.connections_replaced(), 0);
}

/// A UDP relay on 127.0.0.1 that forwards one client's datagrams to `target` while `forward`
/// is set (a network path that can break and be re-pointed).
struct Relay {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    forward: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay {
            addr: front.local_addr().unwrap(),
            target: Arc::new(Mutex::new(target)),
            forward: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        };
        let (target, forward) = (relay.target.clone(), relay.forward.clone());
        tokio::spawn(async move {
            let (mut up, mut down) = (vec![0u8; 65_536], vec![0u8; 65_536]);
            let mut client = None;
            loop {
                tokio::select! {
                    Ok((n, from)) = front.recv_from(&mut up) => {
                        client = Some(from);
                        if forward.load(Ordering::SeqCst) {
                            let to = *target.lock().unwrap();
                            let _ = back.send_to(&up[..n], to).await;
                        }
                    }
                    Ok((n, _)) = back.recv_from(&mut down) => {
                        if let (Some(c), true) = (client, forward.load(Ordering::SeqCst)) {
                            let _ = front.send_to(&down[..n], c).await;
                        }
                    }
                }
            }
        });
        relay
    }
}

#[tokio::test]
async fn a_silently_dead_cached_connection_is_replaced_once() {
    let fed = Fed::new("dead");
    let cfg = TransportConfig {
        idle_timeout: Duration::from_secs(2),
        ..short_timeouts()
    };
    let a = bind(&fed.issue(LG, "a"), &fed.trust(), cfg.clone());
    let b_dir = fed.issue(MI, "b");
    let b = bind(&b_dir, &fed.trust(), cfg.clone());
    serve(&b);
    let relay = Relay::start(b.local_addr()).await;
    assert_eq!(
        a.request(&org(MI), relay.addr, b"one").await.unwrap(),
        b"receipt:one"
    );

    // The server goes away without its goodbye reaching us, and another one takes its place
    // behind the same address: the cached connection looks alive but is dead.
    relay.forward.store(false, Ordering::SeqCst);
    b.close().await;
    let b2 = bind(&b_dir, &fed.trust(), cfg);
    let seen = serve(&b2);
    *relay.target.lock().unwrap() = b2.local_addr();
    relay.forward.store(true, Ordering::SeqCst);

    let reply = a.request(&org(MI), relay.addr, b"two").await.unwrap();
    assert_eq!(reply, b"receipt:two");
    assert_eq!(seen.count(), 1);
    assert_eq!(a.connection_count(), 2);
    assert_eq!(a.connections_replaced(), 1, "replaced under the request");
}

#[test]
fn trust_refuses_a_crl_from_another_ca() {
    let fed = Fed::new("trust");
    let foreign = fed.foreign("Foreign CA");
    let err = Trust::from_files(fed.ca.dir().join("ca.pem"), [foreign.dir().join("crl.pem")])
        .unwrap_err();
    assert!(matches!(err, TransportError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("crl.pem"), "{err}");
    let err =
        Trust::from_files(fed.tmp.path().join("missing.pem"), Vec::<PathBuf>::new()).unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let trust = fed.trust();
    assert_eq!(trust.crls().len(), 1);
    assert_eq!(trust.ca(), fed.ca.cert_der());
}

#[test]
fn transient_errors_are_the_ones_worth_retrying() {
    let addr: SocketAddr = "127.0.0.1:4433".parse().unwrap();
    let transient = [
        TransportError::Connect {
            addr,
            cause: "x".into(),
        },
        TransportError::Timeout {
            addr,
            during: "connecting to",
            after: Some(Duration::from_secs(1)),
        },
        TransportError::Stream {
            addr,
            cause: "x".into(),
        },
    ];
    let permanent = [
        TransportError::Tls {
            addr,
            refused_by: RefusedBy::Peer,
            alert: Some(44),
            reason: "invalid peer certificate: Revoked".into(),
        },
        TransportError::PeerMismatch {
            addr,
            expected: org(LG),
            found: MI.into(),
        },
        TransportError::TooLarge { addr, limit: 1 },
        TransportError::config("x"),
        TransportError::Closed,
    ];
    assert!(transient.iter().all(TransportError::is_transient));
    assert!(!permanent.iter().any(TransportError::is_transient));
    let msg = permanent[0].to_string();
    assert!(
        msg.contains("127.0.0.1:4433")
            && msg.contains("certificate_revoked")
            && msg.contains("it said: invalid peer certificate: Revoked"),
        "{msg}"
    );
    assert_eq!(alert_name(48), "unknown_ca");
}

#[tokio::test]
async fn bad_configurations_are_refused() {
    let fed = Fed::new("config");
    let creds = Credentials::load(fed.issue(LG, "a")).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    for cfg in [
        TransportConfig {
            per_peer_streams: 0,
            ..TransportConfig::default()
        },
        TransportConfig {
            per_peer_connections: 0,
            ..TransportConfig::default()
        },
        TransportConfig {
            max_message_bytes: 0,
            ..TransportConfig::default()
        },
        TransportConfig {
            idle_timeout: Duration::ZERO,
            ..TransportConfig::default()
        },
    ] {
        let err = Transport::bind(addr, &creds, &fed.trust(), cfg).unwrap_err();
        assert!(matches!(err, TransportError::Config { .. }), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_named_certificate_is_checked_against_the_directory_host_not_the_ip() {
    let fed = Fed::new("dns-host");
    let a = bind(&fed.issue(LG, "a"), &fed.trust(), short_timeouts());
    let b_dir = fed.tmp.path().join("b");
    fed.ca
        .issue(&org(MI), "hospital.example", &b_dir, 30)
        .unwrap();
    let b = bind(&b_dir, &fed.trust(), short_timeouts());
    let _seen = serve(&b);
    // Dialled by IP and checked against the IP: the certificate names hospital.example.
    let e = a
        .request(&org(MI), b.local_addr(), b"by ip")
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("not valid for name \"127.0.0.1\""),
        "{e}"
    );
    // Dialled by IP, checked against the host the directory names: delivered.
    let reply = a
        .request_to(&org(MI), b.local_addr(), "hospital.example", b"by host")
        .await
        .unwrap();
    assert_eq!(reply, b"receipt:by host");
    // Another name is refused (and the cached connection is not reused for it).
    let e = a
        .request_to(&org(MI), b.local_addr(), "clinic.example", b"x")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("clinic.example"), "{e}");
    a.close().await;
    b.close().await;
}

/// A server certificate check that holds the client's handshake until told to go on, then
/// refuses: a handshake the server has answered and must wait for.
#[derive(Debug)]
struct HeldCheck(Mutex<std::sync::mpsc::Receiver<()>>);

impl rustls::client::danger::ServerCertVerifier for HeldCheck {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let _ = self.0.lock().unwrap().recv_timeout(Duration::from_secs(30));
        Err(rustls::Error::General("held on purpose".into()))
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2".into()))
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("not reached".into()))
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client at `ip` (a loopback address) that holds a handshake with `server` open until
/// `go_on` sends (or is dropped); the thread answers whether the handshake then failed.
fn hold_a_handshake(
    ip: &str,
    server: SocketAddr,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<bool>) {
    let (go_on, held) = std::sync::mpsc::channel();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(HeldCheck(Mutex::new(held))))
    .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let client = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    let local: SocketAddr = format!("{ip}:0").parse().unwrap();
    let holder = std::thread::spawn(move || {
        // Its own runtime: the held check blocks the thread it runs on.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut ep = quinn::Endpoint::client(local).unwrap();
            ep.set_default_client_config(client);
            ep.connect(server, "127.0.0.1").unwrap().await.is_err()
        })
    });
    (go_on, holder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_past_the_caps_are_refused_before_any_tls_work() {
    let fed = Fed::new("handshakes");
    // Four in progress at once, one from any source.
    let b = bind(
        &fed.issue(MI, "b"),
        &fed.trust(),
        TransportConfig {
            max_handshakes: 4,
            ..short_timeouts()
        },
    );
    let _seen = serve(&b);
    let addr = b.local_addr();
    let admission = b.inner.admission.clone();
    let held_by = |n: usize| {
        let t0 = Instant::now();
        let admission = admission.clone();
        async move {
            // Each address validated (a Retry first), its handshake answered and held.
            while admission.in_progress() < n {
                assert!(t0.elapsed() < Duration::from_secs(10), "only {n} held");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let creds = fed.issue(LG, "a");
    let member_at = |ip: &str| {
        let creds = Credentials::load(&creds).unwrap();
        Transport::bind(
            format!("{ip}:0").parse().unwrap(),
            &creds,
            &fed.trust(),
            short_timeouts(),
        )
        .unwrap()
    };
    let refused = |e: TransportError| {
        assert!(e.is_transient(), "{e:?}");
        assert!(e.to_string().contains("refused"), "{e}");
    };
    // Anyone who reaches the port, with no certificate at all, can hold a handshake open: the
    // server has answered and waits for the client's next flight.
    let mut holders = vec![hold_a_handshake("127.0.0.1", addr)];
    held_by(1).await;
    // A member from the same source is refused, at once...
    let a = member_at("127.0.0.1");
    let t0 = Instant::now();
    refused(a.request(&org(MI), addr, b"held up").await.unwrap_err());
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    a.close().await;
    // ... while other sources are served, until the slots in all are taken.
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        holders.push(hold_a_handshake(ip, addr));
    }
    held_by(4).await;
    let e = member_at("127.0.0.5");
    refused(e.request(&org(MI), addr, b"held up").await.unwrap_err());
    e.close().await;
    assert_eq!(
        b.handshakes_refused(),
        admission::Counts {
            per_source: 1,
            in_all: 1
        }
    );
    // Once the held handshakes end, handshakes go through again.
    for (go_on, holder) in holders {
        go_on.send(()).unwrap();
        assert!(holder.join().unwrap(), "a held handshake failed");
    }
    let t0 = Instant::now();
    loop {
        let a = member_at("127.0.0.1");
        match a.request(&org(MI), addr, b"again").await {
            Ok(reply) => {
                assert_eq!(reply, b"receipt:again");
                a.close().await;
                break;
            }
            Err(e) => {
                a.close().await;
                assert!(t0.elapsed() < Duration::from_secs(10), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    b.close().await;
}
