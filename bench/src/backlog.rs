//! The backlog-restart scenario: a sending gateway restarted with a large backlog for a peer
//! that was unreachable, then the peer returns.
//!
//! 1. A fresh pair (Bunkyo sends, the hospital receives) is built with the testkit. Both run in
//!    this process until Bunkyo's consent is delivered to the hospital (which makes the hospital
//!    a party of the case), then stop. Bunkyo's gateway is opened again **without** its dispatcher (as if the hospital could not
//!    be reached), records the consent and queues `n` `support_end` envelopes, 64 submissions at
//!    once; each is durable when `submit` returns. The gateway then shuts down.
//! 2. Bunkyo's gateway is started again as a separate `tsunagi gateway run` process (the `tsunagi`
//!    binary beside this one). **ready** is the time from spawning it until its control socket
//!    answers `status`. The hospital is still down for one more second, so the restarted gateway
//!    also meets the unreachable peer.
//! 3. The hospital's gateway is started. **drain** is the time from then until Bunkyo's
//!    `tsunagi_envelopes_delivered_total` (its `/metrics`, polled at most once a second as the
//!    drain goes on) counts every queued envelope.
//! 4. **peak RSS** is `VmHWM` of the restarted sender process, read before it is stopped: the
//!    peak over the restart and the whole drain. **lost**: queued envelopes that are not in the
//!    hospital's inbox or not `delivered` in Bunkyo's outbox. **duplicated**: hospital inbox
//!    entries beyond one per queued envelope (an id seen twice, or an envelope never queued).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use tsunagi_gateway::engine::{Content, Gateway};
use tsunagi_gateway::testkit::{self, RECEIVER, SENDER};
use tsunagi_protocol::{OrgId, Purpose};

/// Target: a restart with the backlog is ready within this many milliseconds.
pub const TARGET_READY_MS: f64 = 1000.0;
/// Target: peak RSS of the restarted sender, bytes.
pub const TARGET_RSS_BYTES: u64 = 64 * 1024 * 1024;
/// What makes a restart with a backlog slow, as measured (see the report's limits): the
/// gateway itself reads the outbox one entry at a time and keeps only due times.
pub const RESTART_COST: &str = "the store is large (sled keeps about 6.5 KB on disk per queued envelope, 650 MB for 100,000), and start-up opens it and reads every outbox entry through sled's page cache to schedule the ones still to send, so the time grows with the backlog";
/// What makes the drain's memory grow, as measured: the gateway bounds its own (at most 256
/// delivery tasks, timers in one schedule, listings streamed).
pub const DRAIN_MEMORY: &str = "with the store patched to write its log without sled's IO thread pool, the restarted sender was ready at about 46 MiB and the drain peaked at about 56 MiB on the benchmark machine. What the drain adds is the store's write path: sled's 512 KiB log buffers (a new one per log segment), its recovered page table and segment accounting (about 10 MiB for a 650 MB store) and pages read through the 8 MiB cache; the rest is the binary, thread stacks and allocator overhead. The gateway's own structures are bounded (at most 256 delivery tasks, retries as entries of one schedule, listings read one entry at a time)";
/// How long the whole drain may take before the scenario gives up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1800);

/// What the scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct BacklogRestart {
    /// Envelopes queued for the unreachable peer.
    pub envelopes: usize,
    /// How fast they were queued (submissions per second, 64 at once, peer down).
    pub queue_envelopes_per_s: f64,
    /// From spawning the restarted sender until its control socket answered, milliseconds.
    pub ready_ms: f64,
    /// `VmHWM` of the restarted sender when it was ready, bytes.
    pub ready_rss_bytes: u64,
    /// `VmHWM` of the restarted sender after the drain: its peak over restart and drain, bytes.
    pub peak_rss_bytes: u64,
    /// From starting the peer until every envelope was delivered, seconds.
    pub drain_seconds: f64,
    /// Envelopes delivered per second during the drain.
    pub drain_envelopes_per_s: f64,
    /// Queued envelopes missing from the receiver's inbox or not delivered in the outbox.
    pub lost: usize,
    /// Receiver inbox entries beyond one per queued envelope.
    pub duplicated: usize,
}

