//! # tsunagi-bench
//!
//! The benchmark, kept out of the gateway's production code: the `tsunagi-bench` binary (which
//! `tsunagi bench` runs with the same arguments). Two gateways on loopback, and the figures that
//! say how close they come to what the machine allows, every baseline measured in the same run;
//! then the backlog-restart scenario ([`backlog`]).
//!
//! Speed and memory are never asserted in tests: this command measures them and reports ratios
//! to ceilings measured in the same run, so that the figures mean the same on any machine.
//!
//! # Setup
//! In a fresh temporary directory (or `--dir DIR`, which is kept): a federation CA, credentials
//! for Bunkyo `lg:131059` (the sender) and the hospital `mi:1310000017` (the receiver), the sample
//! directory signed with loopback addresses, a `gateway.toml` for each (with
//! `per_peer_concurrency = 64`, so that 64 envelopes can really be in flight to one peer), and both
//! gateways opened and run in one tokio runtime in this process. Bunkyo records the case-0007
//! consent (`consent.json`, its recipients narrowed to these two gateways so that no delivery to
//! an absent member runs during the measurement) and the bench waits until the consent envelope
//! is delivered to the hospital, which also opens the QUIC connection.
//!
//! # Workload
//! `support_end` forms authored by Bunkyo whose `note` is padded so that the signed document
//! bundle (the author's COSE_Sign1 plus every disclosed item) is about 2048 bytes; the report
//! gives the exact size measured on probe signatures with Bunkyo's key. Each is submitted with
//! [`Gateway::submit`] as [`Content::Form`]: the gateway signs it, runs the consent gate, seals
//! the envelope and commits it to the outbox. An envelope is **end-to-end durable** when the
//! sender's outbox entry is `delivered`: the receiver has committed it durably to its inbox and
//! signed a receipt, the sender has verified that receipt and applied the delivered state (made
//! durable by the sender's next group commit, off the envelope's critical path). Completion is
//! observed through [`Gateway::outcomes`], published then, so no polling is needed.
//! Twenty warm-up envelopes run (unmeasured) first.
//!
//! # Metrics and how each is measured
//! | metric | how |
//! |---|---|
//! | cores | [`std::thread::available_parallelism`] |
//! | Ed25519 sign/s, verify/s | ring, one thread, on a 2048-byte message, for half the baseline time each |
//! | fsync/s | append 4 KiB to a file in the sender's data dir and `sync_data` it, in a loop for the baseline time (1 s); a store flush is sled's flush plus one such `fdatasync` of sled's log |
//! | envelopes/s | phase (a): `--n1` envelopes one at a time; phase (b): `--n64` envelopes with 64 in flight (a semaphore); envelopes / wall time from the first submit to the last delivery |
//! | p50/p99 latency | per envelope, from the call to `submit` to the delivered outcome; nearest-rank percentiles |
//! | fsyncs per envelope | both gateways' [`Gateway::flush_count`] deltas over the phase / envelopes (one flush is one group-commit round) |
//! | CPU per envelope | the process's user + system time over the phase (`/proc/self/stat`) / envelopes; with how busy the cores were, and how much of them other processes used (`/proc/stat`), since a contended machine skews every figure |
//! | crypto ceiling | `cores / (signs / sign_rate + verifies / verify_rate)` with the operation counts below |
//! | fsync ceiling | `fsync_rate / fsyncs per envelope` |
//! | fsync after idle | mean and p99 of one 4 KiB append + `fdatasync` issued after the disk idled 1 ms, as commits are at 1 in flight (on the benchmark's virtual disk, several times the back-to-back cost) |
//! | peak RSS | `VmHWM` of `/proc/self/status`: the whole process, both gateways included |
//! | bytes on disk per byte of data | both stores' [`Gateway::size_on_disk`] after the run minus before the measured phases, / (envelopes × signed document size); also the receiver's alone, and the bytes the gateways wrote ([`Gateway::logical_bytes_written`]) to split it into what the gateway writes and what sled adds |
//!
//! Targets (with every envelope durable before it is acknowledged): at least 1.0 of the crypto
//! ceiling at 64 in flight (faster than signing and verifying every envelope one by one could
//! ever go: only batch seals get there), p99 at most 2 ms at 1 in flight, at most 2.5 bytes on
//! disk per byte of data at the receiver and 5 for both gateways together. A missed target is
//! not an error: the report's `limits` say what limits it, with the
//! figures of the run.
//!
//! # Signatures and verifications per envelope
//! Counted by reading the code paths of one `support_end` envelope whose case consent is already
//! recorded on both sides ([`CRYPTO_OPS`]). Every COSE verification
//! ([`Sign1::verify`](tsunagi_protocol::cose::Sign1::verify)) checks the signer's certificate
//! chain, and that chain check verifies the CA's Ed25519 signature on the leaf certificate unless
//! [`FederationTrust`](tsunagi_certs::FederationTrust) has already verified that certificate (it
//! caches verified certificates by fingerprint and still checks validity time and revocation on
//! every use). QUIC/TLS handshakes are not counted: the connection is opened once, before the
//! measurement.
//!
//! | where | what | signs | verifies |
//! |---|---|---|---|
//! | sender, `submit` | the author signs the document | 1 | 0 |
//! | sender, `queue` | the stored consent is read through the verified-consent cache (same bytes as verified when stored; the chain is re-checked from the certificate cache) | 0 | 0 |
//! | sender, `queue` | the gateway seals the envelope | 1 | 0 |
//! | sender, dispatch gate | the consent from the cache (for `support_end`: the party and police checks) | 0 | 0 |
//! | both sides | the peer's audit checkpoint on the envelope and on the receipt: verified only when its bytes differ from the witness kept (a gateway signs a new one at most once a second), so ≈ 0 per envelope under load | ≈0 | ≈0 |
//! | receiver, `Receiver::receive` | envelope signature (chain from the cache) | 0 | 1 |
//! | receiver, consent check | consent signature in the envelope (chain from the cache) | 0 | 1 |
//! | receiver, consent check | newest stored consent: from the verified-consent cache | 0 | 0 |
//! | receiver, document | author signature (chain from the cache) | 0 | 1 |
//! | receiver, `store_inbound` | stored consent compared: from the verified-consent cache | 0 | 0 |
//! | receiver | signs the receipt | 1 | 0 |
//! | sender, `Receipt::verify` | receipt signature (chain from the cache) | 0 | 1 |
//! | **total** | | **3** | **4** |
//!
//! The table defines the crypto ceiling and stays as it is. The run also counts the operations
//! as they are made ([`Phase::signatures_per_envelope`], [`Phase::verifications_per_envelope`]):
//! at 1 in flight 3 signatures and about 3.05 verifications, since the consent now travels by
//! digest and is not verified per envelope, and a submitted or received document is verified
//! once (not again where its facts are recorded); with 64 in flight the batch seals share
//! their signatures.
//!
//! Before the two caches the same path took 3 signatures and 14 verifications: seven COSE
//! verifications (envelope, consent in the envelope, document and receipt, and the stored consent
//! verified again at `queue`, in the receiver's consent check and in `store_inbound`), each also
//! verifying the CA's signature on the signer's certificate.

pub mod backlog;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, oneshot, Semaphore};
use tsunagi_certs::Credentials;
use tsunagi_protocol::cose::Signer;
use tsunagi_protocol::document::Document;
use tsunagi_protocol::entropy::SystemEntropy;
use tsunagi_protocol::envelope::{
    ConsentRef, Envelope, Receipt, ReceiptStatus, NO_REDISCLOSURE_NOTICE,
};
use tsunagi_protocol::signed::DocBundle;
use tsunagi_protocol::{OrgId, Purpose};

pub use backlog::BacklogRestart;
use tsunagi_gateway::engine::{parse_id, Content, Gateway, OutState};

