//! Faults, measured: a UDP fault proxy between two gateways, with no root (no `tc netem`, no
//! iptables). Bunkyo reaches the hospital only through the proxy, which drops 10 % of the
//! datagrams in each direction, duplicates 2 %, reorders by holding 5 % for 5–50 ms, and drops
//! everything during a 30 s partition in the middle of a 10,000-envelope stream. Afterwards every
//! envelope acknowledged to the submitter is in the hospital's inbox exactly once, and nothing
//! else is.
//!
//! **How the sender is sent through the proxy.** The receiver keeps listening on the address the
//! shared directory gives it, so its own directory entry still matches its `listen` (the check a
//! gateway may make of itself at startup keeps passing). Only the *sender* gets its own copy of
//! the directory, signed by the same federation CA, in which the hospital's address is the
//! proxy's ([`Federation::reach_via`]). This needs no gateway option for tests and no second
//! address per member: a directory is per-gateway configuration anyway, and the receiver never
//! compares its peers' addresses with the directory (identity comes from the certificate, and
//! the proxy is on 127.0.0.1, the IP the hospital's certificate is issued for). Listing the
//! proxy's port in everyone's directory instead would make the receiver's own entry disagree
//! with its `listen`.
//!
//! The proxy listens on a loopback port and forwards each client's datagrams from a socket of
//! its own per client (so the receiver sees one stable peer address per client) and the replies
//! back. Its faults come from a deterministic xorshift generator.
//!
//! `TSUNAGI_FAULT_ENVELOPES` sets the count (default 10,000) and `TSUNAGI_FAULT_PARTITION_SECS`
//! the partition (default 30) for quick local runs.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::UdpSocket;
use tsunagi_tests::Federation;

const BUNKYO: &str = "lg:131059";
const HOSPITAL: &str = "mi:1310000017";

/// A tiny deterministic generator for the faults (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// True with probability `permille` / 1000.
    fn chance(&mut self, permille: u64) -> bool {
        self.next(1000) < permille
    }
}

/// What the proxy does to each datagram (probabilities in ‰, per direction).
#[derive(Debug, Clone, Copy)]
struct Faults {
    loss: u64,
    duplicate: u64,
    reorder: u64,
    /// A reordered datagram is held for this many ms (inclusive range).
    hold_ms: (u64, u64),
}

impl Faults {
    const NONE: Faults = Faults {
        loss: 0,
        duplicate: 0,
        reorder: 0,
        hold_ms: (0, 0),
    };
    /// The issue's figures: 10 % loss, 2 % duplicated, 5 % held 5–50 ms.
    const ISSUE: Faults = Faults {
        loss: 100,
        duplicate: 20,
        reorder: 50,
        hold_ms: (5, 50),
    };
}

/// Datagram counts of one direction.
#[derive(Debug, Default)]
struct Counts {
    /// Arrived at the proxy.
    received: AtomicU64,
    /// Dropped by the loss rate.
    dropped: AtomicU64,
    /// Dropped because of the partition.
    blackholed: AtomicU64,
    /// Sent twice.
    duplicated: AtomicU64,
    /// Held back (reordered); a duplicate's copies count separately.
    held: AtomicU64,
    /// Sent on (copies included).
    sent: AtomicU64,
}

/// A snapshot of [`Counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tally {
    received: u64,
    dropped: u64,
    blackholed: u64,
    duplicated: u64,
    held: u64,
    sent: u64,
}

impl Counts {
    fn tally(&self) -> Tally {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Tally {
            received: g(&self.received),
            dropped: g(&self.dropped),
            blackholed: g(&self.blackholed),
            duplicated: g(&self.duplicated),
            held: g(&self.held),
            sent: g(&self.sent),
        }
    }
}

struct Shared {
    faults: Faults,
    partitioned: AtomicBool,
    rng: Mutex<Rng>,
    /// Client → receiver.
    up: Counts,
    /// Receiver → client.
    down: Counts,
}

