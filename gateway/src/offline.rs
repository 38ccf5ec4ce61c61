//! Reading a gateway's store while the gateway is not running: `tsunagi stats` and
//! `tsunagi audit verify` work either way, without binding the QUIC port.
//!
//! When the gateway runs, its control socket answers and the commands go through it (the store
//! is locked by the running process). When nothing answers, the store is opened here, read,
//! and closed; nothing is written and no transport is started.

use std::path::PathBuf;

use tsunagi_certs::FederationTrust;

use crate::audit::{self, AuditReport};
use crate::config::Config;
use crate::events::AuditRecord;
use crate::store::{Prefix, Read, SledStore};

/// A stopped gateway's store, opened for reading.
pub struct Offline {
    store: SledStore,
    cfg: Config,
}

impl Offline {
    /// Opens the store of `cfg`; refuses when there is none yet or another process holds it.
    pub fn open(cfg: &Config) -> Result<Offline, String> {
        let dir: PathBuf = cfg.data_dir.join("store");
        if !dir.join("db").is_file() {
            return Err(format!(
                "{} holds no store yet: the gateway has never run with this configuration",
                dir.display()
            ));
        }
        let store = SledStore::open(&dir, 8 * 1024 * 1024).map_err(|e| {
            format!("{e} (is another process using it? a running gateway answers on its control socket)")
        })?;
        // Read with this build's layouts only what has them: a newer format is refused. No
        // migration here (nothing is written; see `check_readable`).
        crate::store::schema::check_readable(&store).map_err(|e| e.to_string())?;
        Ok(Offline {
            store,
            cfg: cfg.clone(),
        })
    }

    /// The audit records as typed events, oldest first; a record that does not read is an
    /// error naming it.
    pub fn audit_records(&self) -> Result<Vec<AuditRecord>, String> {
        self.store
            .read_all(&Prefix::audit_records())
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(k, v)| {
                serde_json::from_slice(&v).map_err(|e| {
                    let seq = k
                        .get(..8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map_or(0, u64::from_be_bytes);
                    format!("audit record {seq} does not read: {e}; run `tsunagi audit verify`")
                })
            })
            .collect()
    }

    /// R12 statistics, as `{"op":"stats"}` answers them.
    pub fn stats(&self) -> Result<serde_json::Value, String> {
        Ok(crate::engine::Gateway::stats_of(
            &self.cfg.org,
            &self.audit_records()?,
        ))
    }

    /// Recomputes the audit chain and checks its signed checkpoints against the federation CA.
    pub fn audit_verify(&self) -> Result<AuditReport, String> {
        let trust = FederationTrust::from_files(&self.cfg.ca, Some(&self.cfg.crl))
            .map_err(|e| e.to_string())?;
        let mut report = audit::verify(&self.store, &self.cfg.org, &trust, crate::files::now())
            .map_err(|e| e.to_string())?;
        // The chain alone cannot show records cut off its end together with their checkpoints;
        // the head file beside the store, which the gateway writes after each durable commit,
        // can (the gateway itself refuses to start on such a store).
        let head = audit::HeadFile::new(self.cfg.data_dir.join("audit.head"));
        if let Err(e) = head.check_records(
            &self.store,
            report.records,
            &self.cfg.data_dir.join("store"),
        ) {
            report.problems.push(e.to_string());
        }
        Ok(report)
    }
}

/// Whether a gateway answers on `cfg`'s control socket.
pub fn gateway_running(cfg: &Config) -> bool {
    std::os::unix::net::UnixStream::connect(cfg.control_socket()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::Key;
    use crate::store::{Batch, Store};

    fn config(dir: &std::path::Path) -> Config {
        let text = "org = \"lg:131059\"\nlisten = \"127.0.0.1:7402\"\ncredentials = \"creds\"\nca = \"ca.pem\"\ncrl = \"crl.pem\"\ndirectory = \"d.cose\"\ndata_dir = \"data\"\nmaster_key = \"master.key\"\n";
        Config::parse(text, &dir.join("gateway.toml")).unwrap()
    }

    fn set_format(cfg: &Config, format: Option<u32>) {
        let store = SledStore::open(&cfg.data_dir.join("store"), 1 << 20).unwrap();
        let mut b = Batch::new();
        b.put(crate::store::Space::Inbox, b"m1", b"{}");
        if let Some(f) = format {
            b.set(&Key::format(), f.to_be_bytes());
        }
        store.apply(b).unwrap();
        store.flush().unwrap();
    }

    #[test]
    fn a_store_of_a_newer_format_is_refused_and_an_older_one_left_as_it_is() {
        let tmp = crate::store::testutil::TempDir::new("offline-format");
        let cfg = config(tmp.path());
        set_format(&cfg, None);
        drop(Offline::open(&cfg).unwrap());
        let store = SledStore::open(&cfg.data_dir.join("store"), 1 << 20).unwrap();
        assert_eq!(
            store.read(&Key::format()).unwrap(),
            None,
            "written by a read"
        );
        drop(store);
        set_format(&cfg, Some(9));
        let e = Offline::open(&cfg)
            .err()
            .expect("a store of format 9 was opened by an older build");
        assert!(e.contains("newer tsunagi (format 9)"), "{e}");
    }
}
