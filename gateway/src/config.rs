//! The gateway's configuration file (`gateway.toml`).
//!
//! ```toml
//! org = "lg:131059"
//! listen = "127.0.0.1:7402"
//! credentials = "creds"          # from `tsunagi certs issue`
//! ca = "ca.pem"
//! crl = "crl.pem"                # reloaded when it changes
//! directory = "directory.cose"   # signed by the federation CA; reloaded when it changes
//! data_dir = "data"
//! master_key = "master.key"      # created (0600) on first start
//! log_format = "text"            # or "json"
//! retention_years = 5            # purge a case this long after its support ended (R8)
//! metrics_listen = "127.0.0.1:9464"   # optional: /metrics, /healthz, /readyz (crate::ops)
//! metrics_allow_non_loopback = false  # a non-loopback metrics_listen is refused unless true
//!
//! [expiry_warnings]              # all optional: warn this many days ahead
//! certificate_days = 30          # TLS, signing and CA certificates
//! directory_days = 30
//! crl_days = 2                   # the CRL's next update
//!
//! [delivery]                     # all optional
//! expiry_secs = 432000           # 5 days, then an undelivered report
//! retry_initial_ms = 500
//! retry_max_ms = 300000
//! per_peer_concurrency = 16
//! per_peer_connections = 8       # incoming connections one peer org may hold open at once
//! max_handshakes = 64            # incoming handshakes in progress at once; more are refused
//! max_message_bytes = 8388608
//!
//! [storage]                      # all optional
//! min_free_bytes = 67108864      # 64 MiB: below this much free space on the data directory's
//!                                # disk, new submissions and incoming envelopes are refused
//!                                # (peers get no receipt and retry later); 0 turns it off
//! stall_timeout_ms = 30000       # an apply or fsync of the store taking longer than this
//!                                # stops the gateway (exit status 74) instead of hanging
//!
//! [[recognise]]                  # another prefecture whose CA our CA cross-signed
//! prefecture = "lg:140007"       # its own org (Kanagawa)
//! cross = "kanagawa-cross.pem"   # `tsunagi certs cross-sign` by our CA
//! crl = "kanagawa-crl.pem"       # its CA's CRL; reloaded when it changes
//! directory = "kanagawa-directory.cose"  # signed by its CA; reloaded when it changes
//!
//! [[policy]]                     # overrides of the default redaction table
//! doc_type = "support_plan"
//! role = "clinic"
//! profile = "support_party"
//! reason = "optional; required when widening item-level access"
//! ```
//!
//! Relative paths are relative to the file's directory. Unknown keys are refused, and every
//! error names the file and the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tsunagi_protocol::document::DocType;
use tsunagi_protocol::profile::{PolicyTable, Profile};
use tsunagi_protocol::{OrgId, Role};

use crate::expiry::ExpiryWarnings;
use crate::files::{fail, read_text, CliResult, Fail};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Delivery settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// Seconds after which an undelivered envelope expires (default 5 days).
    pub expiry_secs: u64,
    /// First retry delay.
    pub retry_initial_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// Envelopes in flight to one peer at once.
    pub per_peer_concurrency: usize,
    /// Incoming connections one peer org may hold open at once (a gateway keeps one per peer;
    /// one past the cap is closed at once, and the peer retries).
    pub per_peer_connections: usize,
    /// Incoming handshakes in progress at once, from anyone (see
    /// [`crate::transport::TransportConfig::max_handshakes`]).
    pub max_handshakes: usize,
    /// Largest envelope accepted or sent.
    pub max_message_bytes: usize,
    /// How long a QUIC + TLS handshake may take.
    pub connect_timeout_ms: u64,
    /// How long one delivery attempt (connect, send, receipt) may take.
    pub attempt_timeout_ms: u64,
    /// A connection silent this long is considered dead (keep-alives run at a third of it).
    pub idle_timeout_ms: u64,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            expiry_secs: 5 * 86_400,
            retry_initial_ms: 500,
            retry_max_ms: 300_000,
            per_peer_concurrency: 16,
            per_peer_connections: 8,
            max_handshakes: 64,
            max_message_bytes: tsunagi_protocol::cbor::DEFAULT_MAX_BYTES,
            connect_timeout_ms: 5_000,
            attempt_timeout_ms: 20_000,
            idle_timeout_ms: 10_000,
        }
    }
}

