//! End-to-end tests of the `tsunagi` binary, driven the way a user drives it.
//!
//! Each test runs the real executable in a fresh temporary directory (removed afterwards) and
//! checks what a user would see: stdout JSON, exit status, and for mistakes exactly one
//! `error: …` line on stderr that names what was wrong, never a panic.
//!
//! The interop test runs `scripts/interop/check_cose.py` with `<repo>/.venv/bin/python`; create
//! it with `scripts/setup-test-deps`, or set `TSUNAGI_SKIP_PYTHON=1` to skip that test.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

const HOSPITAL: &str = "mi:1310000017";
const BUNKYO: &str = "lg:131059";
const TOKYO: &str = "lg:130001";
const NPO: &str = "ot:npo-komorebi";
const POLICE: &str = "ot:mpd";

/// The author of each case-0007 fixture (a consent's author is its controller).
const AUTHORS: [(&str, &str); 14] = [
    ("admission_material.json", TOKYO),
    ("delegation.json", BUNKYO),
    ("consent.json", BUNKYO),
    ("consent_v2_relocation.json", BUNKYO),
    ("consent_v3_withdrawn.json", BUNKYO),
    ("meeting_record.json", BUNKYO),
    ("needs_assessment.json", HOSPITAL),
    ("opinion_letter.json", HOSPITAL),
    ("readmission.json", HOSPITAL),
    ("residence_change.json", BUNKYO),
    ("support_end.json", BUNKYO),
    ("support_plan.json", BUNKYO),
    ("support_plan_v2.json", BUNKYO),
    ("support_plan_v3_extended.json", BUNKYO),
];

/// The 26 item elements of a needs assessment (Form 5), in element order.
const ASSESSMENT_ITEMS: [&str; 26] = [
    "A1", "A2", "A3", "A4", "A5", "B1", "B2", "B3", "B4", "B5", "B6", "B7", "C1", "C2", "D1", "D2",
    "D3", "D4", "E1", "E2", "F1", "F2", "F3", "F4", "F5", "other",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway crate sits in the workspace")
        .to_path_buf()
}

/// A file under `fixtures/`, as an absolute path argument.
fn fixture(name: &str) -> String {
    path_arg(&repo_root().join("fixtures").join(name))
}

fn case(name: &str) -> String {
    fixture(&format!("case-0007/{name}"))
}

fn path_arg(p: &Path) -> String {
    p.to_str().expect("test paths are UTF-8").to_owned()
}

/// A fresh working directory for one test, removed when the test ends.
struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tsunagi-cli-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the test directory");
        Sandbox { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn read(&self, rel: &str) -> Vec<u8> {
        fs::read(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) {
        fs::write(self.path(rel), bytes).unwrap_or_else(|e| panic!("write {rel}: {e}"));
    }

    fn chmod(&self, rel: &str, mode: u32) {
        fs::set_permissions(self.path(rel), fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {rel}: {e}"));
    }

    /// Runs `tsunagi ARGS…` in the sandbox.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tsunagi"))
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("start tsunagi")
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`tsunagi {}` failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// Runs a command that must succeed and print JSON.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!("`tsunagi {}` printed no JSON ({e}):\n{out}", args.join(" "))
        })
    }

    /// Runs a command that must fail the way a user's mistake does: exit status 1, exactly one
    /// line on stderr starting with `error: `, no panic. Returns that line.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let cmd = args.join(" ");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "`tsunagi {cmd}` panicked:\n{stderr}"
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "`tsunagi {cmd}` should fail with status 1 ({}); stderr:\n{stderr}",
            out.status
        );
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("error: "),
            "`tsunagi {cmd}` should print one `error: ` line, printed:\n{stderr}"
        );
        lines[0].to_owned()
    }

    /// `certs init-ca --dir CA` and credentials (host `localhost`) for each `(org, dir)`.
    fn federation(&self, members: &[(&str, &str)]) {
        self.ok(&["certs", "init-ca", "--dir", "CA"]);
        for (org, dir) in members {
            self.ok(&[
                "certs",
                "issue",
                "--ca",
                "CA",
                "--org",
                org,
                "--host",
                "localhost",
                "--out",
                dir,
            ]);
        }
    }

    /// `doc sign` of a case-0007 fixture.
    fn sign(&self, creds: &str, fixture: &str, out: &str) {
        self.ok(&[
            "doc",
            "sign",
            "--creds",
            creds,
            "--input",
            &case(fixture),
            "--output",
            out,
        ]);
    }

    /// `doc verify` against the sandbox CA, its CRL and the sample directory.
    fn verify(&self, doc: &str) -> Value {
        self.json(&[
            "doc",
            "verify",
            "--ca",
            "CA/ca.pem",
            "--crl",
            "CA/crl.pem",
            "--directory",
            &fixture("directory.toml"),
            doc,
        ])
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

/// `v` without object members that are null (an optional field left out and one given as
/// null mean the same).
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k.clone(), without_nulls(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} occurs once");
    text.replacen(from, to, 1)
}

