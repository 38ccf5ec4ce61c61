//! `tsunagi check --config gateway.toml`: is this gateway ready to run and to reach its peers?
//!
//! Checks, in order: the configuration; that `listen` can be bound (when the gateway is not
//! running); the credentials (they load, name the configured org, are
//! within their validity and not revoked; every secret file — the private keys and the master
//! key — is mode 0600 or stricter and owned by this account, the rule the store applies to the
//! master key); the CA and the CRL (present, signed by the CA, not past its next update); the
//! directory (signature, expiry, this gateway's entry against `listen` and the certificate,
//! the other members' entries); and every peer's reachability (a QUIC + TLS handshake and one
//! witness query, with a short timeout). Prints one line per finding — `fix:` for what must be
//! fixed, `warn:` for what will need attention — and fails if anything must be fixed.

use std::path::Path;
use std::time::Duration;

use tsunagi_certs::{CertInfo, Credentials};
use tsunagi_protocol::checkpoint::witness_query;

use crate::config::Config;
use crate::files::{now, CliResult, Fail};
use crate::transport::{Transport, TransportConfig};

/// Findings, in order.
#[derive(Default)]
struct Report {
    fix: Vec<String>,
    warn: Vec<String>,
}

impl Report {
    fn fix(&mut self, s: impl Into<String>) {
        let s = s.into();
        println!("fix: {s}");
        self.fix.push(s);
    }
    fn warn(&mut self, s: impl Into<String>) {
        let s = s.into();
        println!("warn: {s}");
        self.warn.push(s);
    }
}

/// The secret-file rule, the one the gateway applies when it reads a secret
/// ([`tsunagi_certs::local::check_secret`]): mode 0600 or stricter, owned by this account.
pub(crate) fn secret_file_problem(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Err(e) => Some(format!("cannot read {}: {e}", path.display())),
        Ok(meta) => tsunagi_certs::local::check_secret(path, &meta)
            .err()
            .map(|e| e.0),
    }
}

