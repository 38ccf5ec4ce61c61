//! The systemd unit `packaging/tsunagi-gateway.service`: its sandboxing and restart settings are
//! there, and `systemd-analyze verify` (where installed) finds nothing wrong with it.

use std::collections::BTreeMap;
use std::process::Command;

use tsunagi_tests::{repo, tsunagi_bin};

const UNIT: &str = "packaging/tsunagi-gateway.service";

/// `section → key → values` (a key may repeat; an empty assignment is an empty value).
fn parse(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_owned();
            continue;
        }
        assert!(!line.ends_with('\\'), "line {}: no continuations", n + 1);
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {line}", n + 1));
        assert!(!section.is_empty(), "line {}: outside a section", n + 1);
        out.entry(section.clone())
            .or_default()
            .entry(k.trim().to_owned())
            .or_default()
            .push(v.trim().to_owned());
    }
    out
}

#[test]
fn the_unit_is_sandboxed_and_restarts_on_failure() {
    let path = repo().join(UNIT);
    let text = std::fs::read_to_string(&path).unwrap();
    let unit = parse(&text);
    let service = &unit["Service"];
    let one = |k: &str| -> &str {
        let v = service
            .get(k)
            .unwrap_or_else(|| panic!("{UNIT}: [Service] {k} is missing"));
        assert_eq!(v.len(), 1, "{UNIT}: {k} is set more than once");
        &v[0]
    };
    for (k, v) in [
        ("User", "tsunagi"),
        ("DynamicUser", "no"),
        ("StateDirectory", "tsunagi"),
        ("ReadWritePaths", "/var/lib/tsunagi"),
        ("UMask", "0077"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
        ("CapabilityBoundingSet", ""),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("Restart", "on-failure"),
        (
            "ExecStart",
            "/usr/local/bin/tsunagi gateway run --config /etc/tsunagi/gateway.toml --log-json",
        ),
    ] {
        assert_eq!(one(k), v, "{UNIT}: [Service] {k}");
    }
    assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);
    // The command line it runs is one the binary accepts.
    let help = Command::new(tsunagi_bin())
        .args(["gateway", "run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--config") && help.contains("--log-json"),
        "{help}"
    );

    // systemd's own check, where it is installed: run against a copy whose ExecStart names the
    // binary just built (verify wants an executable there). It exits 0 even on unknown keys and
    // bad values, so any line it prints about the unit is a failure.
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    if !analyze.is_ok_and(|o| o.status.success()) {
        println!("note: systemd-analyze is not installed; skipped `systemd-analyze verify`");
        return;
    }
    let dir = std::env::temp_dir().join(format!("tsunagi-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("tsunagi-gateway.service");
    std::fs::write(
        &copy,
        text.replace(
            "/usr/local/bin/tsunagi",
            &tsunagi_bin().display().to_string(),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let about_unit: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("tsunagi-gateway.service"))
        .collect();
    assert!(
        about_unit.is_empty(),
        "systemd-analyze verify:\n{}",
        about_unit.join("\n")
    );
    if !out.status.success() {
        println!(
            "note: systemd-analyze verify could not run here ({}): {said}",
            out.status
        );
    }
}