fn position(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{needle:?} not found"))
}

#[test]
fn readme_session_gives_the_npo_form6_only_and_the_full_document_verifies() {
    let sb = Sandbox::new("readme");
    sb.federation(&[(HOSPITAL, "HOSP"), (NPO, "NPO")]);
    sb.sign("HOSP", "needs_assessment.json", "a.doc");
    let out = sb.ok(&[
        "doc",
        "redact",
        "--for",
        NPO,
        "--directory",
        &fixture("directory.toml"),
        "a.doc",
        "npo.doc",
    ]);
    assert!(out.contains("profile form6"), "{out}");

    let v = sb.verify("npo.doc");
    assert_eq!(v["verified"], true);
    assert_eq!(v["author"], HOSPITAL);
    assert_eq!(v["document_type"], "needs_assessment");
    let disclosed = &v["disclosed"];
    for kept in ["summary", "person"] {
        assert!(disclosed.get(kept).is_some(), "{kept} is disclosed: {v}");
    }
    for gone in ["items", "opinion"] {
        assert!(disclosed.get(gone).is_none(), "{gone} is withheld: {v}");
    }
    let mut expected: Vec<String> = ASSESSMENT_ITEMS
        .iter()
        .map(|i| format!("items.{i}"))
        .collect();
    expected.push("opinion".into());
    assert_eq!(strings(&v["withheld"]), expected);

    let full = sb.verify("a.doc");
    assert_eq!(full["verified"], true);
    assert_eq!(strings(&full["withheld"]), Vec::<String>::new());
    assert_eq!(full["disclosed"]["items"]["F1"]["staff"], 2);
}

#[test]
fn every_fixture_signs_and_verifies_as_its_author_unchanged() {
    let sb = Sandbox::new("fixtures");
    sb.federation(&[(HOSPITAL, "HOSP"), (BUNKYO, "BUNKYO"), (TOKYO, "TOKYO")]);
    let mut names: Vec<String> = fs::read_dir(repo_root().join("fixtures/case-0007"))
        .expect("fixtures/case-0007")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for name in &names {
        let (_, author) = AUTHORS
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("fixture {name} has no author in AUTHORS: add it"));
        let creds = match *author {
            HOSPITAL => "HOSP",
            TOKYO => "TOKYO",
            _ => "BUNKYO",
        };
        let doc = format!("{name}.doc");
        sb.sign(creds, name, &doc);
        let v = sb.verify(&doc);
        let input: Value = serde_json::from_slice(&fs::read(case(name)).unwrap()).unwrap();
        assert_eq!(v["verified"], true, "{name}");
        assert_eq!(v["author"], *author, "{name}");
        assert_eq!(v["document_type"], input["document_type"], "{name}");
        assert_eq!(v["subject"], input["subject"], "{name}");
        assert_eq!(strings(&v["withheld"]), Vec::<String>::new(), "{name}");
        assert_eq!(
            without_nulls(&v["disclosed"]),
            without_nulls(&input),
            "{name}: verify shows what was signed"
        );
    }
}