use tsunagi_gateway::testkit::{support_end_form, CASE};
pub use tsunagi_gateway::testkit::{RECEIVER, SENDER};
/// Envelopes in flight in phase (b).
pub const IN_FLIGHT: usize = 64;
/// The signed document bundle size the workload is padded to.
pub const DOCUMENT_TARGET_BYTES: usize = 2048;
/// The message size of the Ed25519 baselines.
pub const CRYPTO_MESSAGE_BYTES: usize = 2048;
/// The write size of the fsync baseline.
pub const FSYNC_WRITE_BYTES: usize = 4096;
/// Unmeasured envelopes sent before the phases.
pub const WARMUP: usize = 20;

/// Target: throughput at 64 in flight over the crypto ceiling, at least.
pub const TARGET_CRYPTO_RATIO: f64 = 1.0;
/// Target: p99 latency at 1 in flight, in milliseconds, at most.
pub const TARGET_P99_MS: f64 = 2.0;
/// Target: bytes on disk per byte of data at the receiver, at most.
pub const TARGET_RECEIVER_DISK_RATIO: f64 = 2.5;
/// Target: bytes on disk per byte of data, both gateways together, at most.
pub const TARGET_DISK_RATIO: f64 = 5.0;

/// How long one envelope may take before the bench gives up.
const ENVELOPE_TIMEOUT: Duration = Duration::from_secs(120);

/// One step of the per-envelope signature and verification count (see the module docs).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CryptoOp {
    /// Which gateway and code path.
    pub at: &'static str,
    /// What is signed or verified.
    pub what: &'static str,
    /// Ed25519 signatures.
    pub signs: u32,
    /// Ed25519 verifications.
    pub verifies: u32,
}

/// The Ed25519 operations of one `support_end` envelope, counted on the code paths.
pub const CRYPTO_OPS: &[CryptoOp] = &[
    CryptoOp {
        at: "sender: submit",
        what: "author signs the document",
        signs: 1,
        verifies: 0,
    },
    CryptoOp {
        at: "sender: queue",
        what: "stored consent from the verified-consent cache (chain re-checked from the certificate cache)",
        signs: 0,
        verifies: 0,
    },
    CryptoOp {
        at: "sender: queue",
        what: "gateway seals the envelope",
        signs: 1,
        verifies: 0,
    },
    CryptoOp {
        at: "receiver: receive",
        what: "envelope signature (chain from the certificate cache)",
        signs: 0,
        verifies: 1,
    },
    CryptoOp {
        at: "receiver: consent check",
        what: "consent signature in the envelope (chain from the certificate cache)",
        signs: 0,
        verifies: 1,
    },
    CryptoOp {
        at: "receiver: consent check",
        what: "newest stored consent from the verified-consent cache",
        signs: 0,
        verifies: 0,
    },
    CryptoOp {
        at: "receiver: receive",
        what: "document author signature (chain from the certificate cache)",
        signs: 0,
        verifies: 1,
    },
    CryptoOp {
        at: "receiver: store_inbound",
        what: "stored consent version from the verified-consent cache",
        signs: 0,
        verifies: 0,
    },
    CryptoOp {
        at: "receiver: receipt",
        what: "receiver signs the receipt",
        signs: 1,
        verifies: 0,
    },
    CryptoOp {
        at: "sender: deliver",
        what: "receipt signature (chain from the certificate cache)",
        signs: 0,
        verifies: 1,
    },
];

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Envelopes sent one at a time (phase a).
    pub n1: usize,
    /// Envelopes sent with [`IN_FLIGHT`] in flight (phase b).
    pub n64: usize,
    /// Where to put the federation and the stores (kept); a temporary directory otherwise.
    pub dir: Option<PathBuf>,
    /// How long the fsync baseline runs; each Ed25519 baseline runs half of it.
    pub baseline: Duration,
    /// Envelopes of the backlog-restart scenario; 0 skips it.
    pub backlog: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            n1: 300,
            n64: 3000,
            dir: None,
            baseline: Duration::from_secs(1),
            backlog: 100_000,
        }
    }
}

/// Sizes of what travels and is stored.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// The signed document bundle (mean over the probes): the "data" of the disk ratio.
    pub document_bytes: f64,
    /// Smallest probe.
    pub document_bytes_min: usize,
    /// Largest probe.
    pub document_bytes_max: usize,
    /// The receiver's view of the consent bundle: no longer in the envelope (named by digest),
    /// fetched once per peer and version and stored once.
    pub consent_bundle_bytes: usize,
    /// A sealed envelope (the document fully disclosed, as to the hospital).
    pub envelope_bytes: usize,
    /// A signed receipt.
    pub receipt_bytes: usize,
    /// The certificate chain (signing certificate and CA certificate) in each COSE signature's
    /// `x5chain`; envelopes and receipts carry none (their batch heads and the document name
    /// theirs by fingerprint; each gateway keeps each chain once).
    pub certificate_chain_bytes: usize,
}

/// The Ed25519 baseline and the crypto ceiling.
#[derive(Debug, Clone, Serialize)]
pub struct Crypto {
    /// Message size signed and verified.
    pub message_bytes: usize,
    /// Signatures per second, one thread.
    pub sign_per_s: f64,
    /// Verifications per second, one thread.
    pub verify_per_s: f64,
    /// Signatures per envelope, both gateways.
    pub signs_per_envelope: u32,
    /// Verifications per envelope, both gateways.
    pub verifies_per_envelope: u32,
    /// One thread's time for one envelope's Ed25519 operations, microseconds.
    pub us_per_envelope: f64,
    /// Envelopes per second if the cores did nothing but these operations.
    pub ceiling_per_s: f64,
    /// The count, step by step.
    pub ops: Vec<CryptoOp>,
}

/// The fsync baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Fsync {
    /// Bytes appended before each `sync_data`.
    pub write_bytes: usize,
    /// `write` + `sync_data` per second.
    pub per_s: f64,
    /// Mean time of one, milliseconds.
    pub mean_ms: f64,
    /// Mean time of one `write` + `sync_data` issued after the disk idled for
    /// [`FSYNC_IDLE_GAP_MS`], milliseconds: what one commit costs at 1 in flight, where CPU work
    /// separates commits. On some virtual disks this is many times the back-to-back figure.
    pub after_idle_mean_ms: f64,
    /// The 99th percentile of those, milliseconds.
    pub after_idle_p99_ms: f64,
}

/// How long the disk idles before each write + `sync_data` of the after-idle fsync probe.
pub const FSYNC_IDLE_GAP_MS: u64 = 1;
/// How many write + `sync_data` the after-idle fsync probe times.
pub const FSYNC_IDLE_SAMPLES: usize = 200;

/// One measured phase.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// Envelopes in flight at once.
    pub in_flight: usize,
    /// Envelopes sent.
    pub envelopes: usize,
    /// Wall time, seconds.
    pub seconds: f64,
    /// End-to-end durable envelopes per second.
    pub envelopes_per_s: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Largest latency, milliseconds.
    pub max_ms: f64,
    /// Group-commit flushes of the sender.
    pub sender_fsyncs: u64,
    /// Group-commit flushes of the receiver.
    pub receiver_fsyncs: u64,
    /// Both gateways' flushes per envelope.
    pub fsyncs_per_envelope: f64,
    /// Mean time of one store flush during the phase (sled's log write + `fdatasync`),
    /// milliseconds.
    pub flush_ms: f64,
    /// Envelopes per second the disk allows at this many flushes per envelope.
    pub fsync_ceiling_per_s: f64,
    /// Throughput / fsync ceiling.
    pub ratio_to_fsync_ceiling: f64,
    /// Throughput / crypto ceiling.
    pub ratio_to_crypto_ceiling: f64,
    /// Process CPU time (user + system) per envelope, microseconds.
    pub cpu_us_per_envelope: f64,
    /// The part of it spent in the kernel (system time), microseconds.
    pub system_us_per_envelope: f64,
    /// Process CPU time / (wall time × cores).
    pub cpu_utilisation: f64,
    /// CPU time of other processes (and time stolen by the hypervisor) / (wall time × cores):
    /// how contended the machine was during the phase.
    pub other_cpu_utilisation: f64,
    /// Completions found by reading the outbox because the outcome stream lagged (their
    /// latency is an upper bound); normally 0.
    pub polled_completions: u64,
    /// Ed25519 signatures both gateways made per envelope, counted as they were made
    /// ([`tsunagi_protocol::cose::ed25519_operations`]); batch seals are shared by a batch.
    pub signatures_per_envelope: f64,
    /// Ed25519 signature verifications both gateways made per envelope, counted likewise.
    pub verifications_per_envelope: f64,
}