/// Storage settings (`[storage]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Below this many free bytes on the data directory's file system, new work (submissions,
    /// incoming envelopes) is refused until space is freed (default 64 MiB; 0: never).
    pub min_free_bytes: u64,
    /// An apply or a flush of the store that takes longer than this stops the gateway instead
    /// of leaving every writer waiting (default 30 s).
    pub stall_timeout_ms: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            min_free_bytes: 64 * 1024 * 1024,
            stall_timeout_ms: 30_000,
        }
    }
}

/// One override of the redaction policy table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverride {
    /// Document type.
    pub doc_type: DocType,
    /// Recipient role.
    pub role: Role,
    /// Profile name.
    pub profile: String,
    /// Why (required when widening item-level access).
    #[serde(default)]
    pub reason: Option<String>,
}

fn default_retention_years() -> u32 {
    5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    org: OrgId,
    listen: SocketAddr,
    credentials: PathBuf,
    ca: PathBuf,
    crl: PathBuf,
    directory: PathBuf,
    data_dir: PathBuf,
    master_key: PathBuf,
    #[serde(default)]
    log_format: LogFormat,
    #[serde(default = "default_retention_years")]
    retention_years: u32,
    #[serde(default)]
    contact: Option<String>,
    #[serde(default)]
    metrics_listen: Option<SocketAddr>,
    #[serde(default)]
    metrics_allow_non_loopback: bool,
    #[serde(default)]
    expiry_warnings: ExpiryWarnings,
    #[serde(default)]
    delivery: Delivery,
    #[serde(default)]
    storage: Storage,
    #[serde(default)]
    policy: Vec<PolicyOverride>,
    #[serde(default)]
    recognise: Vec<Recognise>,
}

/// Another prefecture recognised by cross-certificate: its CA vouches for the orgs of that
/// prefecture, whose signed directory joins ours (see `tsunagi_certs::cross`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recognise {
    /// The prefecture's own org (`lg:PP000C`).
    pub prefecture: OrgId,
    /// The cross-certificate our CA issued for its CA (PEM).
    pub cross: PathBuf,
    /// Its CA's CRL (PEM).
    pub crl: PathBuf,
    /// Its directory, signed by its CA.
    pub directory: PathBuf,
}