#[test]
fn profiles_apply_to_their_own_document_type_and_police_get_nothing() {
    let sb = Sandbox::new("profiles");
    sb.federation(&[(HOSPITAL, "HOSP"), (BUNKYO, "BUNKYO")]);
    sb.sign("HOSP", "needs_assessment.json", "a.doc");
    sb.sign("BUNKYO", "support_plan.json", "plan.doc");

    sb.ok(&["doc", "redact", "--profile", "form6", "a.doc", "f6.doc"]);
    let v = sb.verify("f6.doc");
    assert!(v["disclosed"].get("summary").is_some(), "{v}");
    assert!(v["disclosed"].get("items").is_none(), "{v}");
    assert!(strings(&v["withheld"]).contains(&"opinion".to_owned()));

    sb.ok(&[
        "doc",
        "redact",
        "--profile",
        "support_party",
        "plan.doc",
        "sp.doc",
    ]);
    let v = sb.verify("sp.doc");
    assert_eq!(v["document_type"], "support_plan");
    assert!(strings(&v["withheld"]).contains(&"diagnosis".to_owned()));
    assert!(v["disclosed"].get("diagnosis").is_none(), "{v}");
    assert!(v["disclosed"].get("support_rows").is_some(), "{v}");

    let e = sb.fails(&["doc", "redact", "--profile", "form6", "plan.doc", "x.doc"]);
    for word in ["--profile", "form6", "needs_assessment", "support_plan"] {
        assert!(e.contains(word), "{word}: {e}");
    }
    let e = sb.fails(&[
        "doc",
        "redact",
        "--profile",
        "sideways",
        "plan.doc",
        "x.doc",
    ]);
    assert!(e.contains("\"sideways\""), "{e}");
    assert!(
        e.contains("full, form6, support_party, notice or none"),
        "{e}"
    );

    for doc in ["a.doc", "plan.doc"] {
        let e = sb.fails(&[
            "doc",
            "redact",
            "--for",
            POLICE,
            "--directory",
            &fixture("directory.toml"),
            doc,
            "x.doc",
        ]);
        assert!(e.contains(POLICE) && e.contains("police"), "{e}");
        assert!(e.contains("profile none"), "{e}");
    }
    assert!(
        !sb.path("x.doc").exists(),
        "a refused redaction writes nothing"
    );
}

#[test]
fn form_mistakes_name_the_file_and_the_field() {
    let sb = Sandbox::new("forms");
    sb.federation(&[(HOSPITAL, "HOSP"), (BUNKYO, "BUNKYO")]);
    let sign = |creds: &str, input: &str| {
        sb.fails(&[
            "doc", "sign", "--creds", creds, "--input", input, "--output", "x.doc",
        ])
    };

    let e = sign("HOSP", "missing.json");
    assert!(e.contains("cannot read missing.json"), "{e}");

    sb.write("broken.json", "{\"document_type\": \"needs_assessment\",\n");
    let e = sign("HOSP", "broken.json");
    assert!(e.contains("broken.json is not valid JSON"), "{e}");

    let assessment = fs::read_to_string(case("needs_assessment.json")).unwrap();
    sb.write(
        "rating3.json",
        replace_once(
            &assessment,
            r#""F1": { "self": 1, "staff": 2"#,
            r#""F1": { "self": 1, "staff": 3"#,
        ),
    );
    let e = sign("HOSP", "rating3.json");
    assert!(e.contains("rating3.json"), "{e}");
    assert!(
        e.contains("items.F1.staff: 3 is not a rating (0, 1, 2, 9)"),
        "{e}"
    );

    let letter = fs::read_to_string(case("opinion_letter.json")).unwrap();
    sb.write(
        "municipality.json",
        replace_once(
            &letter,
            r#""municipality": "131059""#,
            r#""municipality": "131058""#,
        ),
    );
    let e = sign("HOSP", "municipality.json");
    assert!(e.contains("municipality.json"), "{e}");
    assert!(
        e.contains("person.municipality: 131058 fails its check digit"),
        "{e}"
    );

    let e = sign("BUNKYO", &case("needs_assessment.json"));
    assert!(e.contains("needs_assessment.json"), "{e}");
    assert!(
        e.contains(&format!("the form's author is {HOSPITAL}")),
        "{e}"
    );
    assert!(e.contains(&format!("credentials are for {BUNKYO}")), "{e}");

    assert!(!sb.path("x.doc").exists(), "a failed sign writes nothing");
}

#[test]
fn a_wrong_signing_key_is_refused() {
    let sb = Sandbox::new("keys");
    sb.federation(&[(HOSPITAL, "HOSP")]);
    for (dir, key, why) in [
        (
            "TLSKEY",
            sb.read("HOSP/tls.key"),
            "does not belong to certificate",
        ),
        (
            "GARBAGE",
            b"not a key\n".to_vec(),
            "no usable PEM PRIVATE KEY",
        ),
    ] {
        fs::create_dir(sb.path(dir)).unwrap();
        for f in ["ca.pem", "tls.pem", "tls.key", "sign.pem"] {
            fs::copy(
                sb.path(&format!("HOSP/{f}")),
                sb.path(&format!("{dir}/{f}")),
            )
            .unwrap();
        }
        sb.write(&format!("{dir}/sign.key"), key);
        sb.chmod(&format!("{dir}/sign.key"), 0o600);
        let e = sb.fails(&[
            "doc",
            "sign",
            "--creds",
            dir,
            "--input",
            &case("needs_assessment.json"),
            "--output",
            "x.doc",
        ]);
        assert!(e.contains(&format!("{dir}/sign.key")), "{e}");
        assert!(e.contains(why), "{e}");
    }
    assert!(!sb.path("x.doc").exists());
}

