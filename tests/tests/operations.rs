//! Operations basics: `/metrics`, `/healthz` and `/readyz` of real gateways over HTTP, readiness
//! failing for an expired CRL and an expired directory, and expiry warnings for short-lived
//! credentials.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tsunagi_gateway::clock::{Clock, ManualClock};
use tsunagi_gateway::config::Config;
use tsunagi_gateway::engine::Gateway;
use tsunagi_protocol::directory::Directory;
use tsunagi_protocol::Timestamp;
use tsunagi_tests::{fixture, Federation};

const BUNKYO: &str = "lg:131059";
const HOSPITAL: &str = "mi:1310000017";
const FAST: &str = "[delivery]\nretry_initial_ms = 200\nretry_max_ms = 1000\nconnect_timeout_ms = 500\nattempt_timeout_ms = 2000\nidle_timeout_ms = 1500\n";
const DAY: u64 = 86_400;

/// `GET path` over HTTP/1.1: the status and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_as(addr, path, &addr.to_string())
}

/// `GET path` naming `host` in the `Host` header.
fn get_as(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    if path == "/metrics" && status == 200 {
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
    }
    (status, body.to_owned())
}

/// The samples of an exposition: `name{labels}` → value. Checks the text format on the way:
/// every sample belongs to a family announced by `# TYPE`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut family = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            family = rest.split_whitespace().next().unwrap().to_owned();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("name value");
        let name = key.split('{').next().unwrap();
        assert!(
            name == family || name.starts_with(&format!("{family}_")),
            "{line} outside its family {family}"
        );
        out.insert(key.to_owned(), value.parse().expect("a number"));
    }
    out
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// Adds `metrics_listen` on a free loopback port to `org`'s configuration (top-level keys go
/// before any table).
fn with_metrics(f: &Federation, org: &str) -> SocketAddr {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let path = &f.members[org].config;
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, format!("metrics_listen = \"{addr}\"\n{text}")).unwrap();
    addr
}

