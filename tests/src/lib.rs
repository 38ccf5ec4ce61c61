//! A federation of real gateway processes on loopback, for the integration tests in `tests/`.
//!
//! [`Federation::new`] builds a [`LocalFederation`] (the gateway's testkit: a CA, credentials for
//! the chosen members of `fixtures/directory.toml`, free loopback ports, the signed directory, a
//! `gateway.toml` per member) in a fresh temporary directory. [`Federation::start`] runs `tsunagi gateway run` as a child
//! process; [`Federation::kill`] sends it SIGKILL. Requests go through the same control socket
//! the `tsunagi` command uses.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tsunagi_certs::FederationCa;
use tsunagi_gateway::testkit::{LocalFederation, Options};
use tsunagi_protocol::directory::Directory;
use tsunagi_protocol::testkit::CASE_0007;

/// The `tsunagi` binary built beside this test executable (`target/<profile>/tsunagi`).
pub fn tsunagi_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let bin = dir.join("tsunagi");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace` so that the tsunagi binary is built",
        bin.display()
    );
    bin
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A case-0007 fixture's JSON.
pub fn fixture(name: &str) -> Value {
    let (_, text) = CASE_0007
        .iter()
        .find(|(n, _)| *n == name)
        .expect("fixture exists");
    serde_json::from_str(text).expect("fixture is JSON")
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

/// One member of the test federation.
pub struct Member {
    /// Its config file.
    pub config: PathBuf,
    /// Its data directory.
    pub data: PathBuf,
    /// Its running process.
    pub child: Option<Child>,
    /// Its log file.
    pub log: PathBuf,
}

/// A test federation.
pub struct Federation {
    /// Root of everything (removed on drop unless `TSUNAGI_KEEP_TEST_DIRS` is set).
    pub dir: PathBuf,
    /// The CA.
    pub ca: FederationCa,
    /// Members by org id.
    pub members: BTreeMap<String, Member>,
    rt: tokio::runtime::Runtime,
}

impl Federation {
    /// A federation of the fixture members named in `orgs`, with `extra_config` appended to every
    /// gateway.toml (e.g. a `[delivery]` table).
    pub fn new(name: &str, orgs: &[&str], extra_config: &str) -> Federation {
        Self::build(name, orgs, extra_config, false)
    }

    /// As [`Federation::new`], but every certificate is issued for the member's DNS host from
    /// the fixture directory (`hospital.example` …), as `tsunagi certs issue --host` would, and
    /// the directory lists that host beside the loopback address.
    pub fn with_dns_hosts(name: &str, orgs: &[&str], extra_config: &str) -> Federation {
        Self::build(name, orgs, extra_config, true)
    }

    fn build(name: &str, orgs: &[&str], extra_config: &str, dns: bool) -> Federation {
        let dir = std::env::temp_dir().join(format!(
            "tsunagi-it-{name}-{}-{}",
            std::process::id(),
            free_port()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut opts = Options::new("test federation CA");
        opts.orgs = orgs.iter().map(|o| o.to_string()).collect();
        opts.dns_hosts = dns;
        opts.extra_config = extra_config.to_owned();
        let fed = LocalFederation::build(&dir, &opts).expect("a local federation");
        let members = fed
            .members
            .iter()
            .map(|(org, m)| {
                (
                    org.clone(),
                    Member {
                        config: m.config_path.clone(),
                        data: m.data(),
                        child: None,
                        log: m.home.join("gateway.log"),
                    },
                )
            })
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Federation {
            dir,
            ca: fed.ca,
            members,
            rt,
        }
    }

    /// Starts `org`'s gateway and waits until its control socket answers.
    pub fn start(&mut self, org: &str) {
        self.start_with_env(org, &[]);
    }

    /// As [`Federation::start`], with `env` added to the gateway's environment (e.g.
    /// `TSUNAGI_CRASH_AT`).
    pub fn start_with_env(&mut self, org: &str, env: &[(&str, &str)]) {
        let m = self.members.get_mut(org).expect("member");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("log file");
        let child = Command::new(tsunagi_bin())
            .args(["gateway", "run", "--config"])
            .arg(&m.config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn tsunagi gateway run");
        m.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.try_call(org, json!({"op": "status"})).is_ok() {
                return;
            }
            let m = self.members.get_mut(org).expect("member");
            if let Some(status) = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "{org}'s gateway exited with {status}:\n{}",
                    std::fs::read_to_string(&m.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{org}'s gateway did not come up:\n{}",
                self.log(org)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts every member.
    pub fn start_all(&mut self) {
        let orgs: Vec<String> = self.members.keys().cloned().collect();
        for o in orgs {
            self.start(&o);
        }
    }

    /// SIGKILLs `org`'s gateway.
    pub fn kill(&mut self, org: &str) {
        if let Some(mut c) = self.members.get_mut(org).and_then(|m| m.child.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `org`'s QUIC address (from its configuration).
    pub fn address(&self, org: &str) -> std::net::SocketAddr {
        let text = std::fs::read_to_string(&self.members[org].config).expect("config");
        let cfg = tsunagi_gateway::config::Config::parse(&text, &self.members[org].config)
            .expect("valid config");
        cfg.listen
    }

    /// `org`'s credentials directory.
    pub fn creds(&self, org: &str) -> PathBuf {
        self.members[org]
            .config
            .parent()
            .expect("home")
            .join("creds")
    }

    /// The control socket of `org`'s gateway.
    pub fn socket(&self, org: &str) -> PathBuf {
        self.members[org].data.join("control.sock")
    }

    /// `org`'s log so far.
    pub fn log(&self, org: &str) -> String {
        std::fs::read_to_string(&self.members[org].log).unwrap_or_default()
    }

    /// Sends a control request to `org`'s gateway.
    pub fn try_call(&self, org: &str, request: Value) -> Result<Value, String> {
        let sock = self.members[org].data.join("control.sock");
        self.rt
            .block_on(tsunagi_gateway::control::call(&sock, &request))
            .map_err(|e| e.message)
    }

    /// Sends a control request that must succeed.
    pub fn call(&self, org: &str, request: Value) -> Value {
        self.try_call(org, request.clone())
            .unwrap_or_else(|e| panic!("{org}: {request}: {e}\n{}", self.log(org)))
    }

    /// Runs the `tsunagi` command with `args` against `org`'s configuration.
    pub fn cli(&self, org: &str, args: &[&str]) -> std::process::Output {
        Command::new(tsunagi_bin())
            .args(args)
            .env("TSUNAGI_CONFIG", &self.members[org].config)
            .output()
            .expect("run tsunagi")
    }

    /// Records consent `file` (a case-0007 fixture) on Bunkyo's gateway.
    pub fn record_consent(&self, file: &str) -> Value {
        self.call(
            "lg:131059",
            json!({"op": "consent_record", "record": fixture(file)}),
        )
    }

    /// Waits until `check` holds for `org`'s outbox (or panics after `secs`).
    pub fn wait_outbox(
        &self,
        org: &str,
        secs: u64,
        what: &str,
        check: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let list = self.call(org, json!({"op": "outbox_list"}));
            let v = list.as_array().cloned().unwrap_or_default();
            if check(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{org}: timed out waiting for {what}; outbox: {list:#}\n{}",
                self.log(org)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `org`'s inbox.
    pub fn inbox(&self, org: &str) -> Vec<Value> {
        self.call(org, json!({"op": "inbox_list"}))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        let orgs: Vec<String> = self.members.keys().cloned().collect();
        for o in orgs {
            self.kill(&o);
        }
        if std::env::var_os("TSUNAGI_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Every outbox entry is in a final state.
pub fn all_final(v: &[Value]) -> bool {
    v.iter().all(|e| {
        matches!(
            e["state"].as_str(),
            Some("delivered" | "rejected" | "expired" | "cancelled")
        )
    })
}

impl Federation {
    /// Makes `from`'s gateway find `to` at `via` (e.g. a fault proxy in front of `to`): `from`
    /// gets its own copy of the signed directory, listing `to` at `via`, while every other member,
    /// `to` included, keeps the shared one, so `to`'s own entry still matches its `listen`.
    /// Call it before starting `from`.
    pub fn reach_via(&self, from: &str, to: &str, via: std::net::SocketAddr) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let bytes = std::fs::read(self.dir.join("directory.cose")).expect("shared directory");
        let trust = self.ca.trust().expect("CA trust");
        let mut directory = Directory::verify(
            &bytes,
            &trust.federation(),
            tsunagi_protocol::date::Timestamp(now),
            &Directory::limits(),
        )
        .expect("shared directory verifies");
        let to: tsunagi_protocol::org::OrgId = to.parse().expect("org");
        directory
            .members
            .iter_mut()
            .find(|m| m.org == to)
            .expect("a member")
            .address = via.to_string();
        let signed = directory
            .sign(&self.ca.federation_signer().expect("signer"))
            .expect("sign directory");
        let config = &self.members[from].config;
        let own = config.parent().expect("home").join("directory.cose");
        std::fs::write(&own, signed).expect("write directory");
        let text = std::fs::read_to_string(config).expect("config");
        let shared = "directory = \"../directory.cose\"";
        assert!(
            text.contains(shared),
            "{from}'s config names the shared directory"
        );
        std::fs::write(
            config,
            text.replace(shared, "directory = \"directory.cose\""),
        )
        .expect("config");
    }
}