#[test]
fn altered_documents_and_foreign_cas_fail_verification_naming_the_check() {
    let sb = Sandbox::new("tamper");
    sb.federation(&[(HOSPITAL, "HOSP")]);
    sb.sign("HOSP", "needs_assessment.json", "a.doc");
    let good = sb.read("a.doc");
    let verify = |doc: &str| {
        sb.fails(&[
            "doc",
            "verify",
            "--ca",
            "CA/ca.pem",
            "--crl",
            "CA/crl.pem",
            doc,
        ])
    };

    // One flipped byte in the middle of the file (it lands in an item).
    let mut b = good.clone();
    let middle = b.len() / 2;
    b[middle] ^= 0x01;
    sb.write("middle.doc", &b);
    let e = verify("middle.doc");
    let reason = e
        .strip_prefix("error: middle.doc is damaged or not a tsunagi document: ")
        .or_else(|| e.strip_prefix("error: middle.doc failed verification: "));
    assert!(reason.is_some_and(|r| !r.is_empty()), "{e}");

    // A disclosed value changed into other valid text: its digest no longer matches.
    let mut b = good.clone();
    let at = position(&b, "山田 太郎".as_bytes());
    b.splice(at..at + "山田 太郎".len(), "山田 太朗".bytes());
    sb.write("value.doc", &b);
    let e = verify("value.doc");
    assert!(e.contains("value.doc failed verification"), "{e}");
    assert!(
        e.contains(r#"element "physician" does not match its signed digest"#),
        "{e}"
    );

    // A flipped bit in the author's signature (the 64 bytes just before the "items" key).
    let mut b = good.clone();
    let items_key = position(&b, b"\x65items");
    b[items_key - 40] ^= 0x01;
    sb.write("signature.doc", &b);
    let e = verify("signature.doc");
    assert!(e.contains("signature.doc failed verification"), "{e}");
    assert!(e.contains("signature does not verify"), "{e}");

    // Another federation's CA, and a CRL that is not from the given CA.
    sb.ok(&["certs", "init-ca", "--dir", "OTHER"]);
    let e = sb.fails(&["doc", "verify", "--ca", "OTHER/ca.pem", "a.doc"]);
    assert!(e.contains("a.doc failed verification"), "{e}");
    assert!(e.contains("not the federation CA"), "{e}");
    let e = sb.fails(&[
        "doc",
        "verify",
        "--ca",
        "CA/ca.pem",
        "--crl",
        "OTHER/crl.pem",
        "a.doc",
    ]);
    assert!(
        e.contains("OTHER/crl.pem is not from the federation CA"),
        "{e}"
    );

    let e = sb.fails(&["doc", "inspect", "CA/ca.pem"]);
    assert!(
        e.contains("CA/ca.pem is damaged or not a tsunagi document"),
        "{e}"
    );
}

#[test]
fn certs_refuse_bad_org_codes_and_overwriting_a_ca() {
    let sb = Sandbox::new("certs-errors");
    sb.federation(&[]);
    let e = sb.fails(&[
        "certs",
        "issue",
        "--ca",
        "CA",
        "--org",
        "lg:131058",
        "--host",
        "localhost",
        "--out",
        "BAD",
    ]);
    assert!(e.contains("--org") && e.contains("131058"), "{e}");
    assert!(e.contains("fails its check digit"), "{e}");
    assert!(!sb.path("BAD").exists(), "nothing is issued");

    let ca = sb.read("CA/ca.pem");
    let key = sb.read("CA/ca.key");
    let e = sb.fails(&["certs", "init-ca", "--dir", "CA"]);
    assert!(e.contains("already exists in CA"), "{e}");
    assert_eq!(sb.read("CA/ca.pem"), ca, "the old CA is kept");
    assert_eq!(sb.read("CA/ca.key"), key, "the old CA key is kept");
}

#[test]
fn a_revoked_signer_fails_verification_and_show_reports_it() {
    let sb = Sandbox::new("revoke");
    sb.federation(&[(HOSPITAL, "HOSP")]);
    sb.sign("HOSP", "needs_assessment.json", "a.doc");
    assert_eq!(sb.verify("a.doc")["verified"], true);

    sb.ok(&["certs", "revoke", "--ca", "CA", "--cert", "HOSP/sign.pem"]);
    let e = sb.fails(&[
        "doc",
        "verify",
        "--ca",
        "CA/ca.pem",
        "--crl",
        "CA/crl.pem",
        "a.doc",
    ]);
    assert!(e.contains("a.doc failed verification"), "{e}");
    assert!(e.contains("revoked"), "{e}");

    let show = |cert: &str| sb.json(&["certs", "show", cert, "--crl", "CA/crl.pem"]);
    let sign = show("HOSP/sign.pem");
    assert_eq!(sign["revoked"], true);
    assert_eq!(sign["org"], HOSPITAL);
    assert_eq!(sign["kind"], "sign");
    let tls = show("HOSP/tls.pem");
    assert_eq!(tls["revoked"], false, "only the signing certificate");
    assert_eq!(tls["kind"], "tls");
    assert!(tls["role"].is_null(), "no directory given, no role");
    let directory = fixture("directory.toml");
    let with_role = sb.json(&["certs", "show", "HOSP/tls.pem", "--directory", &directory]);
    assert_eq!(with_role["role"], "hospital");
}

#[test]
fn private_keys_are_written_with_mode_0600() {
    let sb = Sandbox::new("modes");
    sb.federation(&[(HOSPITAL, "HOSP")]);
    for key in ["CA/ca.key", "HOSP/tls.key", "HOSP/sign.key"] {
        let mode = fs::metadata(sb.path(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key} has mode {mode:o}");
    }
}

#[test]
fn a_signed_directory_verifies_only_under_its_ca_and_drives_redaction() {
    let sb = Sandbox::new("directory");
    sb.federation(&[(HOSPITAL, "HOSP")]);
    sb.ok(&[
        "directory",
        "sign",
        "--ca",
        "CA",
        &fixture("directory.toml"),
        "--out",
        "dir.cose",
    ]);
    let d = sb.json(&["directory", "show", "dir.cose", "--ca", "CA/ca.pem"]);
    assert_eq!(d["federation"], "tokyo-sample");
    assert_eq!(d["members"].as_array().map(Vec::len), Some(10), "{d}");
    let j = &d["jurisdictions"];
    assert_eq!(j.as_object().map(|m| m.len()), Some(5), "{d}");
    assert_eq!(j["131121"], "lg:131121");
    assert_eq!(j["132063"], "lg:130001");

    sb.ok(&["certs", "init-ca", "--dir", "OTHER"]);
    let e = sb.fails(&["directory", "show", "dir.cose", "--ca", "OTHER/ca.pem"]);
    assert!(e.contains("dir.cose"), "{e}");
    assert!(e.contains("not signed by the federation CA"), "{e}");

    sb.sign("HOSP", "needs_assessment.json", "a.doc");
    let e = sb.fails(&[
        "doc",
        "redact",
        "--for",
        NPO,
        "--directory",
        "dir.cose",
        "a.doc",
        "npo.doc",
    ]);
    assert!(
        e.contains("dir.cose is a signed directory: pass --ca"),
        "{e}"
    );
    sb.ok(&[
        "doc",
        "redact",
        "--for",
        NPO,
        "--directory",
        "dir.cose",
        "--ca",
        "CA/ca.pem",
        "a.doc",
        "npo.doc",
    ]);
    let v = sb.verify("npo.doc");
    assert!(v["disclosed"].get("items").is_none(), "{v}");
    assert_eq!(strings(&v["withheld"]).len(), ASSESSMENT_ITEMS.len() + 1);
}

#[test]
fn inspect_dumps_an_unverified_document() {
    let sb = Sandbox::new("inspect");
    sb.federation(&[(HOSPITAL, "HOSP")]);
    sb.sign("HOSP", "needs_assessment.json", "a.doc");
    let v = sb.json(&["doc", "inspect", "a.doc"]);
    assert_eq!(v["verified"], false);
    assert_eq!(v["manifest"]["docType"], "needs_assessment");
    assert_eq!(v["manifest"]["author"], HOSPITAL);
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 40, "every element of a signed form");
    let f1 = items
        .iter()
        .find(|i| i["element"] == "items.F1")
        .expect("items.F1 is listed");
    assert_eq!(f1["value"]["staff"], 2);
}

/// `<repo>/.venv/bin/python`, or `None` when `TSUNAGI_SKIP_PYTHON=1`.
fn venv_python() -> Option<PathBuf> {
    let python = repo_root().join(".venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    if std::env::var("TSUNAGI_SKIP_PYTHON").as_deref() == Ok("1") {
        eprintln!("TSUNAGI_SKIP_PYTHON=1: skipping the Python interop check");
        return None;
    }
    panic!(
        "{} is missing: run scripts/setup-test-deps to create it (pycose, cbor2), \
         or set TSUNAGI_SKIP_PYTHON=1 to skip the Python interop check",
        python.display()
    );
}

#[test]
fn independent_python_tools_accept_our_documents_and_vectors() {
    let Some(python) = venv_python() else {
        return;
    };
    let script = repo_root().join("scripts/interop/check_cose.py");
    let sb = Sandbox::new("python");
    sb.federation(&[(HOSPITAL, "HOSP"), (NPO, "NPO")]);
    sb.sign("HOSP", "needs_assessment.json", "a.doc");
    sb.ok(&["doc", "redact", "--profile", "form6", "a.doc", "f6.doc"]);
    let check = |args: &[&str]| {
        let out = Command::new(&python)
            .arg(&script)
            .args(args)
            .current_dir(&sb.dir)
            .output()
            .expect("start python");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success(), stdout, out.stderr)
    };
    let ok = |args: &[&str]| {
        let (success, stdout, stderr) = check(args);
        assert!(
            success,
            "check_cose.py {} failed:\n{stdout}{}",
            args.join(" "),
            String::from_utf8_lossy(&stderr)
        );
        stdout
    };

    let out = ok(&["bundle", "a.doc", "HOSP/sign.pem"]);
    assert!(out.contains("40 items of 48 digests verified"), "{out}");
    let out = ok(&["bundle", "f6.doc", "HOSP/sign.pem"]);
    assert!(out.contains("13 items of 48 digests verified"), "{out}");
    let out = ok(&["vectors", &path_arg(&repo_root().join("protocol/vectors"))]);
    assert!(out.contains("ok: envelope.cbor and receipt.cbor"), "{out}");

    // The independent check is not vacuous: an altered value fails there too, and so does a
    // document checked against another org's key.
    let mut b = sb.read("a.doc");
    let at = position(&b, "山田 太郎".as_bytes());
    b.splice(at..at + "山田 太郎".len(), "山田 太朗".bytes());
    sb.write("value.doc", &b);
    let (success, out, _) = check(&["bundle", "value.doc", "HOSP/sign.pem"]);
    assert!(!success && out.contains("physician does not hash"), "{out}");
    let (success, out, _) = check(&["bundle", "a.doc", "NPO/sign.pem"]);
    assert!(!success && out.contains("does not verify"), "{out}");
}