fn wait_for(what: &str, secs: u64, mut check: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let Some(last) = check() else { return };
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {last}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn metrics_and_probes_over_http_and_an_expired_crl_is_not_ready() {
    let mut f = Federation::new("ops-metrics", &[BUNKYO, HOSPITAL], FAST);
    let bunkyo = with_metrics(&f, BUNKYO);
    let hospital = with_metrics(&f, HOSPITAL);
    f.start_all();

    // A send refused by the consent gate (no consent yet: R1), then consent v1, which goes to
    // the hospital (running) and to five parties that are not (backlog, retries).
    let refused = f.try_call(
        HOSPITAL,
        json!({"op": "send", "to": BUNKYO, "purpose": "plan_creation", "form": fixture("needs_assessment.json")}),
    );
    assert!(refused.is_err(), "{refused:?}");
    f.record_consent("consent.json");
    let clinic = "mi:1310000025";
    f.wait_outbox(
        BUNKYO,
        30,
        "the consent delivered to the hospital and retried to the clinic",
        |v| {
            v.iter()
                .any(|e| e["to"] == HOSPITAL && e["state"] == "delivered")
                && v.iter()
                    .any(|e| e["to"] == clinic && e["state"] == "retry_wait")
        },
    );

    let (status, text) = get(bunkyo, "/metrics");
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains("case-"),
        "no case pseudonym in the metrics:\n{text}"
    );
    let m = samples(&text);
    let at = |k: &str| {
        *m.get(k)
            .unwrap_or_else(|| panic!("{k} missing from the metrics:\n{text}"))
    };
    assert_eq!(
        at(&format!(
            "tsunagi_build_info{{version=\"0.1.0\",org=\"{BUNKYO}\"}}"
        )),
        1.0
    );
    assert_eq!(at("tsunagi_ready"), 1.0);
    assert_eq!(at("tsunagi_handshakes_refused_total{cap=\"in_all\"}"), 0.0);
    // The outbox series agree with the outbox listing, peer by peer and state by state.
    let outbox = f.call(BUNKYO, json!({"op": "outbox_list"}));
    let outbox = outbox.as_array().unwrap();
    let mut expected: BTreeMap<(String, String), f64> = BTreeMap::new();
    for e in outbox {
        *expected
            .entry((
                e["to"].as_str().unwrap().into(),
                e["state"].as_str().unwrap().into(),
            ))
            .or_default() += 1.0;
    }
    for ((peer, state), n) in &expected {
        // Entries still in flight may have moved on since the listing; delivered ones cannot.
        if state == "delivered" {
            assert_eq!(
                at(&format!(
                    "tsunagi_outbox_envelopes{{peer=\"{peer}\",state=\"{state}\"}}"
                )),
                *n
            );
        }
    }
    assert_eq!(
        at(&format!(
            "tsunagi_outbox_envelopes{{peer=\"{HOSPITAL}\",state=\"delivered\"}}"
        )),
        1.0
    );
    assert_eq!(
        at(&format!("tsunagi_outbox_backlog{{peer=\"{HOSPITAL}\"}}")),
        0.0
    );
    assert_eq!(
        at(&format!(
            "tsunagi_envelopes_delivered_total{{peer=\"{HOSPITAL}\"}}"
        )),
        1.0
    );
    assert_eq!(
        at(&format!("tsunagi_outbox_backlog{{peer=\"{clinic}\"}}")),
        1.0
    );
    assert!(
        at(&format!(
            "tsunagi_outbox_oldest_backlog_age_seconds{{peer=\"{clinic}\"}}"
        )) >= 0.0
    );
    assert!(
        at(&format!(
            "tsunagi_delivery_retries_total{{peer=\"{clinic}\"}}"
        )) >= 1.0
    );
    let fsyncs = at("tsunagi_store_fsync_duration_seconds_count");
    assert!(fsyncs >= 1.0);
    assert_eq!(
        at("tsunagi_store_fsync_duration_seconds_bucket{le=\"+Inf\"}"),
        fsyncs
    );
    let buckets: Vec<f64> = ["0.0005", "0.001", "0.01", "0.1", "1", "2.5", "+Inf"]
        .iter()
        .map(|le| {
            at(&format!(
                "tsunagi_store_fsync_duration_seconds_bucket{{le=\"{le}\"}}"
            ))
        })
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert!(at("tsunagi_store_fsync_duration_seconds_sum") > 0.0);
    assert!(at("tsunagi_store_size_bytes") > 0.0);
    assert!(at("tsunagi_store_free_bytes") > 0.0);
    assert_eq!(at("tsunagi_store_min_free_bytes"), (64 << 20) as f64);
    assert_eq!(at("tsunagi_store_stopped"), 0.0);
    // The test federation issues credentials for 365 days and CRLs for 30.
    let tls = at("tsunagi_expiry_days_left{what=\"tls_certificate\"}");
    assert!((364.0..=365.0).contains(&tls), "{tls}");
    let crl = at("tsunagi_expiry_days_left{what=\"crl_next_update\"}");
    assert!((29.0..=30.0).contains(&crl), "{crl}");
    assert!(at("tsunagi_expiry_days_left{what=\"directory\"}") > 20_000.0);
    for what in [
        "tls_certificate",
        "signing_certificate",
        "ca_certificate",
        "crl_next_update",
        "directory",
    ] {
        assert_eq!(
            at(&format!("tsunagi_expiry_warning{{what=\"{what}\"}}")),
            0.0,
            "{what}"
        );
        assert!(
            at(&format!(
                "tsunagi_expiry_timestamp_seconds{{what=\"{what}\"}}"
            )) > 1.7e9
        );
    }

    let (status, text) = get(hospital, "/metrics");
    assert_eq!(status, 200);
    let h = samples(&text);
    let denial = h
        .iter()
        .find(|(k, _)| k.starts_with("tsunagi_gate_denials_total{rule=\"R1\",code=\""))
        .unwrap_or_else(|| panic!("no R1 denial counted:\n{text}"));
    assert_eq!(*denial.1, 1.0);
    assert_eq!(
        h[&format!("tsunagi_inbox_envelopes{{peer=\"{BUNKYO}\"}}")],
        1.0
    );
    assert_eq!(
        h[&format!("tsunagi_envelopes_received_total{{peer=\"{BUNKYO}\"}}")],
        1.0
    );

    for addr in [bunkyo, hospital] {
        assert_eq!(get(addr, "/healthz"), (200, "ok\n".into()));
        let (status, body) = get(addr, "/readyz");
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("ready: "), "{body}");
    }
    assert_eq!(get(bunkyo, "/nothing").0, 404);

    // The federation's CRL was last issued 31 days ago: its next update has passed. The
    // gateways reload it and are no longer ready, naming the CRL; they are still alive.
    let now = tsunagi_gateway::files::now();
    f.ca.refresh_crl_at(Timestamp(now.0 - 31 * DAY)).unwrap();
    wait_for("/readyz to answer 503", 20, || {
        let (status, body) = get(bunkyo, "/readyz");
        (status != 503).then(|| format!("{status} {body}"))
    });
    let (_, body) = get(bunkyo, "/readyz");
    assert!(
        body.starts_with("not ready:\n- the CRL's next update ("),
        "{body}"
    );
    assert!(
        body.contains("was due on") && body.contains("fetch the current CRL"),
        "{body}"
    );
    assert_eq!(get(bunkyo, "/healthz").0, 200);
    let m = samples(&get(bunkyo, "/metrics").1);
    assert_eq!(m["tsunagi_ready"], 0.0);
    assert_eq!(m["tsunagi_expiry_warning{what=\"crl_next_update\"}"], 1.0);
    assert!(m["tsunagi_expiry_days_left{what=\"crl_next_update\"}"] < 0.0);

    // The outbox series are counts kept in memory: a restarted gateway counts its outbox again
    // when it starts, and its series still agree with the listing.
    f.kill(BUNKYO);
    f.start(BUNKYO);
    let m = samples(&get(bunkyo, "/metrics").1);
    for (series, want) in [
        (
            format!("tsunagi_outbox_envelopes{{peer=\"{HOSPITAL}\",state=\"delivered\"}}"),
            1.0,
        ),
        (
            format!("tsunagi_outbox_backlog{{peer=\"{HOSPITAL}\"}}"),
            0.0,
        ),
        (format!("tsunagi_outbox_backlog{{peer=\"{clinic}\"}}"), 1.0),
    ] {
        assert_eq!(m.get(&series), Some(&want), "{series} after the restart");
    }
    let queued_at = f
        .call(BUNKYO, json!({"op": "outbox_list"}))
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["to"] == clinic)
        .and_then(|e| e["created"].as_f64())
        .unwrap();
    let age = m[&format!("tsunagi_outbox_oldest_backlog_age_seconds{{peer=\"{clinic}\"}}")];
    let now = tsunagi_gateway::files::now().0 as f64;
    assert!(
        (now - queued_at - age).abs() <= 2.0,
        "age {age}, queued at {queued_at}"
    );
}