/// A child gateway process, SIGKILLed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `tsunagi` binary beside this executable (or beside its directory, for a test executable
/// in `target/<profile>/deps`).
pub fn tsunagi_bin() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let bin = exe.with_file_name("tsunagi");
    let up = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("tsunagi"));
    if bin.is_file() {
        Ok(bin)
    } else if let Some(up) = up.filter(|u| u.is_file()) {
        Ok(up)
    } else {
        Err(format!(
            "{} is missing: the backlog scenario runs the gateway as its own process; build it with `cargo build --bin tsunagi`",
            bin.display()
        ))
    }
}

fn spawn(bin: &Path, config: &Path, log: &Path) -> Result<Proc, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let err = log
        .try_clone()
        .map_err(|e| format!("cannot open the log: {e}"))?;
    Command::new(bin)
        .args(["gateway", "run", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map(Proc)
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))
}

fn vm_hwm(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Waits until the gateway behind `socket` answers `status`; the time it took.
fn wait_ready(
    rt: &tokio::runtime::Runtime,
    p: &mut Proc,
    socket: &Path,
    log: &Path,
) -> Result<Duration, String> {
    let t0 = Instant::now();
    loop {
        if rt
            .block_on(tsunagi_control::call(socket, &json!({"op": "status"})))
            .is_ok()
        {
            return Ok(t0.elapsed());
        }
        if let Ok(Some(status)) = p.0.try_wait() {
            return Err(format!(
                "the gateway exited with {status}; see {}",
                log.display()
            ));
        }
        if t0.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "the gateway was not ready within 120 s; see {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One counter from the Prometheus text at `addr/metrics`.
fn metric(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

fn free_tcp_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free TCP port on 127.0.0.1: {e}"))
}

/// Both gateways in this process: the consent is delivered to the hospital, which makes it a
/// party of the case (support-end notices go only to parties).
async fn introduce(
    tx_cfg: tsunagi_gateway::config::Config,
    rx_cfg: tsunagi_gateway::config::Config,
) -> Result<(), String> {
    let tx = Gateway::open(tx_cfg)?;
    let rx = Gateway::open(rx_cfg)?;
    for gw in [&tx, &rx] {
        let gw = gw.clone();
        tokio::spawn(async move { gw.run().await });
    }
    let queued = tx
        .record_consent(testkit::pair_consent()?)
        .await
        .map_err(|e| format!("recording the consent: {e}"))?;
    let to = queued
        .iter()
        .find(|e| e.to == *rx.org())
        .ok_or("the consent was not queued to the hospital")?;
    crate::wait_final(&tx, &to.id).await?;
    for gw in [&tx, &rx] {
        gw.shutdown()
            .await
            .map_err(|e| format!("stopping a gateway: {e}"))?;
    }
    Ok(())
}

/// Queues `n` envelopes with the sender's gateway in this process (no dispatcher: the peer
/// cannot be reached); returns their ids and the seconds it took.
async fn queue(
    cfg: tsunagi_gateway::config::Config,
    n: usize,
) -> Result<(Vec<String>, f64), String> {
    let gw = Gateway::open(cfg)?;
    let to: OrgId = RECEIVER.parse().map_err(|e| format!("{e}"))?;
    let form = Arc::new(testkit::support_end_form(1500));
    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(n);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        if tasks.len() >= 64 {
            if let Some(r) = tasks.join_next().await {
                ids.push(r.map_err(|e| format!("a queueing task failed: {e}"))??);
            }
        }
        let (gw, to, form) = (gw.clone(), to.clone(), Arc::clone(&form));
        tasks.spawn(async move {
            gw.submit(&to, Purpose::SupportEnd, Content::Form((*form).clone()))
                .await
                .map(|e| e.id)
                .map_err(|e| format!("queueing envelope {i}: {e}"))
        });
    }
    while let Some(r) = tasks.join_next().await {
        ids.push(r.map_err(|e| format!("a queueing task failed: {e}"))??);
    }
    let seconds = t0.elapsed().as_secs_f64();
    gw.shutdown()
        .await
        .map_err(|e| format!("stopping the sender: {e}"))?;
    Ok((ids, seconds))
}

/// A step run in this process: the ids queued and the seconds it took.
type Phase =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(Vec<String>, f64), String>>>>;

/// Runs the scenario with `n` envelopes under `root` (see the module docs).
pub fn run(root: &Path, n: usize) -> Result<BacklogRestart, String> {
    let bin = tsunagi_bin()?;
    let fed = testkit::pair(
        root,
        "tsunagi bench backlog CA",
        &format!("[delivery]\nper_peer_concurrency = {}\n", crate::IN_FLIGHT),
    )?;
    // The sender serves /metrics, to count deliveries during the drain.
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_tcp_port()?)
        .parse()
        .map_err(|e| format!("{e}"))?;
    let sender = fed.member(SENDER)?;
    let text = format!("metrics_listen = \"{metrics}\"\n{}", sender.config_text);
    std::fs::write(&sender.config_path, &text)
        .map_err(|e| format!("cannot write {}: {e}", sender.config_path.display()))?;
    let cfg =
        tsunagi_gateway::config::Config::parse(&text, &sender.config_path).map_err(|e| e.0)?;

    let in_process = |f: Phase| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let r = rt.block_on(f);
        rt.shutdown_timeout(Duration::from_secs(5));
        r
    };
    let rx_cfg = fed.config(RECEIVER)?;
    let first = cfg.clone();
    in_process(Box::pin(async move {
        introduce(first, rx_cfg).await.map(|()| (Vec::new(), 0.0))
    }))?;
    let (ids, queue_seconds) = in_process(Box::pin(queue(cfg, n)))?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let receiver = fed.member(RECEIVER)?;
    let (tx_log, rx_log) = (root.join("sender.log"), root.join("receiver.log"));
    let mut tx = spawn(&bin, &sender.config_path, &tx_log)?;
    let ready = wait_ready(&rt, &mut tx, &sender.data().join("control.sock"), &tx_log)?;
    let ready_rss = vm_hwm(tx.0.id());
    // The peer stays unreachable a little longer: the restarted sender meets it down.
    std::thread::sleep(Duration::from_secs(1));

    let t0 = Instant::now();
    let mut rx = spawn(&bin, &receiver.config_path, &rx_log)?;
    wait_ready(&rt, &mut rx, &receiver.data().join("control.sock"), &rx_log)?;
    let want = ids.len() as f64;
    loop {
        let delivered = metric(metrics, "tsunagi_envelopes_delivered_total").unwrap_or(0.0);
        if delivered >= want {
            break;
        }
        if t0.elapsed() > DRAIN_TIMEOUT {
            return Err(format!(
                "the backlog did not drain within {} s ({delivered} of {want} delivered); see {}",
                DRAIN_TIMEOUT.as_secs(),
                tx_log.display()
            ));
        }
        // A scrape still reads the inbox listing: poll rarely enough not to slow the drain (at
        // most once a second), often enough to time a short drain (a twentieth of the time so
        // far).
        std::thread::sleep(
            (t0.elapsed() / 20).clamp(Duration::from_millis(20), Duration::from_secs(1)),
        );
    }
    let drain = t0.elapsed().as_secs_f64();
    let peak_rss = vm_hwm(tx.0.id());

    let call = |socket: PathBuf, op: &str| {
        rt.block_on(tsunagi_control::call(&socket, &json!({ "op": op })))
            .map_err(|e| format!("{op}: {e}"))
    };
    let inbox = call(receiver.data().join("control.sock"), "inbox_list")?;
    let outbox = call(sender.data().join("control.sock"), "outbox_list")?;
    let queued: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for e in inbox.as_array().into_iter().flatten() {
        if e["kind"] == json!("support_end") {
            *seen.entry(e["id"].as_str().unwrap_or("")).or_default() += 1;
        }
    }
    let delivered: HashSet<&str> = outbox
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["state"] == json!("delivered"))
        .filter_map(|e| e["id"].as_str())
        .collect();
    let lost = queued
        .iter()
        .filter(|id| !seen.contains_key(*id) || !delivered.contains(*id))
        .count();
    let duplicated = seen
        .iter()
        .map(|(id, k)| if queued.contains(id) { k - 1 } else { *k })
        .sum();
    drop(tx);
    drop(rx);
    Ok(BacklogRestart {
        envelopes: ids.len(),
        queue_envelopes_per_s: ids.len() as f64 / queue_seconds.max(1e-9),
        ready_ms: ready.as_secs_f64() * 1000.0,
        ready_rss_bytes: ready_rss,
        peak_rss_bytes: peak_rss,
        drain_seconds: drain,
        drain_envelopes_per_s: ids.len() as f64 / drain.max(1e-9),
        lost,
        duplicated,
    })
}