#[test]
fn demo_plays_case_0007_and_keeps_its_files_on_request() {
    let sb = Sandbox::new("demo");
    let out = sb.ok(&["demo"]);
    assert!(out.contains("Every step happened as described."), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("REFUSED") && l.contains("(R6)")),
        "the police send is refused:\n{out}"
    );
    assert!(out.contains("form6"), "{out}");
    assert!(
        out.contains("awaiting_consent") && out.contains("2027-01-15 to 2027-04-30"),
        "{out}"
    );
    assert!(out.contains("the queued plan is cancelled"), "{out}");
    assert!(
        !out.contains("ALTERED") && out.matches(", intact").count() == 10,
        "{out}"
    );

    sb.ok(&["demo", "--keep", "kept"]);
    for f in [
        "kept/ca/ca.pem",
        "kept/directory.cose",
        "kept/lg_131059/gateway.toml",
        "kept/lg_131059/creds/sign.pem",
    ] {
        assert!(sb.path(f).is_file(), "{f} is kept");
    }
    assert!(
        sb.path("kept/lg_131059/data/store").is_dir(),
        "Bunkyo's store is kept"
    );
    let e = sb.fails(&["demo", "--keep", "kept"]);
    assert!(e.contains("--keep kept") && e.contains("not empty"), "{e}");
}