#[test]
fn a_disk_below_the_floor_is_alive_but_not_ready() {
    let mut f = Federation::new(
        "ops-floor",
        &[BUNKYO],
        "[storage]\nmin_free_bytes = 1152921504606846976\n",
    );
    let addr = with_metrics(&f, BUNKYO);
    f.start(BUNKYO);
    let (status, body) = get(addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("not ready:\n- ") && body.contains("min_free_bytes"),
        "{body}"
    );
    assert_eq!(get(addr, "/healthz"), (200, "ok\n".into()));
    let m = samples(&get(addr, "/metrics").1);
    assert_eq!(m["tsunagi_ready"], 0.0);
    assert!(m["tsunagi_store_free_bytes"] < m["tsunagi_store_min_free_bytes"]);
}

#[test]
fn a_non_loopback_metrics_address_is_refused() {
    let f = Federation::new("ops-loopback", &[BUNKYO], "");
    let path = &f.members[BUNKYO].config;
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, format!("metrics_listen = \"0.0.0.0:9464\"\n{text}")).unwrap();
    let out = f.cli(BUNKYO, &["gateway", "run"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics_listen: 0.0.0.0:9464 is not a loopback address")
            && err.contains("metrics_allow_non_loopback = true"),
        "{err}"
    );
}