impl Shared {
    /// For one datagram: the delay of each copy to send (none: dropped).
    fn plan(&self, c: &Counts) -> Vec<Duration> {
        c.received.fetch_add(1, Ordering::Relaxed);
        if self.partitioned.load(Ordering::Relaxed) {
            c.blackholed.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        }
        let f = self.faults;
        let mut rng = self.rng.lock().unwrap();
        if rng.chance(f.loss) {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        }
        let copies = if rng.chance(f.duplicate) {
            c.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                if rng.chance(f.reorder) {
                    c.held.fetch_add(1, Ordering::Relaxed);
                    Duration::from_millis(f.hold_ms.0 + rng.next(f.hold_ms.1 - f.hold_ms.0 + 1))
                } else {
                    Duration::ZERO
                }
            })
            .collect()
    }
}

/// Sends `datagram` through `sock` (to `to`, or to its connected peer) as `plan` says.
async fn pass(
    shared: &Arc<Shared>,
    down: bool,
    sock: &Arc<UdpSocket>,
    to: Option<SocketAddr>,
    datagram: &[u8],
) {
    let counts = if down { &shared.down } else { &shared.up };
    for delay in shared.plan(counts) {
        if delay.is_zero() {
            send(sock, to, datagram).await;
            counts.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            let (shared, sock, datagram) = (shared.clone(), sock.clone(), datagram.to_vec());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                send(&sock, to, &datagram).await;
                let counts = if down { &shared.down } else { &shared.up };
                counts.sent.fetch_add(1, Ordering::Relaxed);
            });
        }
    }
}

async fn send(sock: &UdpSocket, to: Option<SocketAddr>, datagram: &[u8]) {
    // A send error (e.g. ICMP port unreachable from an earlier datagram) is just another loss.
    let _ = match to {
        Some(to) => sock.send_to(datagram, to).await,
        None => sock.send(datagram).await,
    };
}

