//! Interop: the `openssl` command line accepts what tsunagi-certs writes.
//!
//! Needs the `openssl` binary on PATH (CI installs it with `apt-get install -y openssl`). Without
//! it this test fails, unless `TSUNAGI_SKIP_OPENSSL=1` is set.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tsunagi_certs::ca::{CA_CERT_FILE, CRL_FILE};
use tsunagi_certs::issue::{SIGN_CERT_FILE, SIGN_KEY_FILE, TLS_CERT_FILE, TLS_KEY_FILE};
use tsunagi_certs::FederationCa;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "tsunagi-certs-it-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether openssl can run; panics with instructions if not (unless skipping is allowed).
fn openssl_available() -> bool {
    match Command::new("openssl").arg("version").output() {
        Ok(out) if out.status.success() => true,
        result => {
            let why = match result {
                Ok(out) => format!(
                    "`openssl version` failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) => format!("could not run `openssl`: {e}"),
            };
            if std::env::var("TSUNAGI_SKIP_OPENSSL").as_deref() == Ok("1") {
                eprintln!("skipping openssl interop test ({why}); TSUNAGI_SKIP_OPENSSL=1 is set");
                false
            } else {
                panic!(
                    "{why}. The openssl interop test needs the openssl binary: install it \
                     (`apt-get install -y openssl`), or set TSUNAGI_SKIP_OPENSSL=1 to skip this test"
                );
            }
        }
    }
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl")
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn openssl_verifies_certificates_and_honours_the_crl() {
    if !openssl_available() {
        return;
    }
    let tmp = TempDir::new("openssl");
    let ca_dir = tmp.0.join("ca");
    let ca = FederationCa::init(&ca_dir, "Tokyo sample federation CA").unwrap();
    let creds = tmp.0.join("bunkyo");
    ca.issue(&"lg:131059".parse().unwrap(), "bunkyo.example", &creds, 30)
        .unwrap();
    let ca_pem = ca_dir.join(CA_CERT_FILE);
    let crl_pem = ca_dir.join(CRL_FILE);
    let tls = creds.join(TLS_CERT_FILE);
    let sign = creds.join(SIGN_CERT_FILE);

    // Both certificates chain to the CA, and the copy of ca.pem in the credentials works too.
    for cert in [&tls, &sign] {
        let out = openssl(&["verify", "-CAfile", s(&ca_pem), s(cert)]);
        assert!(out.status.success(), "{}: {}", cert.display(), show(&out));
        let out = openssl(&["verify", "-CAfile", s(&creds.join(CA_CERT_FILE)), s(cert)]);
        assert!(out.status.success(), "{}: {}", cert.display(), show(&out));
    }
    // The TLS certificate serves both ends of mutual TLS; the signing one serves neither.
    for purpose in ["sslserver", "sslclient"] {
        let out = openssl(&[
            "verify",
            "-purpose",
            purpose,
            "-CAfile",
            s(&ca_pem),
            s(&tls),
        ]);
        assert!(
            out.status.success(),
            "tls.pem for {purpose}: {}",
            show(&out)
        );
        let out = openssl(&[
            "verify",
            "-purpose",
            purpose,
            "-CAfile",
            s(&ca_pem),
            s(&sign),
        ]);
        assert!(
            !out.status.success(),
            "sign.pem must not pass as {purpose}: {}",
            show(&out)
        );
    }
    // openssl sees the org URI SAN and reads the keys.
    let out = openssl(&["x509", "-in", s(&tls), "-noout", "-ext", "subjectAltName"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("URI:urn:tsunagi:org:lg:131059") && text.contains("DNS:bunkyo.example"),
        "{}",
        show(&out)
    );
    for key in [TLS_KEY_FILE, SIGN_KEY_FILE] {
        let out = openssl(&["pkey", "-in", s(&creds.join(key)), "-noout"]);
        assert!(out.status.success(), "{key}: {}", show(&out));
    }

    // Before any revocation, the CRL (number 1, empty) verifies and both certificates pass.
    let out = openssl(&[
        "crl",
        "-in",
        s(&crl_pem),
        "-CAfile",
        s(&ca_pem),
        "-noout",
        "-crlnumber",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("crlNumber=0x01"),
        "{}",
        show(&out)
    );
    for cert in [&tls, &sign] {
        let out = openssl(&[
            "verify",
            "-crl_check",
            "-CAfile",
            s(&ca_pem),
            "-CRLfile",
            s(&crl_pem),
            s(cert),
        ]);
        assert!(out.status.success(), "{}: {}", cert.display(), show(&out));
    }

    // After revoking the signing certificate, openssl refuses it and still accepts the TLS one.
    ca.revoke(&sign).unwrap();
    let out = openssl(&[
        "crl",
        "-in",
        s(&crl_pem),
        "-CAfile",
        s(&ca_pem),
        "-noout",
        "-crlnumber",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("crlNumber=0x02"),
        "{}",
        show(&out)
    );
    let out = openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        s(&ca_pem),
        "-CRLfile",
        s(&crl_pem),
        s(&sign),
    ]);
    assert!(
        !out.status.success(),
        "revoked sign.pem passed: {}",
        show(&out)
    );
    assert!(show(&out).contains("revoked"), "{}", show(&out));
    let out = openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        s(&ca_pem),
        "-CRLfile",
        s(&crl_pem),
        s(&tls),
    ]);
    assert!(out.status.success(), "unrevoked tls.pem: {}", show(&out));
}