/// Disk use over the measured phases.
#[derive(Debug, Clone, Serialize)]
pub struct Disk {
    /// Envelopes × signed document size.
    pub data_bytes: f64,
    /// Growth of the sender's store on disk.
    pub sender_bytes: i64,
    /// Growth of the receiver's store on disk.
    pub receiver_bytes: i64,
    /// Both stores' growth / data.
    pub per_data_byte: f64,
    /// The receiver's growth / data.
    pub receiver_per_data_byte: f64,
    /// Keys and values both gateways wrote / data (overwritten and deleted values included).
    pub written_per_data_byte: f64,
    /// Keys and values the receiver wrote / data.
    pub receiver_written_per_data_byte: f64,
}

/// One target and whether the run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The metric.
    pub metric: String,
    /// Its value in this run.
    pub value: f64,
    /// The target, as text (`≥ 0.6`, `≤ 2 ms` …).
    pub target: String,
    /// Whether the value meets it.
    pub met: bool,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Cores available to the process.
    pub cores: usize,
    /// Sizes.
    pub sizes: Sizes,
    /// The Ed25519 baseline and ceiling.
    pub crypto: Crypto,
    /// The fsync baseline.
    pub fsync: Fsync,
    /// Phase (a): one envelope in flight.
    pub one_in_flight: Phase,
    /// Phase (b): [`IN_FLIGHT`] envelopes in flight.
    pub many_in_flight: Phase,
    /// Peak resident set of the process, bytes.
    pub peak_rss_bytes: u64,
    /// Disk use.
    pub disk: Disk,
    /// The targets.
    pub targets: Vec<Target>,
    /// For each missed target, what limits it, with figures.
    pub limits: Vec<String>,
    /// The backlog-restart scenario (absent with `--backlog 0`).
    pub backlog_restart: Option<BacklogRestart>,
    /// The directory kept (`--dir`), if any.
    pub dir: Option<PathBuf>,
}

/// The `p`-th percentile (0 < p ≤ 100) of `sorted` by the nearest-rank method; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Envelopes per second `cores` can sustain doing only `signs` signatures and `verifies`
/// verifications per envelope at the given single-thread rates.
pub fn crypto_ceiling(
    cores: usize,
    signs: u32,
    verifies: u32,
    sign_per_s: f64,
    verify_per_s: f64,
) -> f64 {
    let per_envelope = f64::from(signs) / sign_per_s + f64::from(verifies) / verify_per_s;
    if per_envelope <= 0.0 {
        return f64::INFINITY;
    }
    cores as f64 / per_envelope
}

/// Envelopes per second the disk allows at `fsyncs_per_envelope` flushes each.
pub fn fsync_ceiling(fsync_per_s: f64, fsyncs_per_envelope: f64) -> f64 {
    if fsyncs_per_envelope <= 0.0 {
        return f64::INFINITY;
    }
    fsync_per_s / fsyncs_per_envelope
}

/// Signatures and verifications per envelope from [`CRYPTO_OPS`].
pub fn crypto_counts() -> (u32, u32) {
    CRYPTO_OPS
        .iter()
        .fold((0, 0), |(s, v), op| (s + op.signs, v + op.verifies))
}

// ---------------------------------------------------------------------------------------------
// Baselines

/// Ed25519 signatures and verifications per second with ring on one thread, each measured for
/// `each` on a [`CRYPTO_MESSAGE_BYTES`] message.
pub fn ed25519_rates(each: Duration) -> Result<(f64, f64), String> {
    use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| format!("ed25519 key: {e}"))?;
    let key =
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| format!("ed25519 key: {e}"))?;
    let message: Vec<u8> = (0..CRYPTO_MESSAGE_BYTES).map(|i| (i % 251) as u8).collect();
    let sign_rate = rate(each, || {
        std::hint::black_box(key.sign(std::hint::black_box(&message)));
    });
    let signature = key.sign(&message);
    let public = UnparsedPublicKey::new(&ED25519, key.public_key().as_ref().to_vec());
    let mut ok = true;
    let verify_rate = rate(each, || {
        ok &= public
            .verify(std::hint::black_box(&message), signature.as_ref())
            .is_ok();
    });
    if !ok {
        return Err("the Ed25519 baseline's own signature did not verify".into());
    }
    Ok((sign_rate, verify_rate))
}

/// Calls per second of `f`, run in batches until `time` has passed.
fn rate(time: Duration, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        for _ in 0..16 {
            f();
        }
        n += 16;
        let t = start.elapsed();
        if t >= time {
            return n as f64 / t.as_secs_f64();
        }
    }
}

/// `write` of [`FSYNC_WRITE_BYTES`] appended to a file in `dir` + `sync_data`, per second, for
/// `time`. The file is removed afterwards.
pub fn fsync_rate(dir: &Path, time: Duration) -> Result<Fsync, String> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let err = |e: std::io::Error| format!("fsync baseline in {}: {e}", path.display());
    let mut f = std::fs::File::create(&path).map_err(err)?;
    let block = vec![0x5au8; FSYNC_WRITE_BYTES];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < time || n < 3 {
        f.write_all(&block).map_err(err)?;
        f.sync_data().map_err(err)?;
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut after_idle = Vec::with_capacity(FSYNC_IDLE_SAMPLES);
    for _ in 0..FSYNC_IDLE_SAMPLES {
        std::thread::sleep(Duration::from_millis(FSYNC_IDLE_GAP_MS));
        let one = Instant::now();
        f.write_all(&block).map_err(err)?;
        f.sync_data().map_err(err)?;
        after_idle.push(one.elapsed().as_secs_f64() * 1000.0);
    }
    drop(f);
    std::fs::remove_file(&path).map_err(err)?;
    Ok(Fsync {
        write_bytes: FSYNC_WRITE_BYTES,
        per_s: n as f64 / secs,
        mean_ms: secs * 1000.0 / n as f64,
        after_idle_mean_ms: after_idle.iter().sum::<f64>() / after_idle.len() as f64,
        after_idle_p99_ms: {
            after_idle.sort_by(f64::total_cmp);
            percentile(&after_idle, 99.0)
        },
    })
}

/// The process's (user, system) CPU time, seconds (`/proc/self/stat`, in USER_HZ = 100 ticks).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After the command name: state is field 3, utime field 14, stime field 15.
    let tick = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (tick(14) as f64 / 100.0, tick(15) as f64 / 100.0)
}

/// CPU time all processes used so far (user, nice, system, irq, softirq, steal), seconds
/// (`/proc/stat`).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|t| t.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let at = |i: usize| ticks.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    (at(0) + at(1) + at(2) + at(5) + at(6) + at(7)) as f64 / 100.0
}

/// Peak resident set size (`VmHWM`), bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

// ---------------------------------------------------------------------------------------------
// Setup

fn signer(creds: &Path) -> Result<Signer, String> {
    let c = Credentials::load(creds).map_err(|e| e.to_string())?;
    Signer::from_pkcs8(c.signing_key.secret_pkcs8_der(), c.signing_chain.clone())
        .map_err(|e| e.to_string())
}

fn sign(form: &Value, signer: &Signer) -> Result<DocBundle, String> {
    let doc = Document::from_value(form.clone()).map_err(|e| format!("bench form: {e}"))?;
    DocBundle::sign(
        &doc,
        signer,
        tsunagi_gateway::files::now(),
        &mut SystemEntropy::new(),
    )
    .map_err(|e| e.to_string())
}