#[test]
fn short_lived_credentials_and_directory_warn_and_expired_ones_are_not_ready() {
    let mut f = Federation::new("ops-expiry", &[BUNKYO], "");
    // Credentials valid for 5 days, a directory valid through 10 days from now.
    let creds = f.creds(BUNKYO);
    std::fs::remove_dir_all(&creds).unwrap();
    f.ca.issue(&BUNKYO.parse().unwrap(), "127.0.0.1", &creds, 5)
        .unwrap();
    let now = tsunagi_gateway::files::now();
    let path = f.dir.join("directory.cose");
    let trust = f.ca.trust().unwrap();
    let mut directory = Directory::verify(
        &std::fs::read(&path).unwrap(),
        &trust.federation(),
        now,
        &Directory::limits(),
    )
    .unwrap();
    directory.expires = Some(now.date().add_days(10));
    std::fs::write(
        &path,
        directory.sign(&f.ca.federation_signer().unwrap()).unwrap(),
    )
    .unwrap();

    // At start the gateway warns of each, naming the file and what to do; not of the CRL.
    let metrics = with_metrics(&f, BUNKYO);
    f.start(BUNKYO);
    let log = f.log(BUNKYO);
    for what in ["the TLS certificate", "the signing certificate"] {
        assert!(
            log.contains(&format!("EXPIRING SOON: {what} ("))
                && (log.contains("expires in 4 days") || log.contains("expires in 5 days")),
            "{what}:\n{log}"
        );
    }
    assert!(log.contains("tsunagi certs issue"), "{log}");
    assert!(log.contains("EXPIRING SOON: the directory ("), "{log}");
    assert!(!log.contains("the CRL's next update"), "{log}");
    let m = samples(&get(metrics, "/metrics").1);
    assert_eq!(m["tsunagi_expiry_warning{what=\"tls_certificate\"}"], 1.0);
    assert_eq!(
        m["tsunagi_expiry_warning{what=\"signing_certificate\"}"],
        1.0
    );
    assert_eq!(m["tsunagi_expiry_warning{what=\"directory\"}"], 1.0);
    assert_eq!(m["tsunagi_expiry_warning{what=\"crl_next_update\"}"], 0.0);
    assert_eq!(m["tsunagi_expiry_warning{what=\"ca_certificate\"}"], 0.0);
    assert_eq!(m["tsunagi_ready"], 1.0);
    assert_eq!(get(metrics, "/readyz").0, 200);
    f.kill(BUNKYO);

    // The same gateway in this process, on a clock that moves: 6 days on, the certificates
    // have expired; 12 days on, the directory too. /readyz names each.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let clock = Arc::new(ManualClock::new(now));
    let cfg = Config::load(&f.members[BUNKYO].config).unwrap();
    let gw = {
        let _guard = rt.enter();
        Gateway::open_with_clock(cfg, clock.clone()).unwrap()
    };
    let addr = rt
        .block_on(tsunagi_gateway::ops::http::serve(
            gw.clone(),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    assert_eq!(get(addr, "/readyz").0, 200);
    // A page whose name was re-pointed at 127.0.0.1 (DNS rebinding) reads nothing.
    for path in ["/metrics", "/readyz"] {
        let (status, body) = get_as(addr, path, &format!("rebound.example:{}", addr.port()));
        assert_eq!(status, 421, "{path}: {body}");
        assert!(!body.contains("tsunagi_"), "{path}: {body}");
    }
    assert_eq!(get_as(addr, "/metrics", "localhost").0, 200);
    assert_eq!(tsunagi_gateway::ops::log_expiries(&gw), 3);
    clock.advance(6 * DAY);
    let (status, body) = get(addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("- the TLS certificate ("), "{body}");
    assert!(body.contains("- the signing certificate ("), "{body}");
    assert!(!body.contains("the directory"), "{body}");
    clock.advance(6 * DAY);
    assert!(clock.now().date() > now.date().add_days(10));
    let (status, body) = get(addr, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("- the directory (") && body.contains("directory.cose) expired on"),
        "{body}"
    );
    assert!(
        body.contains("install the federation's new signed directory"),
        "{body}"
    );
    assert_eq!(get(addr, "/healthz").0, 200);
}