pub(crate) fn run(config: &Path, peer_timeout_ms: u64) -> CliResult {
    let mut r = Report::default();
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            r.fix(e.0);
            return finish(&r);
        }
    };
    let t = now();

    // The listen address, unless the gateway already runs on it.
    if !crate::offline::gateway_running(&cfg) {
        if let Err(e) = std::net::UdpSocket::bind(cfg.listen) {
            r.fix(format!(
                "{}: cannot bind listen = {}: {e}; another process uses the port, or the address is not one of this machine's",
                config.display(),
                cfg.listen
            ));
        }
    }

    // Credentials: the keys first, each named once, then the rest of what loading checks.
    let mut exposed = false;
    for key in ["tls.key", "sign.key"] {
        let p = cfg.credentials.join(key);
        if p.exists() {
            if let Some(p) = secret_file_problem(&p) {
                r.fix(p);
                exposed = true;
            }
        }
    }
    let creds = match Credentials::load(&cfg.credentials) {
        Ok(c) => Some(c),
        Err(_) if exposed => None, // said above
        Err(e) => {
            r.fix(format!("credentials: {e}"));
            None
        }
    };
    if cfg.master_key.exists() {
        if let Some(p) = secret_file_problem(&cfg.master_key) {
            r.fix(p);
        }
    }
    if let Some(c) = &creds {
        if c.org != cfg.org {
            r.fix(format!(
                "{}: the credentials are for {} but the configuration says org = {}",
                cfg.credentials.display(),
                c.org,
                cfg.org
            ));
        }
    }

    // CA and CRL.
    let crl = match tsunagi_certs::load_crl(&cfg.crl) {
        Ok(crl) => {
            if let Some(next) = crl.next_update {
                let left = next - t.0 as i64;
                if left < 0 {
                    r.fix(format!(
                        "{}: the CRL expired {} day(s) ago (next update was due); peers may refuse us and we cannot check theirs: get a fresh crl.pem from the federation (`tsunagi certs revoke` or the CA's refresh)",
                        cfg.crl.display(),
                        (-left) / 86_400 + 1
                    ));
                } else if left < 7 * 86_400 {
                    r.warn(format!(
                        "{}: the CRL expires in {} day(s); ask the federation for a fresh one",
                        cfg.crl.display(),
                        left / 86_400
                    ));
                }
            }
            Some(crl)
        }
        Err(e) => {
            r.fix(format!("CRL: {e}"));
            None
        }
    };
    let trust = match crate::engine::load_trust(&cfg) {
        Ok(t) => Some(t),
        Err(e) => {
            if crl.is_some() {
                r.fix(format!("CA/CRL: {e}"));
            }
            None
        }
    };
    if let Some(c) = &creds {
        for (what, der) in [
            ("tls.pem", c.tls_cert.as_ref()),
            ("sign.pem", c.signing_chain[0].as_slice()),
        ] {
            match CertInfo::from_der(der, crl.as_ref()) {
                Ok(info) => {
                    if info.revoked == Some(true) {
                        r.fix(format!(
                            "{}: {what} is revoked: ask the federation for new credentials",
                            cfg.credentials.display()
                        ));
                    }
                    let now_s = t.0 as i64;
                    if now_s > info.not_after {
                        r.fix(format!(
                            "{}: {what} expired: ask the federation for new credentials",
                            cfg.credentials.display()
                        ));
                    } else if info.not_after - now_s < 30 * 86_400 {
                        r.warn(format!(
                            "{}: {what} expires in {} day(s)",
                            cfg.credentials.display(),
                            (info.not_after - now_s) / 86_400
                        ));
                    }
                }
                Err(e) => r.fix(format!("{}: {what}: {e}", cfg.credentials.display())),
            }
        }
    }

    // Directory.
    let directory = match &trust {
        Some((federation, _)) => match crate::engine::load_directory(&cfg, federation, t) {
            Ok(d) => Some(d),
            Err(e) => {
                r.fix(e);
                None
            }
        },
        None => None,
    };
    if let (Some(d), Some(c)) = (&directory, &creds) {
        if let Some(days) = d.expires.map(|e| e.to_days() - t.date().to_days()) {
            if days < 14 {
                r.warn(format!(
                    "{}: the directory expires in {days} day(s); ask the federation for a fresh one",
                    cfg.directory.display()
                ));
            }
        }
        if let Err(e) = crate::checks::own_entry(d, &cfg.org, cfg.listen, c) {
            r.fix(format!("{}: {e}", cfg.directory.display()));
        }
        for w in crate::checks::other_entries(d, &cfg.org) {
            r.warn(format!("{}: {w}", cfg.directory.display()));
        }
    }

    // Peers.
    if let (Some(d), Some(c), Some((_, tls))) = (&directory, &creds, &trust) {
        let peers: Vec<_> = d
            .members
            .iter()
            .filter(|m| m.org != cfg.org)
            .filter_map(|m| m.endpoint().ok().map(|(a, h)| (m.org.clone(), a, h)))
            .collect();
        if !peers.is_empty() {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| Fail(format!("cannot start the async runtime: {e}")))?;
            let timeout = Duration::from_millis(peer_timeout_ms);
            let results = rt.block_on(async {
                let local = if cfg.listen.is_ipv6() {
                    "[::]:0"
                } else {
                    "0.0.0.0:0"
                };
                let transport = Transport::bind(
                    local.parse().expect("a socket address"),
                    c,
                    tls,
                    TransportConfig {
                        connect_timeout: timeout,
                        ..TransportConfig::default()
                    },
                )
                .map_err(|e| e.to_string())?;
                let mut tasks = Vec::new();
                for (org, addr, host) in peers {
                    let tr = transport.clone();
                    tasks.push(tokio::spawn(async move {
                        let r = tokio::time::timeout(
                            timeout,
                            tr.request_to(&org, addr, &host, &witness_query()),
                        )
                        .await;
                        let r = match r {
                            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
                            Ok(Err(e)) => {
                                Err(e.to_string().replace("; it will be retried later", ""))
                            }
                            Ok(Ok(_)) => Ok(()),
                        };
                        (org, addr, host, r)
                    }));
                }
                let mut out = Vec::new();
                for t in tasks {
                    if let Ok(x) = t.await {
                        out.push(x);
                    }
                }
                transport.close().await;
                Ok::<_, String>(out)
            });
            match results {
                Err(e) => r.fix(format!(
                    "cannot open a QUIC endpoint to test the peers: {e}"
                )),
                Ok(results) => {
                    for (org, addr, host, res) in results {
                        if let Err(e) = res {
                            r.fix(format!(
                                "peer {org} at {addr} (host {host}) is unreachable: {e}; is its gateway running, and is UDP {} open between us?",
                                addr.port()
                            ));
                        }
                    }
                }
            }
        }
    }
    finish(&r)
}

fn finish(r: &Report) -> CliResult {
    if r.fix.is_empty() {
        println!(
            "ok: ready{}",
            if r.warn.is_empty() {
                String::new()
            } else {
                format!(" ({} warning(s) above)", r.warn.len())
            }
        );
        Ok(())
    } else {
        Err(Fail(format!(
            "{} thing(s) to fix, one per line above",
            r.fix.len()
        )))
    }
}