/// A UDP proxy on loopback that forwards to one receiver and injects [`Faults`].
struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    fn start(receiver: SocketAddr, faults: Faults, seed: u64) -> FaultProxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listen = rt
            .block_on(UdpSocket::bind("127.0.0.1:0"))
            .expect("proxy socket");
        let addr = listen.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            faults,
            partitioned: AtomicBool::new(false),
            rng: Mutex::new(Rng(seed | 1)),
            up: Counts::default(),
            down: Counts::default(),
        });
        let listen = Arc::new(listen);
        let s = shared.clone();
        rt.spawn(async move {
            let mut upstreams = HashMap::<SocketAddr, Arc<UdpSocket>>::new();
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, client)) = listen.recv_from(&mut buf).await else {
                    continue;
                };
                let up = match upstreams.get(&client) {
                    Some(up) => up.clone(),
                    None => {
                        let up = UdpSocket::bind("127.0.0.1:0").await.expect("upstream");
                        up.connect(receiver).await.expect("connect upstream");
                        let up = Arc::new(up);
                        upstreams.insert(client, up.clone());
                        let (s, up2, listen) = (s.clone(), up.clone(), listen.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            loop {
                                // An error is an ICMP report of an earlier datagram; go on.
                                if let Ok(n) = up2.recv(&mut buf).await {
                                    pass(&s, true, &listen, Some(client), &buf[..n]).await;
                                }
                            }
                        });
                        up
                    }
                };
                pass(&s, false, &up, None, &buf[..n]).await;
            }
        });
        FaultProxy {
            addr,
            shared,
            rt: Some(rt),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops everything, both ways, while `on`.
    fn partition(&self, on: bool) {
        self.shared.partitioned.store(on, Ordering::Relaxed);
    }

    fn up(&self) -> Tally {
        self.shared.up.tally()
    }

    fn down(&self) -> Tally {
        self.shared.down.tally()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Waits (up to 5 s) until `f` holds.
fn settle(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An echo server for the proxy's unit tests: counts what it receives, in order of arrival.
struct Echo {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u32>>>,
    /// The last peer (the proxy's upstream socket).
    peer: Arc<Mutex<Option<SocketAddr>>>,
    sock: Arc<UdpSocket>,
}

fn echo(rt: &tokio::runtime::Runtime) -> Echo {
    let sock = Arc::new(rt.block_on(UdpSocket::bind("127.0.0.1:0")).unwrap());
    let addr = sock.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let peer = Arc::new(Mutex::new(None));
    let (s, seen2, peer2) = (sock.clone(), seen.clone(), peer.clone());
    rt.spawn(async move {
        let mut buf = [0u8; 64];
        loop {
            let (n, from) = s.recv_from(&mut buf).await.unwrap();
            seen2
                .lock()
                .unwrap()
                .push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
            *peer2.lock().unwrap() = Some(from);
            s.send_to(&buf[..n], from).await.unwrap();
        }
    });
    Echo {
        addr,
        seen,
        peer,
        sock,
    }
}

/// A client socket of the proxy's unit tests and a count of the replies it got.
fn client(rt: &tokio::runtime::Runtime, proxy: SocketAddr) -> (Arc<UdpSocket>, Arc<AtomicUsize>) {
    let sock = Arc::new(rt.block_on(UdpSocket::bind("127.0.0.1:0")).unwrap());
    rt.block_on(sock.connect(proxy)).unwrap();
    let replies = Arc::new(AtomicUsize::new(0));
    let (s, r) = (sock.clone(), replies.clone());
    rt.spawn(async move {
        let mut buf = [0u8; 64];
        while s.recv(&mut buf).await.is_ok() {
            r.fetch_add(1, Ordering::Relaxed);
        }
    });
    (sock, replies)
}

/// The tests of this file run one at a time. The proxy's own tests count every datagram, and
/// the kernel drops UDP datagrams when a socket's buffer fills: while the two gateways of the
/// long test below kept both cores busy, a proxy test's socket overflowed once (its echoes
/// never all arrived).
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn test_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn proxy_drops_duplicates_and_reorders_at_the_configured_rates() {
    let _serial = one_at_a_time();
    let rt = test_runtime();
    let server = echo(&rt);
    let proxy = FaultProxy::start(server.addr, Faults::ISSUE, 0x0dd_ba11);
    let (sock, replies) = client(&rt, proxy.addr());
    const N: u32 = 5_000;
    for i in 0..N {
        rt.block_on(sock.send(&i.to_be_bytes())).unwrap();
        if i % 50 == 49 {
            // Pace the stream so that no socket buffer overflows: every loss is the proxy's.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    settle("the up direction", || {
        let up = proxy.up();
        up.received == u64::from(N) && up.sent == up.received - up.dropped + up.duplicated
    });
    let up = proxy.up();
    settle("the echoes", || {
        let down = proxy.down();
        down.received == up.sent && down.sent == down.received - down.dropped + down.duplicated
    });
    let down = proxy.down();
    settle("the replies", || {
        replies.load(Ordering::Relaxed) as u64 == down.sent
    });

    // Every datagram the proxy sent on arrived, and nothing else.
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len() as u64, up.sent);
    // The rates are near the configured ones (10 %, 2 %, 5 % of the copies).
    for t in [up, down] {
        let n = t.received as f64;
        let rate = |x: u64| x as f64 / n;
        assert!((0.08..0.12).contains(&rate(t.dropped)), "{t:?}");
        assert!((0.01..0.03).contains(&rate(t.duplicated)), "{t:?}");
        assert!((0.035..0.065).contains(&rate(t.held)), "{t:?}");
        assert_eq!(t.blackholed, 0);
    }
    // Duplicates and reordering are visible at the receiver.
    let distinct: BTreeSet<u32> = seen.iter().copied().collect();
    assert_eq!(seen.len() - distinct.len(), up.duplicated as usize);
    let late = seen.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(late > 0, "nothing arrived out of order");
    eprintln!("proxy up {up:?}, down {down:?}; {late} arrived after a later datagram");
}

#[test]
fn proxy_partition_drops_everything_both_ways_until_healed() {
    let _serial = one_at_a_time();
    let rt = test_runtime();
    let server = echo(&rt);
    let proxy = FaultProxy::start(server.addr, Faults::NONE, 7);
    let (sock, replies) = client(&rt, proxy.addr());
    rt.block_on(sock.send(&0u32.to_be_bytes())).unwrap();
    settle("the first echo", || replies.load(Ordering::Relaxed) == 1);

    proxy.partition(true);
    for i in 1..=100u32 {
        rt.block_on(sock.send(&i.to_be_bytes())).unwrap();
    }
    // The receiver talks to the client unprompted: dropped too.
    let upstream = server
        .peer
        .lock()
        .unwrap()
        .expect("the proxy's upstream socket");
    for i in 0..10u32 {
        rt.block_on(server.sock.send_to(&i.to_be_bytes(), upstream))
            .unwrap();
    }
    settle("the partition", || {
        proxy.up().blackholed == 100 && proxy.down().blackholed == 10
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(server.seen.lock().unwrap().len(), 1);
    assert_eq!(replies.load(Ordering::Relaxed), 1);

    proxy.partition(false);
    for i in 101..=200u32 {
        rt.block_on(sock.send(&i.to_be_bytes())).unwrap();
    }
    settle("the echoes after healing", || {
        replies.load(Ordering::Relaxed) == 101
    });
    assert_eq!(server.seen.lock().unwrap().len(), 101);
    let (up, down) = (proxy.up(), proxy.down());
    assert_eq!((up.received, up.sent, up.blackholed), (201, 101, 100));
    assert_eq!((down.received, down.sent, down.blackholed), (111, 101, 10));
}

#[test]
fn loss_reordering_duplication_and_a_partition_lose_and_duplicate_nothing() {
    let _serial = one_at_a_time();
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let total = env("TSUNAGI_FAULT_ENVELOPES", 10_000);
    let partition = Duration::from_secs(env("TSUNAGI_FAULT_PARTITION_SECS", 30) as u64);
    let mut f = Federation::new(
        "faults",
        &[BUNKYO, HOSPITAL],
        "[delivery]\nretry_initial_ms = 100\nretry_max_ms = 1000\nconnect_timeout_ms = 1000\nattempt_timeout_ms = 5000\nidle_timeout_ms = 2000\n",
    );
    let proxy = FaultProxy::start(f.address(HOSPITAL), Faults::ISSUE, 0x5eed_fa11);
    f.reach_via(BUNKYO, HOSPITAL, proxy.addr());
    f.start_all();
    let started = Instant::now();

    // Support-end notices go only to parties of the case: the hospital needs the consent first.
    let consent = f.record_consent("consent.json");
    let consent = consent
        .as_array()
        .and_then(|v| v.iter().find(|e| e["to"] == HOSPITAL))
        .expect("the consent goes to the hospital")["id"]
        .clone();
    f.wait_outbox(BUNKYO, 60, "consent to the hospital", |v| {
        v.iter()
            .any(|e| e["to"] == HOSPITAL && e["state"] == "delivered")
    });
    assert!(
        proxy.up().sent > 0 && proxy.down().sent > 0,
        "the consent went through the proxy"
    );

    let form = json!({
        "document_type": "support_end", "author": BUNKYO, "subject": "case-131059-2026-0007",
        "ended_on": "2027-04-30", "outcome": "completed", "note": "",
    });
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let sock = f.socket(BUNKYO);
    let submitter = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            for _ in 0..total {
                let request =
                    json!({"op": "send", "to": HOSPITAL, "purpose": "support_end", "form": form});
                let entry = rt
                    .block_on(tsunagi_gateway::control::call(&sock, &request))
                    .expect("a submission is acknowledged whatever the network does");
                acked
                    .lock()
                    .unwrap()
                    .push(entry["id"].as_str().unwrap().to_owned());
            }
        })
    };
    let support_ends = |f: &Federation| -> Vec<String> {
        f.inbox(HOSPITAL)
            .iter()
            .filter(|e| e["kind"] == "support_end")
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect()
    };

    // The partition, in the middle of the stream.
    while acked.lock().unwrap().len() < total / 2 {
        assert!(!submitter.is_finished(), "the submitter stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    proxy.partition(true);
    let cut = Instant::now();
    let blackholed_before = proxy.up().blackholed + proxy.down().blackholed;
    // Once what was in flight has landed, nothing more arrives until the partition heals.
    std::thread::sleep(Duration::from_secs(5).min(partition / 2));
    let during = support_ends(&f).len();
    std::thread::sleep(partition.saturating_sub(cut.elapsed()));
    let after = support_ends(&f).len();
    proxy.partition(false);
    let healed = Instant::now();
    assert_eq!(during, after, "envelopes crossed the partition");
    let blackholed = proxy.up().blackholed + proxy.down().blackholed - blackholed_before;
    assert!(blackholed > 0, "nobody tried to cross the partition");
    let backlog: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let backlog_left = backlog.len().saturating_sub(after);

    // Every envelope acknowledged by then arrives once the partition has healed.
    let deadline = healed + Duration::from_secs(600);
    let mut first = None;
    let drained = loop {
        let have: BTreeSet<String> = support_ends(&f).into_iter().collect();
        if first.is_none() && have.len() > after {
            first = Some(healed.elapsed());
        }
        if backlog.is_subset(&have) {
            break healed.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{} envelopes acknowledged before the partition healed never arrived",
            backlog.difference(&have).count()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    submitter.join().unwrap();
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert_eq!(acked.len(), total, "every acknowledged id is distinct");
    let notices = |v: &[serde_json::Value]| {
        v.iter()
            .filter(|e| e["kind"] == "support_end")
            .map(|e| e["state"].clone())
            .collect::<Vec<_>>()
    };
    let outbox = f.wait_outbox(BUNKYO, 600, "every notice delivered", |v| {
        notices(v).iter().all(|s| s == "delivered")
    });
    assert_eq!(
        notices(&outbox).len(),
        total,
        "every notice is in the outbox"
    );
    let duration = started.elapsed();

    // The hospital's inbox: each acknowledged id exactly once, the consent, and nothing else.
    let inbox = f.inbox(HOSPITAL);
    let ids: Vec<String> = support_ends(&f);
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "an envelope was stored twice");
    assert_eq!(
        unique, acked,
        "the inbox holds exactly the acknowledged envelopes"
    );
    let others: Vec<_> = inbox
        .iter()
        .filter(|e| e["kind"] != "support_end")
        .collect();
    assert!(
        others.len() == 1 && others[0]["id"] == consent,
        "the inbox holds the consent {consent} and nothing else: {others:?}"
    );

    let (up, down) = (proxy.up(), proxy.down());
    let sum = |g: fn(&Tally) -> u64| g(&up) + g(&down);
    eprintln!(
        "faults: {total} envelopes acknowledged, delivered exactly once (0 lost, 0 duplicated) in {:.1} s; \
         datagrams {} received by the proxy, {} dropped (loss), {} dropped in the {} s partition, \
         {} duplicated, {} reordered (held 5-50 ms); {} envelopes were waiting when the partition \
         healed, the first delivered {:.1} s and the last {:.1} s after healing",
        duration.as_secs_f64(),
        sum(|t| t.received),
        sum(|t| t.dropped),
        sum(|t| t.blackholed),
        partition.as_secs(),
        sum(|t| t.duplicated),
        sum(|t| t.held),
        backlog_left,
        first.unwrap_or(drained).as_secs_f64(),
        drained.as_secs_f64(),
    );
    eprintln!("faults: up {up:?}; down {down:?}");
}
