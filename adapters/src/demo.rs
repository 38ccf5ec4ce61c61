//! `tsunagi-adapter console demo`: the demo federation kept running, with a staff console for
//! each organisation.
//!
//! It runs `tsunagi demo --keep DIR` (the `tsunagi` binary beside this one, or on the path), then
//! starts every kept gateway again with `tsunagi gateway run`, makes four demo accounts (one per
//! role, one random password for this run) and serves a console on a free loopback port for
//! each organisation, until Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tsunagi_adapters::console;

struct Gateways(Vec<Child>);

impl Drop for Gateways {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tsunagi_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("tsunagi")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("tsunagi"))
}

fn random_password() -> Result<String, String> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 9];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| "the system random generator failed".to_string())?;
    Ok(format!("demo-{}", hex::encode(b)))
}

/// Plays the demo into `dir` and serves the consoles until Ctrl-C.
pub async fn run(dir: Option<PathBuf>) -> Result<(), String> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("tsunagi-console-demo-{}", std::process::id())),
    };
    let tsunagi = tsunagi_binary();
    let status = Command::new(&tsunagi)
        .arg("demo")
        .arg("--keep")
        .arg(&dir)
        .status()
        .map_err(|e| format!("cannot run {} demo: {e}", tsunagi.display()))?;
    if !status.success() {
        return Err(format!("`tsunagi demo --keep {}` failed", dir.display()));
    }
    let mut configs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path().join("gateway.toml")))
        .filter(|p| p.exists())
        .collect();
    configs.sort();
    let mut gateways = Gateways(Vec::new());
    for c in &configs {
        let log = std::fs::File::create(c.with_file_name("gateway.log"))
            .map_err(|e| format!("{}: {e}", c.display()))?;
        gateways.0.push(
            Command::new(&tsunagi)
                .args(["gateway", "run", "--config"])
                .arg(c)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot start the gateway of {}: {e}", c.display()))?,
        );
    }
    let users = dir.join("console-users.json");
    let password = random_password()?;
    for (id, role) in [
        ("admin", console::accounts::Role::Admin),
        ("approver", console::accounts::Role::Approver),
        ("clerk", console::accounts::Role::Clerk),
        ("viewer", console::accounts::Role::Viewer),
    ] {
        console::accounts::add_user(&users, id, role, &password, None)
            .map_err(|e| e.to_string())?;
    }
    let mut lines = Vec::new();
    for c in &configs {
        let socket = tsunagi_control::socket_of_config(c)?;
        wait_for(&socket).await?;
        let (org, members) = console::members_from_gateway(&socket).await?;
        let name = members
            .iter()
            .find(|(o, _)| *o == org)
            .map(|(_, n)| n.clone())
            .unwrap_or_default();
        let server = console::bind(console::Options {
            listen: "127.0.0.1:0".parse().expect("an address"),
            socket,
            users: users.clone(),
            tls: None,
            idle: console::DEFAULT_IDLE,
            members,
            data_dir: None,
        })
        .await
        .map_err(|e| e.to_string())?;
        lines.push(format!(
            "  {:<18} {:<28} http://{}/",
            org.as_str(),
            name,
            server.local_addr()
        ));
        tokio::spawn(server.run());
    }
    tsunagi_control::outln!(
        "\nThe demo federation keeps running in {}; each organisation's staff console:",
        dir.display()
    );
    for l in &lines {
        tsunagi_control::outln!("{l}");
    }
    tsunagi_control::outln!(
        "Log in as admin, approver, clerk or viewer (one role each) with the password {password}\nCtrl-C stops the gateways and the consoles."
    );
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("cannot wait for Ctrl-C: {e}"))?;
    drop(gateways);
    Ok(())
}

async fn wait_for(socket: &Path) -> Result<(), String> {
    let client = tsunagi_adapters::GatewayClient::new(socket);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.call(serde_json::json!({"op": "status"})).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e.message),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