/// The form padded to [`DOCUMENT_TARGET_BYTES`] and the sizes of what travels, from probe
/// signatures with the gateways' own keys.
fn workload(sender: &Signer, receiver: &Signer) -> Result<(Value, Sizes), String> {
    let size = |note: usize| -> Result<usize, String> {
        Ok(sign(&support_end_form(note), sender)?.to_bytes().len())
    };
    let mut note = 0usize;
    for _ in 0..8 {
        let s = size(note)?;
        if s == DOCUMENT_TARGET_BYTES {
            break;
        }
        note = (note as i64 + DOCUMENT_TARGET_BYTES as i64 - s as i64).max(0) as usize;
    }
    let form = support_end_form(note);
    let probes: Vec<usize> = (0..16)
        .map(|_| Ok(sign(&form, sender)?.to_bytes().len()))
        .collect::<Result<_, String>>()?;
    let bundle = sign(&form, sender)?;
    let consent_doc = Document::from_value(tsunagi_gateway::testkit::pair_consent()?)
        .map_err(|e| format!("consent fixture: {e}"))?;
    let Document::Consent(record) = &consent_doc else {
        return Err("the consent fixture is not a consent".into());
    };
    let consent = DocBundle::sign(
        &consent_doc,
        sender,
        tsunagi_gateway::files::now(),
        &mut SystemEntropy::new(),
    )
    .map_err(|e| e.to_string())?;
    // What is sent: the receiver's view of the consent (see `profile::consent_view`).
    let receiver_org: OrgId = RECEIVER.parse().map_err(|e| format!("{e}"))?;
    let view = tsunagi_protocol::profile::consent_view(
        record,
        &receiver_org,
        tsunagi_protocol::Role::Hospital,
    );
    let consent = consent.redact(|e| view.iter().any(|v| v == e));
    let now = tsunagi_gateway::files::now();
    let envelope = Envelope {
        msg_id: [7; 16],
        iat: now,
        exp: now.plus(86_400),
        sender: SENDER.parse::<OrgId>().map_err(|e| e.to_string())?,
        aud: RECEIVER.parse::<OrgId>().map_err(|e| e.to_string())?,
        kind: tsunagi_protocol::DocType::SupportEnd,
        purpose: Purpose::SupportEnd,
        case: CASE
            .parse::<tsunagi_protocol::CaseId>()
            .map_err(|e| e.to_string())?,
        consent_ref: ConsentRef::to(record, &consent),
        doc: bundle.doc.clone(),
        disclosures: bundle.items.clone(),
        in_reply_to: None,
        notice: NO_REDISCLOSURE_NOTICE.into(),
        checkpoint: None,
    };
    // As the gateway sends it: the document names its author's chain by fingerprint, and so
    // does the batch head the gateway's.
    let mut envelope = envelope;
    envelope.strip_document_chain();
    let envelope = envelope.body();
    // As the gateway seals it: the batch head names the signer's chain by fingerprint.
    let envelope = tsunagi_protocol::batch::seal_by_kid(
        sender,
        tsunagi_protocol::cose::TYP_ENVELOPE,
        &[envelope],
    )
    .pop()
    .unwrap_or_default();
    let receipt = Receipt {
        msg_id: Some([7; 16]),
        envelope_digest: [0; 32],
        receiver: RECEIVER.parse::<OrgId>().map_err(|e| e.to_string())?,
        time: now,
        status: ReceiptStatus::Accepted,
        reason: None,
        checkpoint: None,
    }
    .body();
    // As the gateway seals it: the head names the receiver's chain by fingerprint.
    let receipt = tsunagi_protocol::batch::seal_by_kid(
        receiver,
        tsunagi_protocol::cose::TYP_RECEIPT,
        &[receipt],
    )
    .pop()
    .unwrap_or_default();
    Ok((
        form,
        Sizes {
            document_bytes: probes.iter().sum::<usize>() as f64 / probes.len() as f64,
            document_bytes_min: probes.iter().copied().min().unwrap_or(0),
            document_bytes_max: probes.iter().copied().max().unwrap_or(0),
            consent_bundle_bytes: consent.to_bytes().len(),
            envelope_bytes: envelope.len(),
            receipt_bytes: receipt.len(),
            certificate_chain_bytes: sender.x5chain().iter().map(Vec::len).sum(),
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// Completion tracking

enum Slot {
    Done(Instant, OutState),
    Waiting(oneshot::Sender<(Instant, OutState)>),
}

/// Matches delivered outcomes with the envelopes waiting for them, whichever comes first.
#[derive(Default)]
struct Tracker {
    slots: Mutex<HashMap<[u8; 16], Slot>>,
    polled: AtomicU64,
}

impl Tracker {
    fn complete(&self, id: [u8; 16], at: Instant, state: OutState) {
        let mut slots = self.slots.lock().expect("tracker");
        match slots.remove(&id) {
            Some(Slot::Waiting(tx)) => {
                let _ = tx.send((at, state));
            }
            _ => {
                slots.insert(id, Slot::Done(at, state));
            }
        }
    }

    /// Waits for `id`'s final state; reads the outbox if the outcome does not come (a lagging
    /// subscription).
    async fn wait(&self, gw: &Gateway, id: [u8; 16]) -> Result<(Instant, OutState), String> {
        let mut rx = {
            let mut slots = self.slots.lock().expect("tracker");
            match slots.remove(&id) {
                Some(Slot::Done(at, state)) => return Ok((at, state)),
                _ => {
                    let (tx, rx) = oneshot::channel();
                    slots.insert(id, Slot::Waiting(tx));
                    rx
                }
            }
        };
        let deadline = Instant::now() + ENVELOPE_TIMEOUT;
        loop {
            match tokio::time::timeout(Duration::from_secs(1), &mut rx).await {
                Ok(Ok(done)) => return Ok(done),
                Ok(Err(_)) => return Err("the completion tracker stopped".into()),
                Err(_) => {
                    let entry = gw.outbox_entry(&id).map_err(|e| e.to_string())?;
                    if let Some(e) = entry.filter(|e| e.state.is_final()) {
                        self.polled.fetch_add(1, Ordering::Relaxed);
                        return Ok((Instant::now(), e.state));
                    }
                    if Instant::now() > deadline {
                        return Err(format!(
                            "envelope {} was not delivered within {} s (state {:?})",
                            tsunagi_protocol::hex::encode(&id),
                            ENVELOPE_TIMEOUT.as_secs(),
                            gw.outbox_entry(&id).ok().flatten().map(|e| e.state)
                        ));
                    }
                }
            }
        }
    }
}

struct Ctx {
    tx: Gateway,
    rx: Gateway,
    to: OrgId,
    form: Value,
    tracker: Tracker,
}

/// Submits `n` envelopes with at most `in_flight` at once; returns their latencies (seconds).
async fn send(ctx: &Arc<Ctx>, n: usize, in_flight: usize) -> Result<Vec<f64>, String> {
    let slots = Arc::new(Semaphore::new(in_flight.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut latencies = Vec::with_capacity(n);
    let mut collect = |r: Result<Result<f64, String>, tokio::task::JoinError>| {
        r.map_err(|e| format!("a bench task failed: {e}"))?
            .map(|l| latencies.push(l))
    };
    for _ in 0..n {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        while let Some(r) = tasks.try_join_next() {
            collect(r)?;
        }
        let ctx = Arc::clone(ctx);
        tasks.spawn(async move {
            let _permit = permit;
            let form = ctx.form.clone();
            let t0 = Instant::now();
            let entry = ctx
                .tx
                .submit(&ctx.to, Purpose::SupportEnd, Content::Form(form))
                .await
                .map_err(|e| format!("submit: {e}"))?;
            let id = parse_id(&entry.id).ok_or("submit returned a bad id")?;
            let (at, state) = ctx.tracker.wait(&ctx.tx, id).await?;
            if state != OutState::Delivered {
                let e = ctx.tx.outbox_entry(&id).ok().flatten();
                return Err(format!(
                    "envelope {} ended {state:?}: {:?}",
                    entry.id,
                    e.and_then(|e| e.last_error)
                ));
            }
            Ok(at.saturating_duration_since(t0).as_secs_f64())
        });
    }
    while let Some(r) = tasks.join_next().await {
        collect(r)?;
    }
    Ok(latencies)
}

async fn phase(ctx: &Arc<Ctx>, n: usize, in_flight: usize) -> Result<PhaseRaw, String> {
    let flushes = (ctx.tx.flush_count(), ctx.rx.flush_count());
    let flush_time = ctx.tx.flush_time() + ctx.rx.flush_time();
    let polled = ctx.tracker.polled.load(Ordering::Relaxed);
    let ops = tsunagi_protocol::cose::ed25519_operations();
    let cpu0 = cpu_seconds();
    let busy = machine_busy_seconds();
    let start = Instant::now();
    let mut latencies = send(ctx, n, in_flight).await?;
    let seconds = start.elapsed().as_secs_f64();
    let ops1 = tsunagi_protocol::cose::ed25519_operations();
    let cpu1 = cpu_seconds();
    let system = cpu1.1 - cpu0.1;
    let cpu = cpu1.0 - cpu0.0 + system;
    let others = (machine_busy_seconds() - busy - cpu).max(0.0);
    latencies.sort_by(f64::total_cmp);
    Ok(PhaseRaw {
        in_flight,
        latencies,
        seconds,
        cpu,
        system,
        others,
        flush_time: (ctx.tx.flush_time() + ctx.rx.flush_time())
            .saturating_sub(flush_time)
            .as_secs_f64(),
        sender_fsyncs: ctx.tx.flush_count() - flushes.0,
        receiver_fsyncs: ctx.rx.flush_count() - flushes.1,
        polled: ctx.tracker.polled.load(Ordering::Relaxed) - polled,
        signatures: ops1.signatures - ops.signatures,
        verifications: ops1.verifications - ops.verifications,
    })
}

struct PhaseRaw {
    in_flight: usize,
    latencies: Vec<f64>,
    seconds: f64,
    cpu: f64,
    system: f64,
    others: f64,
    flush_time: f64,
    sender_fsyncs: u64,
    receiver_fsyncs: u64,
    polled: u64,
    signatures: u64,
    verifications: u64,
}

impl PhaseRaw {
    fn report(&self, cores: usize, crypto_ceiling: f64, fsync_per_s: f64) -> Phase {
        let n = self.latencies.len().max(1) as f64;
        let per_s = self.latencies.len() as f64 / self.seconds.max(1e-9);
        let fsyncs = (self.sender_fsyncs + self.receiver_fsyncs) as f64 / n;
        let ceiling = fsync_ceiling(fsync_per_s, fsyncs);
        Phase {
            in_flight: self.in_flight,
            envelopes: self.latencies.len(),
            seconds: self.seconds,
            envelopes_per_s: per_s,
            p50_ms: percentile(&self.latencies, 50.0) * 1000.0,
            p99_ms: percentile(&self.latencies, 99.0) * 1000.0,
            max_ms: self.latencies.last().copied().unwrap_or(0.0) * 1000.0,
            sender_fsyncs: self.sender_fsyncs,
            receiver_fsyncs: self.receiver_fsyncs,
            fsyncs_per_envelope: fsyncs,
            flush_ms: self.flush_time * 1000.0
                / ((self.sender_fsyncs + self.receiver_fsyncs).max(1) as f64),
            fsync_ceiling_per_s: ceiling,
            ratio_to_fsync_ceiling: per_s / ceiling,
            ratio_to_crypto_ceiling: per_s / crypto_ceiling,
            cpu_us_per_envelope: self.cpu / n * 1e6,
            system_us_per_envelope: self.system / n * 1e6,
            cpu_utilisation: self.cpu / (self.seconds.max(1e-9) * cores as f64),
            other_cpu_utilisation: self.others / (self.seconds.max(1e-9) * cores as f64),
            polled_completions: self.polled,
            signatures_per_envelope: self.signatures as f64 / n,
            verifications_per_envelope: self.verifications as f64 / n,
        }
    }
}

/// Waits until `id` is final in `gw`'s outbox (polling; used once, for the consent).
async fn wait_final(gw: &Gateway, id: &str) -> Result<OutState, String> {
    let id = parse_id(id).ok_or("bad id")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(e) = gw.outbox_entry(&id).map_err(|e| e.to_string())? {
            if e.state.is_final() {
                return Ok(e.state);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the consent envelope to {RECEIVER} was not delivered within 30 s: {:?} ({})",
                    e.state,
                    e.last_error.unwrap_or_default()
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Running

/// Runs the whole benchmark (see the module docs) and returns its report.
pub fn run(opts: &Options) -> Result<Report, String> {
    let (root, keep) = match &opts.dir {
        Some(d) => {
            if d.exists()
                && std::fs::read_dir(d)
                    .map_err(|e| format!("cannot read {}: {e}", d.display()))?
                    .next()
                    .is_some()
            {
                return Err(format!(
                    "{} is not empty; give a new or empty directory to --dir",
                    d.display()
                ));
            }
            (d.clone(), true)
        }
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let d =
                std::env::temp_dir().join(format!("tsunagi-bench-{}-{nanos}", std::process::id()));
            (d, false)
        }
    };
    tsunagi_gateway::files::create_private_dir(&root).map_err(|e| e.0)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let result = rt.block_on(run_in(opts, &root));
    rt.shutdown_timeout(Duration::from_secs(5));
    let result = result.and_then(|mut report| {
        if opts.backlog > 0 {
            report.backlog_restart = Some(backlog::run(&root.join("backlog"), opts.backlog)?);
            report.targets = targets(&report);
            report.limits = limits(&report);
        }
        Ok(report)
    });
    if !keep {
        let _ = std::fs::remove_dir_all(&root);
    }
    let mut report = result?;
    report.dir = keep.then_some(root);
    Ok(report)
}

async fn run_in(opts: &Options, root: &Path) -> Result<Report, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fed = tsunagi_gateway::testkit::pair(
        root,
        "tsunagi bench CA",
        &format!("[delivery]\nper_peer_concurrency = {IN_FLIGHT}\n"),
    )?;
    let (tx_cfg, rx_cfg) = (fed.config(SENDER)?, fed.config(RECEIVER)?);
    let (form, sizes) = workload(&signer(&tx_cfg.credentials)?, &signer(&rx_cfg.credentials)?)?;
    let tx = Gateway::open(tx_cfg)?;
    let rx = Gateway::open(rx_cfg)?;
    for gw in [&tx, &rx] {
        let gw = gw.clone();
        tokio::spawn(async move { gw.run().await });
    }
    let ctx = Arc::new(Ctx {
        to: rx.org().clone(),
        tx,
        rx,
        form,
        tracker: Tracker::default(),
    });
    let mut outcomes = ctx.tx.outcomes();
    let collector = {
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            loop {
                match outcomes.recv().await {
                    Ok(o) => ctx.tracker.complete(o.id, Instant::now(), o.state),
                    // Waiters read the outbox for what was missed.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    };
    let result = measure(opts, &ctx, cores, sizes).await;
    collector.abort();
    result
}

async fn measure(
    opts: &Options,
    ctx: &Arc<Ctx>,
    cores: usize,
    sizes: Sizes,
) -> Result<Report, String> {
    // The consent, delivered to the hospital (this also opens the QUIC connection).
    let queued = ctx
        .tx
        .record_consent(tsunagi_gateway::testkit::pair_consent()?)
        .await
        .map_err(|e| format!("recording the consent: {e}"))?;
    let to_receiver = queued
        .iter()
        .find(|e| e.to == ctx.to)
        .ok_or("the consent was not queued to the hospital")?;
    let state = wait_final(&ctx.tx, &to_receiver.id).await?;
    if state != OutState::Delivered {
        return Err(format!("the consent envelope ended {state:?}"));
    }
    send(ctx, WARMUP, 1).await?;

    // Baselines, on an idle machine.
    let (sign_per_s, verify_per_s) = ed25519_rates(opts.baseline / 2)?;
    let fsync = fsync_rate(&ctx.tx.config().data_dir, opts.baseline)?;
    let (signs, verifies) = crypto_counts();
    let crypto_us = (f64::from(signs) / sign_per_s + f64::from(verifies) / verify_per_s) * 1e6;
    let ceiling = crypto_ceiling(cores, signs, verifies, sign_per_s, verify_per_s);

    let disk0 = (ctx.tx.size_on_disk(), ctx.rx.size_on_disk());
    let written0 = (
        ctx.tx.logical_bytes_written(),
        ctx.rx.logical_bytes_written(),
    );
    let one = phase(ctx, opts.n1, 1).await?;
    let many = phase(ctx, opts.n64, IN_FLIGHT).await?;
    let disk1 = (ctx.tx.size_on_disk(), ctx.rx.size_on_disk());
    let written1 = (
        ctx.tx.logical_bytes_written(),
        ctx.rx.logical_bytes_written(),
    );

    let envelopes = (opts.n1 + opts.n64) as f64;
    let data = (envelopes * sizes.document_bytes).max(1.0);
    let sender_bytes = disk1.0 as i64 - disk0.0 as i64;
    let receiver_bytes = disk1.1 as i64 - disk0.1 as i64;
    let disk = Disk {
        data_bytes: data,
        sender_bytes,
        receiver_bytes,
        per_data_byte: (sender_bytes + receiver_bytes) as f64 / data,
        receiver_per_data_byte: receiver_bytes as f64 / data,
        written_per_data_byte: ((written1.0 - written0.0) + (written1.1 - written0.1)) as f64
            / data,
        receiver_written_per_data_byte: (written1.1 - written0.1) as f64 / data,
    };
    let one = one.report(cores, ceiling, fsync.per_s);
    let many = many.report(cores, ceiling, fsync.per_s);
    let crypto = Crypto {
        message_bytes: CRYPTO_MESSAGE_BYTES,
        sign_per_s,
        verify_per_s,
        signs_per_envelope: signs,
        verifies_per_envelope: verifies,
        us_per_envelope: crypto_us,
        ceiling_per_s: ceiling,
        ops: CRYPTO_OPS.to_vec(),
    };
    let mut report = Report {
        cores,
        sizes,
        crypto,
        fsync,
        one_in_flight: one,
        many_in_flight: many,
        peak_rss_bytes: peak_rss(),
        disk,
        targets: Vec::new(),
        limits: Vec::new(),
        backlog_restart: None,
        dir: None,
    };
    report.targets = targets(&report);
    report.limits = limits(&report);
    Ok(report)
}

fn targets(r: &Report) -> Vec<Target> {
    let mut out = vec![
        Target {
            metric: format!("throughput / crypto ceiling, {IN_FLIGHT} in flight"),
            value: r.many_in_flight.ratio_to_crypto_ceiling,
            target: format!("≥ {TARGET_CRYPTO_RATIO}"),
            met: r.many_in_flight.ratio_to_crypto_ceiling >= TARGET_CRYPTO_RATIO,
        },
        Target {
            metric: "p99 latency, 1 in flight (ms)".into(),
            value: r.one_in_flight.p99_ms,
            target: format!("≤ {TARGET_P99_MS} ms"),
            met: r.one_in_flight.p99_ms <= TARGET_P99_MS,
        },
        Target {
            metric: "bytes on disk per byte of data at the receiver".into(),
            value: r.disk.receiver_per_data_byte,
            target: format!("≤ {TARGET_RECEIVER_DISK_RATIO}"),
            met: r.disk.receiver_per_data_byte <= TARGET_RECEIVER_DISK_RATIO,
        },
        Target {
            metric: "bytes on disk per byte of data".into(),
            value: r.disk.per_data_byte,
            target: format!("≤ {TARGET_DISK_RATIO}"),
            met: r.disk.per_data_byte <= TARGET_DISK_RATIO,
        },
    ];
    if let Some(b) = &r.backlog_restart {
        out.push(Target {
            metric: format!("backlog restart: ready with {} queued (ms)", b.envelopes),
            value: b.ready_ms,
            target: format!("≤ {} ms", backlog::TARGET_READY_MS),
            met: b.ready_ms <= backlog::TARGET_READY_MS,
        });
        out.push(Target {
            metric: "backlog restart: peak RSS of the sender (MiB)".into(),
            value: b.peak_rss_bytes as f64 / (1024.0 * 1024.0),
            target: format!("≤ {} MiB", backlog::TARGET_RSS_BYTES / (1024 * 1024)),
            met: b.peak_rss_bytes <= backlog::TARGET_RSS_BYTES,
        });
        out.push(Target {
            metric: "backlog restart: lost + duplicated".into(),
            value: (b.lost + b.duplicated) as f64,
            target: "0".into(),
            met: b.lost + b.duplicated == 0,
        });
    }
    out
}

/// The Ed25519 work phase `p` did per envelope, µs of one core: its counted operations at the
/// rates measured in this run.
fn counted_ed25519_us(p: &Phase, c: &Crypto) -> f64 {
    (p.signatures_per_envelope / c.sign_per_s + p.verifications_per_envelope / c.verify_per_s) * 1e6
}

/// For each missed target, what limits it, from the run's own figures.
fn limits(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let m = &r.many_in_flight;
    let o = &r.one_in_flight;
    if m.ratio_to_crypto_ceiling < TARGET_CRYPTO_RATIO {
        // The Ed25519 work actually done per envelope (batch seals share signatures), from the
        // counted operations and the rates measured in this run.
        let ed25519_us = counted_ed25519_us(m, &r.crypto);
        let crypto_share = ed25519_us / m.cpu_us_per_envelope.max(1e-9);
        // CPU per envelope at the target, on saturated cores: the unbatched crypto / ratio; what
        // is left of it once the Ed25519 work done is paid.
        let budget = (r.crypto.us_per_envelope / TARGET_CRYPTO_RATIO - ed25519_us).max(0.0);
        let mut s = format!(
            "crypto ceiling: {:.0} envelopes/s at {IN_FLIGHT} in flight is {:.2} of the {:.0}/s that {} cores allow for {} signatures and {} verifications per envelope ({:.0} µs of one core). The process spent {:.0} µs of CPU per envelope with the cores {:.0} % busy. Batch seals cut the Ed25519 work to {:.2} signatures and {:.2} verifications per envelope (counted), {:.0} µs, {:.0} % of the CPU an envelope costs. {:.0} µs of it is kernel time (thread wake-ups between the tokio workers, tokio's blocking pool that runs store applies and the store's flush thread; the log writes and fdatasyncs; UDP), {:.0} µs the rest of user space (sled, QUIC, CBOR, JSON, AES-GCM at rest, allocation). Reaching {TARGET_CRYPTO_RATIO:.1} of the ceiling on saturated cores leaves at most {:.0} µs per envelope for everything besides that Ed25519 work; the kernel time alone is {:.1}× that.",
            m.envelopes_per_s,
            m.ratio_to_crypto_ceiling,
            r.crypto.ceiling_per_s,
            r.cores,
            r.crypto.signs_per_envelope,
            r.crypto.verifies_per_envelope,
            r.crypto.us_per_envelope,
            m.cpu_us_per_envelope,
            m.cpu_utilisation * 100.0,
            m.signatures_per_envelope,
            m.verifications_per_envelope,
            ed25519_us,
            crypto_share * 100.0,
            m.system_us_per_envelope,
            (m.cpu_us_per_envelope - m.system_us_per_envelope - ed25519_us).max(0.0),
            budget,
            m.system_us_per_envelope / budget.max(1e-9),
        );
        if m.other_cpu_utilisation > 0.1 {
            s.push_str(&format!(
                " Other processes used {:.0} % of the cores during the phase.",
                m.other_cpu_utilisation * 100.0
            ));
        }
        if m.cpu_utilisation + m.other_cpu_utilisation < 0.85 {
            s.push_str(&format!(
                " The cores were not saturated, so part of each envelope's time is waiting rather than computing: on {:.2} group-commit flushes per envelope of {:.2} ms each (the disk at {:.2} of its fsync ceiling of {:.0}/s) and on hand-offs between threads.",
                m.fsyncs_per_envelope,
                m.flush_ms,
                m.ratio_to_fsync_ceiling,
                m.fsync_ceiling_per_s
            ));
        }
        out.push(s);
    }
    if o.p99_ms > TARGET_P99_MS {
        out.push(format!(
            "p99 at 1 in flight: {:.2} ms (p50 {:.2} ms). Every envelope waits for {:.2} durable commits in sequence (the outbox entry, the receiver's inbox entry; the delivered state is group-committed after the receipt), each a group-commit flush (sled's log write, then fdatasync). During the phase a flush took {:.2} ms on average, so the flushes alone take {:.2} ms per envelope. The fsync probe measured {:.2} ms for one 4 KiB append + fdatasync back to back, but {:.2} ms (p99 {:.2} ms) for one issued after the disk idled {FSYNC_IDLE_GAP_MS} ms, as commits are at 1 in flight, where CPU work separates them: {:.2} commits at that cost take {:.2} ms of the {TARGET_P99_MS} ms. The process spends {:.0} µs of CPU per envelope ({:.0} µs of it in the kernel, {:.0} µs Ed25519 for the {:.2} signatures and {:.2} verifications counted), spread over hand-offs between the two gateways' tasks, tokio's blocking pool and the stores' flush threads. p99 is {:.2} ms above p50 with other processes using {:.0} % of the cores.",
            o.p99_ms,
            o.p50_ms,
            o.fsyncs_per_envelope,
            o.flush_ms,
            o.fsyncs_per_envelope * o.flush_ms,
            r.fsync.mean_ms,
            r.fsync.after_idle_mean_ms,
            r.fsync.after_idle_p99_ms,
            o.fsyncs_per_envelope,
            o.fsyncs_per_envelope * r.fsync.after_idle_mean_ms,
            o.cpu_us_per_envelope,
            o.system_us_per_envelope,
            counted_ed25519_us(o, &r.crypto),
            o.signatures_per_envelope,
            o.verifications_per_envelope,
            o.p99_ms - o.p50_ms,
            o.other_cpu_utilisation * 100.0,
        ));
    }
    if r.disk.per_data_byte > TARGET_DISK_RATIO
        || r.disk.receiver_per_data_byte > TARGET_RECEIVER_DISK_RATIO
    {
        let amplification = r.disk.per_data_byte / r.disk.written_per_data_byte.max(1e-9);
        out.push(format!(
            "disk: {:.2} bytes on disk per byte of data ({:.2} at the receiver). The gateways write {:.2} bytes of keys and values per byte of data ({:.2} at the receiver): the receiver keeps each whole sealed envelope, {} bytes for a {:.0}-byte document ({:.2} bytes per byte before any store overhead), besides the consent bundle ({} bytes) and the {}-byte signing chains of the gateway and of the author, which it names by digest and the receiver keeps once, plus its signed receipt ({} bytes) for replays; the sender keeps the receipt and rewrites its outbox entry. sled then holds {:.2} bytes on disk per byte written: a log-structured store that appends every update (leaf nodes of up to 16 entries are rewritten whole when consolidated) in 512 KiB segments, which the store's collector reclaims after a flush once at most 70 % of a segment is live, so the file grows in segment steps and keeps up to about 30 % dead space.",
            r.disk.per_data_byte,
            r.disk.receiver_per_data_byte,
            r.disk.written_per_data_byte,
            r.disk.receiver_written_per_data_byte,
            r.sizes.envelope_bytes,
            r.sizes.document_bytes,
            r.sizes.envelope_bytes as f64 / r.sizes.document_bytes.max(1.0),
            r.sizes.consent_bundle_bytes,
            r.sizes.certificate_chain_bytes,
            r.sizes.receipt_bytes,
            amplification,
        ));
    }
    if let Some(b) = &r.backlog_restart {
        let mib = |x: u64| x as f64 / (1024.0 * 1024.0);
        if b.ready_ms > backlog::TARGET_READY_MS {
            out.push(format!(
                "backlog restart: ready after {:.0} ms with {} envelopes queued (target ≤ {} ms): {}",
                b.ready_ms,
                b.envelopes,
                backlog::TARGET_READY_MS,
                backlog::RESTART_COST
            ));
        }
        if b.peak_rss_bytes > backlog::TARGET_RSS_BYTES {
            out.push(format!(
                "backlog restart: the restarted sender peaked at {:.1} MiB ({:.1} MiB when ready) with {} envelopes to drain (target ≤ {} MiB): {}",
                mib(b.peak_rss_bytes),
                mib(b.ready_rss_bytes),
                b.envelopes,
                mib(backlog::TARGET_RSS_BYTES),
                backlog::DRAIN_MEMORY
            ));
        }
        if b.lost + b.duplicated > 0 {
            out.push(format!(
                "backlog restart: {} lost and {} duplicated of {}: a delivery bug; the stores are kept with --dir",
                b.lost, b.duplicated, b.envelopes
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Output

/// The report as a table (metric, value, target, met?), followed by the limits of any missed
/// target.
pub fn table(r: &Report) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut row = |m: &str, v: String, t: &str, met: Option<bool>| {
        rows.push([
            m.to_owned(),
            v,
            t.to_owned(),
            met.map_or(
                String::new(),
                |b| if b { "yes".into() } else { "NO".into() },
            ),
        ]);
    };
    let one = &r.one_in_flight;
    let many = &r.many_in_flight;
    let t: HashMap<&str, &Target> = r
        .targets
        .iter()
        .map(|t| {
            let k = if t.metric.starts_with("throughput") {
                "crypto"
            } else if t.metric.starts_with("p99") {
                "p99"
            } else if t.metric.ends_with("at the receiver") {
                "receiver disk"
            } else if t.metric.starts_with("bytes on disk") {
                "disk"
            } else {
                t.metric.as_str()
            };
            (k, t)
        })
        .collect();
    row(
        "cores (available_parallelism)",
        r.cores.to_string(),
        "",
        None,
    );
    row(
        "signed document (bytes)",
        format!(
            "{:.0} ({}..{})",
            r.sizes.document_bytes, r.sizes.document_bytes_min, r.sizes.document_bytes_max
        ),
        "≈ 2048",
        None,
    );
    row(
        "sealed envelope (bytes)",
        r.sizes.envelope_bytes.to_string(),
        "",
        None,
    );
    row(
        "Ed25519 sign/s (ring, 1 thread)",
        format!("{:.0}", r.crypto.sign_per_s),
        "",
        None,
    );
    row(
        "Ed25519 verify/s (ring, 1 thread)",
        format!("{:.0}", r.crypto.verify_per_s),
        "",
        None,
    );
    row(
        "signs + verifies per envelope",
        format!(
            "{} + {}",
            r.crypto.signs_per_envelope, r.crypto.verifies_per_envelope
        ),
        "",
        None,
    );
    row(
        "crypto ceiling (envelopes/s)",
        format!("{:.0}", r.crypto.ceiling_per_s),
        "",
        None,
    );
    row(
        "fsync/s (4 KiB write + fdatasync)",
        format!("{:.0} ({:.2} ms)", r.fsync.per_s, r.fsync.mean_ms),
        "",
        None,
    );
    row(
        &format!("fsync after {FSYNC_IDLE_GAP_MS} ms idle: mean / p99 (ms)"),
        format!(
            "{:.2} / {:.2}",
            r.fsync.after_idle_mean_ms, r.fsync.after_idle_p99_ms
        ),
        "",
        None,
    );
    for (p, label) in [(one, "1 in flight"), (many, "64 in flight")] {
        row(
            &format!("{label}: envelopes/s"),
            format!("{:.0}", p.envelopes_per_s),
            "",
            None,
        );
        let p99_target = (p.in_flight == 1).then(|| t.get("p99")).flatten();
        row(
            &format!("{label}: p50 / p99 latency (ms)"),
            format!("{:.2} / {:.2}", p.p50_ms, p.p99_ms),
            p99_target.map_or("", |t| t.target.as_str()),
            p99_target.map(|t| t.met),
        );
        row(
            &format!("{label}: fsyncs per envelope"),
            format!(
                "{:.2} ({:.2} ms per flush)",
                p.fsyncs_per_envelope, p.flush_ms
            ),
            "",
            None,
        );
        row(
            &format!("{label}: CPU µs per envelope"),
            format!(
                "{:.0} ({:.0} kernel; cores {:.0} % busy, others {:.0} %)",
                p.cpu_us_per_envelope,
                p.system_us_per_envelope,
                p.cpu_utilisation * 100.0,
                p.other_cpu_utilisation * 100.0
            ),
            "",
            None,
        );
        row(
            &format!("{label}: Ed25519 signs / verifies per envelope (counted)"),
            format!(
                "{:.2} / {:.2}",
                p.signatures_per_envelope, p.verifications_per_envelope
            ),
            "",
            None,
        );
        let crypto_target = (p.in_flight != 1).then(|| t.get("crypto")).flatten();
        row(
            &format!("{label}: throughput / crypto ceiling"),
            format!("{:.2}", p.ratio_to_crypto_ceiling),
            crypto_target.map_or("", |t| t.target.as_str()),
            crypto_target.map(|t| t.met),
        );
        row(
            &format!("{label}: throughput / fsync ceiling"),
            format!(
                "{:.2} (ceiling {:.0}/s)",
                p.ratio_to_fsync_ceiling, p.fsync_ceiling_per_s
            ),
            "",
            None,
        );
    }
    row(
        "peak RSS (MiB, whole process)",
        format!("{:.1}", r.peak_rss_bytes as f64 / (1024.0 * 1024.0)),
        "",
        None,
    );
    let disk = t.get("disk");
    row(
        "bytes on disk per byte of data",
        format!("{:.2}", r.disk.per_data_byte),
        disk.map_or("", |t| t.target.as_str()),
        disk.map(|t| t.met),
    );
    let receiver_disk = t.get("receiver disk");
    row(
        "  receiver alone",
        format!("{:.2}", r.disk.receiver_per_data_byte),
        receiver_disk.map_or("", |t| t.target.as_str()),
        receiver_disk.map(|t| t.met),
    );
    row(
        "  bytes written per byte of data",
        format!(
            "{:.2} (receiver {:.2})",
            r.disk.written_per_data_byte, r.disk.receiver_written_per_data_byte
        ),
        "",
        None,
    );
    if let Some(b) = &r.backlog_restart {
        row(
            "backlog restart: queued for the peer while down",
            format!("{} ({:.0}/s)", b.envelopes, b.queue_envelopes_per_s),
            "",
            None,
        );
        for t in r.targets.iter().filter(|t| t.metric.starts_with("backlog")) {
            row(&t.metric, format!("{:.1}", t.value), &t.target, Some(t.met));
        }
        row(
            "backlog restart: drain (envelopes/s)",
            format!("{:.0} ({:.1} s)", b.drain_envelopes_per_s, b.drain_seconds),
            "",
            None,
        );
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0).max(6), width(1).max(5), width(2).max(6));
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
    let mut out = format!(
        "{} | {} | {} | met?\n{}-+-{}-+-{}-+-----\n",
        pad("metric", w0),
        pad("value", w1),
        pad("target", w2),
        "-".repeat(w0),
        "-".repeat(w1),
        "-".repeat(w2)
    );
    for r in &rows {
        out.push_str(
            format!(
                "{} | {} | {} | {}",
                pad(&r[0], w0),
                pad(&r[1], w1),
                pad(&r[2], w2),
                r[3]
            )
            .trim_end(),
        );
        out.push('\n');
    }
    if !r.limits.is_empty() {
        out.push_str("\nlimits:\n");
        for l in &r.limits {
            out.push_str(&format!("- {l}\n"));
        }
    }
    if let Some(d) = &r.dir {
        out.push_str(&format!("\nkept: {}\n", d.display()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        let v: Vec<f64> = (1..=300).map(f64::from).collect();
        assert_eq!(percentile(&v, 99.0), 297.0);
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 50.0), 3.0);
        assert_eq!(percentile(&v, 99.0), 5.0);
        assert_eq!(percentile(&v, 1.0), 1.0);
    }

    #[test]
    fn ceilings() {
        // 2 cores; 3 signs at 50k/s and 4 verifies at 20k/s: 60 + 200 = 260 µs per envelope.
        let c = crypto_ceiling(2, 3, 4, 50_000.0, 20_000.0);
        assert!((c - 2.0 / 260e-6).abs() < 1e-6, "{c}");
        assert_eq!(crypto_ceiling(1, 0, 0, 1.0, 1.0), f64::INFINITY);
        assert_eq!(fsync_ceiling(1000.0, 0.5), 2000.0);
        assert_eq!(fsync_ceiling(1000.0, 0.0), f64::INFINITY);
        let (s, v) = crypto_counts();
        assert_eq!((s, v), (3, 4), "update the module docs with the count");
    }

    #[test]
    fn smoke_run_reports_every_field() {
        let r = run(&Options {
            n1: 5,
            n64: 20,
            dir: None,
            baseline: Duration::from_millis(100),
            backlog: 300,
        })
        .unwrap();
        let b = r
            .backlog_restart
            .as_ref()
            .expect("the backlog scenario ran");
        assert_eq!(b.envelopes, 300);
        assert_eq!((b.lost, b.duplicated), (0, 0), "{b:?}");
        assert!(b.ready_ms > 0.0 && b.drain_envelopes_per_s > 0.0, "{b:?}");
        assert!(
            b.peak_rss_bytes >= b.ready_rss_bytes && b.ready_rss_bytes > 0,
            "{b:?}"
        );
        assert_eq!(r.one_in_flight.envelopes, 5);
        assert_eq!(r.many_in_flight.envelopes, 20);
        // Counted, not read off the code: at 1 in flight each envelope is a batch of one, so
        // the receiver verifies its batch head and the author's signature and the sender the
        // receipt's head (3); the document is not verified again where its facts are recorded.
        // A new audit checkpoint may ride along now and then.
        let o = &r.one_in_flight;
        assert!((3.0..3.5).contains(&o.verifications_per_envelope), "{o:?}");
        assert!((3.0..3.5).contains(&o.signatures_per_envelope), "{o:?}");
        assert!(r.cores >= 1);
        for (name, v) in [
            ("document", r.sizes.document_bytes),
            ("sign/s", r.crypto.sign_per_s),
            ("verify/s", r.crypto.verify_per_s),
            ("crypto ceiling", r.crypto.ceiling_per_s),
            ("fsync/s", r.fsync.per_s),
            ("fsync after idle", r.fsync.after_idle_mean_ms),
            ("fsync after idle p99", r.fsync.after_idle_p99_ms),
            ("1: envelopes/s", r.one_in_flight.envelopes_per_s),
            ("1: p50", r.one_in_flight.p50_ms),
            ("1: p99", r.one_in_flight.p99_ms),
            ("1: fsyncs", r.one_in_flight.fsyncs_per_envelope),
            ("64: envelopes/s", r.many_in_flight.envelopes_per_s),
            ("64: p99", r.many_in_flight.p99_ms),
            ("64: fsyncs", r.many_in_flight.fsyncs_per_envelope),
            ("64: crypto ratio", r.many_in_flight.ratio_to_crypto_ceiling),
            ("64: fsync ratio", r.many_in_flight.ratio_to_fsync_ceiling),
            ("data", r.disk.data_bytes),
            ("written", r.disk.written_per_data_byte),
        ] {
            assert!(v.is_finite() && v > 0.0, "{name} = {v}");
        }
        assert!(r.one_in_flight.p50_ms <= r.one_in_flight.p99_ms);
        assert!(r.sizes.document_bytes_min <= r.sizes.document_bytes_max);
        assert!(r.sizes.envelope_bytes > r.sizes.document_bytes_max);
        assert!(r.peak_rss_bytes > 0);
        assert_eq!(r.targets.len(), 7);
        // One paragraph explains both disk targets.
        let mut missed: Vec<&str> = r
            .targets
            .iter()
            .filter(|t| !t.met)
            .map(|t| {
                if t.metric.starts_with("bytes on disk") {
                    "disk"
                } else {
                    t.metric.as_str()
                }
            })
            .collect();
        missed.dedup();
        assert_eq!(
            r.limits.len(),
            missed.len(),
            "every missed target is explained"
        );
        let json = serde_json::to_value(&r).unwrap();
        for key in [
            "cores",
            "sizes",
            "crypto",
            "fsync",
            "one_in_flight",
            "many_in_flight",
            "peak_rss_bytes",
            "disk",
            "targets",
            "limits",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from the JSON");
        }
        let text = table(&r);
        assert!(text.contains("bytes on disk per byte of data"), "{text}");
    }
}