/// A loaded, checked configuration with absolute paths.
#[derive(Debug, Clone)]
pub struct Config {
    /// This gateway's org.
    pub org: OrgId,
    /// QUIC listen address.
    pub listen: SocketAddr,
    /// Credentials directory.
    pub credentials: PathBuf,
    /// Federation CA certificate.
    pub ca: PathBuf,
    /// CRL file.
    pub crl: PathBuf,
    /// Signed directory file.
    pub directory: PathBuf,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Master key file.
    pub master_key: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Years after the end of support after which a case is purged (R8; default 5).
    pub retention_years: u32,
    /// Whom the person contacts about the records (printed on the disclosure page, R9), e.g.
    /// the section and telephone number; `None` prints the organisation's name.
    pub contact: Option<String>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz` ([`crate::ops`]); `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// How many days ahead to warn of expiring credentials, CRL and directory.
    pub expiry_warnings: ExpiryWarnings,
    /// Delivery settings.
    pub delivery: Delivery,
    /// Storage settings.
    pub storage: Storage,
    /// The policy table with the overrides applied.
    pub policy: PolicyTable,
    /// The overrides as written (for the audit log).
    pub policy_overrides: Vec<PolicyOverride>,
    /// Other prefectures recognised by cross-certificate, with absolute paths.
    pub recognise: Vec<Recognise>,
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> CliResult<Config> {
        let text = read_text(path)?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` names the file in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> CliResult<Config> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            // toml's message says what is wrong; name the key from the line it points at.
            let msg = e.message().trim_end().replace('\n', " ");
            let key = e
                .span()
                .filter(|_| !msg.contains("field `"))
                .and_then(|span| {
                    let line_start = text[..span.start.min(text.len())]
                        .rfind('\n')
                        .map_or(0, |i| i + 1);
                    let line = text[line_start..].lines().next()?;
                    line.split_once('=').map(|(k, _)| k.trim().to_owned())
                })
                .filter(|k| !k.is_empty())
                .map(|k| format!("{k}: "))
                .unwrap_or_default();
            Fail(format!("{}: {key}{msg}", path.display()))
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let abs = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let mut policy = PolicyTable::new();
        for (i, o) in raw.policy.iter().enumerate() {
            let profile: Profile = o
                .profile
                .parse()
                .map_err(|e| fail(format!("{}: policy[{i}].profile", path.display()), e))?;
            policy
                .set(o.doc_type, o.role, profile, o.reason.clone())
                .map_err(|e| fail(format!("{}: policy[{i}]", path.display()), e))?;
        }
        let d = &raw.delivery;
        if d.per_peer_concurrency == 0
            || d.per_peer_connections == 0
            || d.max_handshakes == 0
            || d.retry_initial_ms == 0
            || d.retry_max_ms < d.retry_initial_ms
            || d.max_message_bytes < 1024
            || d.connect_timeout_ms == 0
            || d.attempt_timeout_ms < d.connect_timeout_ms
            || d.idle_timeout_ms < 300
        {
            return Err(Fail(format!(
                "{}: [delivery]: per_peer_concurrency, per_peer_connections, max_handshakes, retry_initial_ms and connect_timeout_ms must be positive, retry_max_ms at least retry_initial_ms, attempt_timeout_ms at least connect_timeout_ms, idle_timeout_ms at least 300, max_message_bytes at least 1024",
                path.display()
            )));
        }
        if raw.storage.stall_timeout_ms < 100 {
            return Err(Fail(format!(
                "{}: [storage]: stall_timeout_ms must be at least 100",
                path.display()
            )));
        }
        if let Some(addr) = raw.metrics_listen {
            check_metrics_listen(addr, raw.metrics_allow_non_loopback)
                .map_err(|e| Fail(format!("{}: metrics_listen: {e}", path.display())))?;
        }
        Ok(Config {
            org: raw.org,
            listen: raw.listen,
            credentials: abs(raw.credentials),
            ca: abs(raw.ca),
            crl: abs(raw.crl),
            directory: abs(raw.directory),
            data_dir: abs(raw.data_dir),
            master_key: abs(raw.master_key),
            log_format: raw.log_format,
            retention_years: raw.retention_years,
            contact: raw.contact.filter(|c| !c.trim().is_empty()),
            metrics_listen: raw.metrics_listen,
            expiry_warnings: raw.expiry_warnings,
            delivery: raw.delivery,
            storage: raw.storage,
            policy,
            policy_overrides: raw.policy,
            recognise: raw
                .recognise
                .into_iter()
                .map(|r| Recognise {
                    prefecture: r.prefecture,
                    cross: abs(r.cross),
                    crl: abs(r.crl),
                    directory: abs(r.directory),
                })
                .collect(),
        })
    }

    /// Refuses directories another account could tamper with: the data directory (created 0700
    /// when missing, made 0700 when it allows more; it holds the control socket), the credentials directory and the directory
    /// holding the master key must belong to this account and not be writable by group or others
    /// ([`tsunagi_certs::local::check_private_dir`]).
    pub fn check_private_dirs(&self) -> CliResult {
        crate::files::create_data_dir(&self.data_dir)?;
        let key_dir = self
            .master_key
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        for dir in [&self.data_dir, &self.credentials, key_dir] {
            tsunagi_certs::local::check_private_dir(dir).map_err(|e| Fail(e.0))?;
        }
        Ok(())
    }

    /// The local control socket: `data_dir/control.sock`.
    pub fn control_socket(&self) -> PathBuf {
        self.data_dir.join("control.sock")
    }
}

impl Config {
    /// Where a master-key rotation writes the new key before it takes its place
    /// (`master_key` + `.new`; see [`crate::backup`]).
    pub fn master_key_new(&self) -> PathBuf {
        let mut new = self.master_key.as_os_str().to_owned();
        new.push(".new");
        PathBuf::from(new)
    }

    /// Refuses to start a gateway while a master-key rotation is unfinished (`master.key.new`
    /// exists; see [`crate::backup`]).
    pub fn check_no_interrupted_rotation(&self) -> Result<(), String> {
        let new = self.master_key_new();
        if new.exists() {
            return Err(format!(
                "{} exists: a master-key rotation was interrupted; run `tsunagi master-key rotate` again to finish it before starting the gateway",
                new.display()
            ));
        }
        Ok(())
    }
}