#[test]
fn verify_without_a_crl_says_revocation_was_not_checked_and_exits_3() {
    let sb = Sandbox::new("nocrl");
    sb.federation(&[(HOSPITAL, "HOSP")]);
    sb.sign("HOSP", "needs_assessment.json", "a.doc");
    let full = sb.verify("a.doc");
    assert_eq!(full["verified"], true);
    assert_eq!(full["revocation"], "not revoked");
    // With the CRL but without the directory: the author's role is not checked (status 3).
    let out = sb.run(&[
        "doc",
        "verify",
        "--ca",
        "CA/ca.pem",
        "--crl",
        "CA/crl.pem",
        "a.doc",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--directory"));

    sb.ok(&["certs", "revoke", "--ca", "CA", "--cert", "HOSP/sign.pem"]);
    // Without --crl the revoked signer is not reported as verified.
    let out = sb.run(&["doc", "verify", "--ca", "CA/ca.pem", "a.doc"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["revocation"], "not checked");
    assert_eq!(v["verified"], false);
    assert_eq!(v["signature"], "valid");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("warning: ") && stderr.contains("--crl"),
        "{stderr}"
    );
    // With the CRL: refused as before (status 1).
    let e = sb.fails(&[
        "doc",
        "verify",
        "--ca",
        "CA/ca.pem",
        "--crl",
        "CA/crl.pem",
        "a.doc",
    ]);
    assert!(e.contains("revoked"), "{e}");
    // The exit status is documented.
    let help = sb.ok(&["doc", "verify", "--help"]);
    assert!(
        help.contains("not checked") && help.contains("status is 3"),
        "{help}"
    );
}

#[test]
fn private_keys_other_accounts_can_read_are_refused() {
    let sb = Sandbox::new("keymodes");
    sb.federation(&[(HOSPITAL, "HOSP")]);
    let sign = |out: &str| {
        sb.fails(&[
            "doc",
            "sign",
            "--creds",
            "HOSP",
            "--input",
            &case("needs_assessment.json"),
            "--output",
            out,
        ])
    };
    for key in ["HOSP/sign.key", "HOSP/tls.key"] {
        for mode in [0o644, 0o640, 0o604] {
            sb.chmod(key, mode);
            let e = sign("x.doc");
            assert!(
                e.contains(key)
                    && e.contains(&format!("mode {mode:04o}"))
                    && e.contains(&format!("chmod 600 {key}")),
                "{e}"
            );
        }
        sb.chmod(key, 0o600);
    }
    // The CA key follows the same rule.
    sb.chmod("CA/ca.key", 0o644);
    let e = sb.fails(&["certs", "revoke", "--ca", "CA", "--cert", "HOSP/sign.pem"]);
    assert!(e.contains("CA/ca.key") && e.contains("chmod 600"), "{e}");
    sb.chmod("CA/ca.key", 0o600);
    // A key another account owns (only root can make one).
    if is_root() {
        std::os::unix::fs::chown(sb.path("HOSP/sign.key"), Some(65534), None).unwrap();
        let e = sign("x.doc");
        assert!(
            e.contains("HOSP/sign.key") && e.contains("belongs to uid 65534"),
            "{e}"
        );
        std::os::unix::fs::chown(sb.path("HOSP/sign.key"), Some(0), None).unwrap();
    } else {
        eprintln!("not root: skipping the check of a key owned by another account");
    }
    sb.sign("HOSP", "needs_assessment.json", "a.doc");
    assert!(!sb.path("x.doc").exists());
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A stdout whose reader is already gone: the write end of a pipe whose read end a finished
/// process held.
fn closed_pipe() -> std::process::Stdio {
    let mut reader = Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run true");
    let write_end = reader.stdin.take().expect("a pipe");
    reader.wait().expect("true ends");
    write_end.into()
}

#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let sb = Sandbox::new("pipe");
    sb.federation(&[(HOSPITAL, "HOSP")]);
    sb.sign("HOSP", "needs_assessment.json", "a.doc");
    for args in [
        &["certs", "show", "HOSP/sign.pem"][..],
        &[
            "doc",
            "verify",
            "--ca",
            "CA/ca.pem",
            "--crl",
            "CA/crl.pem",
            "a.doc",
        ],
        &["doc", "inspect", "a.doc"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
            .args(args)
            .current_dir(&sb.dir)
            .stdout(closed_pipe())
            .output()
            .expect("run tsunagi");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.is_empty(),
            "`tsunagi {}` printed:\n{stderr}",
            args.join(" ")
        );
        assert_eq!(out.status.code(), Some(141), "{}", args.join(" "));
    }
}

/// A process started by a test, killed when the test ends (also when it fails).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a listener at `socket` as the account nobody (uid 65534) that counts the bytes each
/// connection sends into `record`, answering like a gateway. `None` when this cannot be done
/// here (not root, no setpriv or python3).
fn impostor(socket: &Path, record: &Path) -> Option<KillOnDrop> {
    let python = Path::new("/usr/bin/python3");
    if !is_root() || !python.exists() || !Path::new("/usr/bin/setpriv").exists() {
        return None;
    }
    const SCRIPT: &str = r#"
import os, socket, sys
path, record = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o777)
s.listen(8)
total = 0
while True:
    c, _ = s.accept()
    c.settimeout(5)
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            total += len(b)
            if b"\n" in b:
                c.sendall(b'{"ok":true,"result":[]}\n')
    except OSError:
        pass
    c.close()
    with open(record, "w") as f:
        f.write(str(total))
"#;
    let child = Command::new("/usr/bin/setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            SCRIPT,
        ])
        .arg(socket)
        .arg(record)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .expect("start the impostor");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !socket.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the impostor did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Some(child)
}