/// Refuses a metrics address that is not loopback unless `allow` (see the module docs).
pub fn check_metrics_listen(addr: SocketAddr, allow: bool) -> Result<(), String> {
    if addr.ip().is_loopback() || allow {
        Ok(())
    } else {
        Err(format!(
            "{addr} is not a loopback address: the metrics name the peer orgs and the volumes exchanged; listen on 127.0.0.1 (and scrape through a local agent or proxy), or set metrics_allow_non_loopback = true"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
org = "lg:131059"
listen = "127.0.0.1:7402"
credentials = "creds"
ca = "ca.pem"
crl = "crl.pem"
directory = "directory.cose"
data_dir = "data"
master_key = "master.key"
"#;

    #[test]
    fn metrics_listen_is_loopback_unless_allowed() {
        check_metrics_listen("127.0.0.1:9464".parse().unwrap(), false).unwrap();
        check_metrics_listen("[::1]:9464".parse().unwrap(), false).unwrap();
        let e = check_metrics_listen("0.0.0.0:9464".parse().unwrap(), false).unwrap_err();
        assert!(e.contains("metrics_allow_non_loopback"), "{e}");
        check_metrics_listen("0.0.0.0:9464".parse().unwrap(), true).unwrap();
    }

    #[test]
    fn parses_and_anchors_paths() {
        let c = Config::parse(GOOD, Path::new("/etc/tsunagi/gateway.toml")).unwrap();
        assert_eq!(c.org.as_str(), "lg:131059");
        assert_eq!(c.data_dir, PathBuf::from("/etc/tsunagi/data"));
        assert_eq!(c.delivery.expiry_secs, 432_000);
        assert_eq!(c.delivery.per_peer_connections, 8);
        assert_eq!(c.storage.min_free_bytes, 64 << 20);
        let c = Config::parse(
            &format!("{GOOD}[delivery]\nper_peer_connections = 2\n"),
            Path::new("/etc/tsunagi/gateway.toml"),
        )
        .unwrap();
        assert_eq!(c.delivery.per_peer_connections, 2);
        let c = Config::parse(
            &format!("{GOOD}[storage]\nmin_free_bytes = 0\nstall_timeout_ms = 500\n"),
            Path::new("/etc/tsunagi/gateway.toml"),
        )
        .unwrap();
        assert_eq!(
            (c.storage.min_free_bytes, c.storage.stall_timeout_ms),
            (0, 500)
        );
        assert_eq!(
            c.control_socket(),
            PathBuf::from("/etc/tsunagi/data/control.sock")
        );
    }

    #[test]
    fn errors_name_the_key() {
        let p = Path::new("gw.toml");
        let e = Config::parse(&GOOD.replace("org = \"lg:131059\"\n", ""), p).unwrap_err();
        assert!(e.0.contains("missing field `org`"), "{e}");
        let e = Config::parse(&GOOD.replace("lg:131059", "lg:131058"), p).unwrap_err();
        assert!(e.0.contains("131058 fails its check digit"), "{e}");
        let e = Config::parse(&format!("{GOOD}colour = 1\n"), p).unwrap_err();
        assert!(e.0.contains("unknown field `colour`"), "{e}");
        let e =
            Config::parse(&format!("{GOOD}[delivery]\nper_peer_connections = 0\n"), p).unwrap_err();
        assert!(e.0.contains("per_peer_connections"), "{e}");
        let e = Config::parse(&format!("{GOOD}[delivery]\nmax_handshakes = 0\n"), p).unwrap_err();
        assert!(e.0.contains("max_handshakes"), "{e}");
        let c = Config::parse(&format!("{GOOD}[delivery]\nmax_handshakes = 16\n"), p).unwrap();
        assert_eq!(c.delivery.max_handshakes, 16);
        let e = Config::parse(&GOOD.replace("127.0.0.1:7402", "nowhere"), p).unwrap_err();
        assert!(
            e.0.starts_with("gw.toml: ") && e.0.contains("listen"),
            "{e}"
        );
        let e = Config::parse(
            &format!("{GOOD}[[policy]]\ndoc_type = \"needs_assessment\"\nrole = \"npo\"\nprofile = \"full\"\n"),
            p,
        )
        .unwrap_err();
        assert!(e.0.contains("needs a written reason"), "{e}");
        assert!(!e.0.contains('\n'));
    }
}