#[test]
fn a_control_socket_of_another_account_gets_nothing() {
    let sb = Sandbox::new("planted");
    sb.write(
        "gateway.toml",
        "org = \"mi:1310000017\"\nlisten = \"127.0.0.1:7402\"\ncredentials = \"creds\"\nca = \"ca.pem\"\ncrl = \"crl.pem\"\ndirectory = \"directory.cose\"\ndata_dir = \"data\"\nmaster_key = \"master.key\"\n",
    );
    // A data directory other accounts may write to (the gateway refuses to start with one; see
    // tests/tests/operator.rs), into which another account planted its own listener.
    fs::create_dir(sb.path("data")).unwrap();
    sb.chmod("data", 0o777);
    let record = sb.path("data/received");
    let Some(planted) = impostor(&sb.path("data/control.sock"), &record) else {
        eprintln!("skipping the planted-socket check: it needs root, /usr/bin/setpriv and /usr/bin/python3 to listen as another account");
        return;
    };
    let letter = case("opinion_letter.json");
    let send = [
        "send",
        "--config",
        "gateway.toml",
        "--to",
        BUNKYO,
        "--purpose",
        "plan_creation",
        &letter,
    ];
    let list = ["outbox", "list", "--config", "gateway.toml"];
    for args in [&send[..], &list[..]] {
        let e = sb.fails(args);
        assert!(
            e.contains("refusing the control socket")
                && e.contains("data/control.sock")
                && e.contains("owned by uid 65534")
                && e.contains("nothing was sent"),
            "{e}"
        );
    }
    // The socket file made ours: the peer's uid still gives it away.
    std::os::unix::fs::chown(sb.path("data/control.sock"), Some(0), Some(0)).unwrap();
    for args in [&send[..], &list[..]] {
        let e = sb.fails(args);
        assert!(
            e.contains("served by uid 65534") && e.contains("nothing was sent"),
            "{e}"
        );
    }
    drop(planted);
    let received = fs::read_to_string(&record).unwrap_or_else(|_| "0".into());
    assert_eq!(received, "0", "the impostor received {received} bytes");
}

#[test]
fn verify_refuses_a_document_whose_author_may_not_write_its_type() {
    // The outpatient clinic signs a needs assessment (Form 5), which only the admitting hospital
    // writes: the signature is valid, the document is not.
    let sb = Sandbox::new("authorrole");
    sb.federation(&[("mi:1310000025", "CLIN")]);
    let mut doc: Value =
        serde_json::from_str(&fs::read_to_string(case("needs_assessment.json")).unwrap()).unwrap();
    doc["author"] = "mi:1310000025".into();
    sb.write("clinic-assessment.json", doc.to_string());
    sb.ok(&[
        "doc",
        "sign",
        "--creds",
        "CLIN",
        "--input",
        "clinic-assessment.json",
        "--output",
        "c.doc",
    ]);
    let e = sb.fails(&[
        "doc",
        "verify",
        "--ca",
        "CA/ca.pem",
        "--crl",
        "CA/crl.pem",
        "--directory",
        &fixture("directory.toml"),
        "c.doc",
    ]);
    assert!(
        e.contains("mi:1310000025 is a clinic, and a clinic may not author a needs_assessment (authors: hospital, authority, prefecture)"),
        "{e}"
    );
}
