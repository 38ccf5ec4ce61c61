//! The folder adapter: documents dropped into a folder are sent; documents received appear in a
//! folder. The pattern of NHS MESH's client, for offices whose local systems (or staff) can write
//! files but cannot call an API.
//!
//! # Folders
//!
//! One root folder per gateway, holding (created 0700 when missing; an existing one must belong
//! to the adapter's account, and accounts outside its group lose their access to it):
//!
//! | folder | who writes | what |
//! |---|---|---|
//! | `OUT/` | staff, local systems | documents to send, each with a routing sidecar |
//! | `SENT/` | the adapter | sent documents, their sidecars and `NAME.sent.json` (the outbox entry) |
//! | `FAILED/` | the adapter | refused documents, their sidecars and `NAME.error.txt` (what was wrong, what to do) |
//! | `IN/` | the adapter | received documents: `<msgid>.json` (disclosed fields + notice), `<msgid>.doc` (the signed bundle), `<msgid>.undelivered.txt` |
//!
//! # Sending: `OUT/`
//!
//! Drop `NAME.json` (a form, which the gateway signs as its author) or `NAME.doc` (a signed
//! document bundle to forward), **then** `NAME.route.json`:
//!
//! ```json
//! {"to": "lg:131059", "purpose": "plan_creation"}
//! ```
//!
//! The sidecar is the signal that the pair is complete: a document without its sidecar waits.
//! Names starting with `.` or ending in `.tmp` are ignored, so a writer can write under a
//! temporary name and rename. Symbolic links are never followed: a link in `OUT/` is moved as
//! it is (not its target) to `FAILED/` with `NAME.error.txt` saying so. Each complete pair is submitted through the control socket with an
//! idempotency key, `client_ref` = `folder:NAME.json:<hex SHA-256>` where the digest covers the
//! document bytes, the recipient and the purpose (so the same document to another recipient is
//! another submission). A gateway that has seen the key returns the entry it queued then, so a
//! crash between the gateway's acknowledgement and the move to `SENT/` never sends twice. To send
//! the very same document to the same recipient again on purpose, give it another name.
//!
//! Outcomes:
//! - accepted: `NAME.sent.json` is written to `SENT/` (id, recipient, state, withheld elements …),
//!   then the document and its sidecar are moved there;
//! - refused (a bad form or sidecar, consent or policy refused): moved to `FAILED/` with
//!   `NAME.error.txt`, two lines: what was wrong, and what to do;
//! - gateway unreachable or temporarily unable to store: left in `OUT/` and tried again on the
//!   next pass.
//!
//! When `SENT/` or `FAILED/` already holds a file of the same name, the new one is stored as
//! `NAME~2`, `NAME~3` …; nothing there is overwritten, except the record of the very same
//! submission.
//!
//! # Receiving: `IN/`
//!
//! Each pass lists the inbox and exports every entry not yet exported: `<msgid>.doc` first, then
//! `<msgid>.json`, each written to a temporary name, synced and renamed, so a local system that
//! waits for the `.json` finds both complete. Undelivered reports (the gateway's own inbox
//! entries about an envelope that expired) become `<msgid>.undelivered.txt`. The ids exported
//! are kept in `.state.json` in the root, written the same atomic way after the files: a crash
//! may export an entry again under the same names (the same bytes), never lose one, and a
//! restart never duplicates one.
//!
//! Run one adapter per root folder.

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tsunagi_control::{InboxEntry, OutboxEntry};
use tsunagi_protocol::{OrgId, Purpose};

use crate::client::{CallError, ErrorKind, GatewayClient, SendContent};
use crate::validate::{self, FieldError};

/// Folder names under the root.
const OUT: &str = "OUT";
const SENT: &str = "SENT";
const FAILED: &str = "FAILED";
const IN: &str = "IN";
const STATE: &str = ".state.json";
const ROUTE: &str = ".route.json";

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Documents handed to the gateway and moved to `SENT/`.
    pub sent: usize,
    /// Documents refused and moved to `FAILED/`.
    pub failed: usize,
    /// Documents left in `OUT/`: no sidecar yet, or the gateway could not take them now.
    pub waiting: usize,
    /// Received documents written to `IN/`.
    pub exported: usize,
    /// Undelivered reports written to `IN/`.
    pub undelivered: usize,
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The gateway's control socket did not answer; nothing was moved, try again later.
    #[error("{0}")]
    Unreachable(String),
    /// A file or folder of the adapter could not be read or written.
    #[error("{path}: {detail}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error, or what was wrong with the file.
        detail: String,
    },
    /// The gateway answered a listing or export request with an error.
    #[error("the gateway answered: {0}")]
    Gateway(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AdapterError + '_ {
    move |e| AdapterError::Io {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

impl From<CallError> for AdapterError {
    fn from(e: CallError) -> Self {
        if e.kind == ErrorKind::Unreachable {
            AdapterError::Unreachable(e.message)
        } else {
            AdapterError::Gateway(e.message)
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    /// Inbox ids already written to `IN/`.
    exported: BTreeSet<String>,
}

/// The routing sidecar, `NAME.route.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Route {
    to: String,
    purpose: String,
}

/// A folder adapter over one root folder and one gateway.
pub struct FolderAdapter {
    root: PathBuf,
    client: GatewayClient,
    /// Loaded from `.state.json`; the lock also keeps passes from overlapping.
    state: tokio::sync::Mutex<State>,
}

/// The outcome of one pair in `OUT/`.
enum Outcome {
    Sent,
    Failed,
    Waiting,
}

impl FolderAdapter {
    /// An adapter over `root` (its four folders are created 0700 when missing) talking to the
    /// gateway whose control socket is `socket_path`. Reads `root/.state.json` if present.
    pub fn new(
        root: impl Into<PathBuf>,
        socket_path: impl Into<PathBuf>,
    ) -> Result<FolderAdapter, AdapterError> {
        let root = root.into();
        for dir in [
            root.clone(),
            root.join(OUT),
            root.join(SENT),
            root.join(IN),
            root.join(FAILED),
        ] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io(&dir))?;
            keep_private(&dir)?;
        }
        let state_path = root.join(STATE);
        let state = match std::fs::read(&state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AdapterError::Io {
                path: state_path.clone(),
                detail: format!(
                    "unreadable adapter state ({e}); restore it from a backup, or delete it to export every received document again"
                ),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(io(&state_path)(e)),
        };
        Ok(FolderAdapter {
            root,
            client: GatewayClient::new(socket_path),
            state: tokio::sync::Mutex::new(state),
        })
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// One pass: submit every complete pair in `OUT/`, then export every new inbox entry to
    /// `IN/`. Stops with [`AdapterError::Unreachable`] when the gateway does not answer; what it
    /// had not yet handled stays where it is for the next pass.
    pub async fn run_once(&self) -> Result<Report, AdapterError> {
        let mut state = self.state.lock().await;
        let mut report = Report::default();
        self.submit_out(&mut report).await?;
        self.export_in(&mut state, &mut report).await?;
        Ok(report)
    }

    /// Runs a pass every `interval` until the process ends, logging what each pass did and why a
    /// pass stopped.
    pub async fn run(&self, interval: Duration) {
        let mut unreachable = false;
        loop {
            match self.run_once().await {
                Ok(r) => {
                    if unreachable {
                        tracing::info!("the gateway answers again");
                        unreachable = false;
                    }
                    if r.sent + r.failed + r.exported + r.undelivered > 0 {
                        tracing::info!(
                            sent = r.sent,
                            failed = r.failed,
                            waiting = r.waiting,
                            exported = r.exported,
                            undelivered = r.undelivered,
                            "folder pass"
                        );
                    }
                }
                Err(AdapterError::Unreachable(e)) => {
                    if !unreachable {
                        tracing::warn!("{e}; files stay in OUT/ and are sent once it answers");
                        unreachable = true;
                    }
                }
                Err(e) => tracing::error!("folder pass stopped: {e}"),
            }
            tokio::time::sleep(interval).await;
        }
    }

    // -----------------------------------------------------------------------------------------
    // OUT

    async fn submit_out(&self, report: &mut Report) -> Result<(), AdapterError> {
        let out = self.root.join(OUT);
        let mut names = BTreeSet::new();
        let mut links = Vec::new();
        for entry in std::fs::read_dir(&out).map_err(io(&out))? {
            let entry = entry.map_err(io(&out))?;
            let Ok(name) = entry.file_name().into_string() else {
                tracing::warn!(
                    "ignoring {:?} in OUT/: the name is not UTF-8",
                    entry.file_name()
                );
                continue;
            };
            if name.starts_with('.') || name.ends_with(".tmp") {
                continue;
            }
            let file_type = entry.file_type().map_err(io(&entry.path()))?;
            if file_type.is_symlink() {
                links.push(name);
            } else if file_type.is_file() {
                names.insert(name);
            }
        }
        for link in &links {
            self.refuse_link(link, &mut names)?;
            report.failed += 1;
        }
        let mut handled = HashSet::new();
        for name in &names {
            if let Some(stem) = name.strip_suffix(ROUTE) {
                if ![format!("{stem}.json"), format!("{stem}.doc")]
                    .iter()
                    .any(|d| names.contains(d))
                {
                    self.lone_sidecar(stem)?;
                }
                continue;
            }
            let (stem, is_form) = if let Some(s) = name.strip_suffix(".json") {
                (s, true)
            } else if let Some(s) = name.strip_suffix(".doc") {
                (s, false)
            } else {
                continue;
            };
            if !handled.insert(stem.to_owned()) {
                continue;
            }
            let sidecar = format!("{stem}{ROUTE}");
            if !names.contains(&sidecar) {
                report.waiting += 1;
                continue;
            }
            let other = format!("{stem}.{}", if is_form { "doc" } else { "json" });
            let outcome = if names.contains(&other) {
                let msg = format!(
                    "both {stem}.json and {stem}.doc are waiting with one {sidecar}, so it is not clear which to send"
                );
                self.fail(stem, &[name, &other, &sidecar], &msg,
                    "What to do: keep one of the two documents, and drop it with its .route.json into OUT again.")?;
                Outcome::Failed
            } else {
                self.submit_pair(stem, name, &sidecar, is_form).await?
            };
            match outcome {
                Outcome::Sent => report.sent += 1,
                Outcome::Failed => report.failed += 1,
                Outcome::Waiting => report.waiting += 1,
            }
        }
        Ok(())
    }

    /// A symbolic link in `OUT/`: never followed. The link itself (and a regular sidecar of a
    /// linked document) moves to `FAILED/` with `NAME.error.txt`; its target is not touched.
    fn refuse_link(&self, link: &str, names: &mut BTreeSet<String>) -> Result<(), AdapterError> {
        let stem = [ROUTE, ".json", ".doc"]
            .iter()
            .find_map(|ext| link.strip_suffix(ext))
            .unwrap_or(link);
        let sidecar = format!("{stem}{ROUTE}");
        let mut files = vec![link];
        if link != sidecar && names.remove(&sidecar) {
            files.push(&sidecar);
        }
        self.fail(
            stem,
            &files,
            &format!("{link} was not sent: it is a symbolic link, and the folder adapter does not accept symbolic links (it did not follow it or read what it points to)"),
            &format!("What to do: drop the document itself into OUT (write a copy under a temporary name, then rename it); the link was moved here as it was, and whatever it points to was left untouched. Remove {link} from FAILED when it is no longer needed (deleting a link does not delete its target)."),
        )
    }

    /// A sidecar whose document is gone: after a crash between the two moves, its document is
    /// already in `SENT/` or `FAILED/` with its record; move the sidecar after it.
    fn lone_sidecar(&self, stem: &str) -> Result<(), AdapterError> {
        for (dir, record) in [(SENT, "sent.json"), (FAILED, "error.txt")] {
            let d = self.root.join(dir);
            let has_doc = ["json", "doc"]
                .iter()
                .any(|e| d.join(format!("{stem}.{e}")).exists());
            let target = d.join(format!("{stem}{ROUTE}"));
            if has_doc && d.join(format!("{stem}.{record}")).exists() && !target.exists() {
                let from = self.root.join(OUT).join(format!("{stem}{ROUTE}"));
                std::fs::rename(&from, &target).map_err(io(&from))?;
                sync_dir(&self.root.join(OUT))?;
                sync_dir(&d)?;
                tracing::info!("moved {stem}{ROUTE} after its document to {dir}/");
            }
        }
        Ok(())
    }

    async fn submit_pair(
        &self,
        stem: &str,
        doc_name: &str,
        sidecar: &str,
        is_form: bool,
    ) -> Result<Outcome, AdapterError> {
        let out = self.root.join(OUT);
        let Some(doc) = read_if_present(&out.join(doc_name))? else {
            return Ok(Outcome::Waiting);
        };
        let Some(route) = read_if_present(&out.join(sidecar))? else {
            return Ok(Outcome::Waiting);
        };
        let files = [doc_name, sidecar];
        let fix_route = format!(
            "What to do: correct {sidecar} (it must read {{\"to\": \"<org id>\", \"purpose\": \"<purpose>\"}}) and drop {doc_name} and {sidecar} into OUT again."
        );
        let fix_doc = format!(
            "What to do: correct the field named above in {doc_name}, then drop it and {sidecar} into OUT again."
        );
        let parsed = serde_json::from_slice::<Route>(&route)
            .map_err(|e| format!("{sidecar} is not a routing sidecar: {e}"))
            .and_then(|r| {
                let to = validate::org("to", &r.to).map_err(|e| format!("{sidecar}: {e}"))?;
                let purpose = validate::purpose("purpose", &r.purpose)
                    .map_err(|e| format!("{sidecar}: {e}"))?;
                Ok((to, purpose))
            });
        let (to, purpose): (OrgId, Purpose) = match parsed {
            Ok(p) => p,
            Err(msg) => {
                self.fail(
                    stem,
                    &files,
                    &format!("{doc_name} was not sent: {msg}"),
                    &fix_route,
                )?;
                return Ok(Outcome::Failed);
            }
        };
        let content = if is_form {
            let checked = serde_json::from_slice::<Value>(&doc)
                .map_err(|e| FieldError::new(doc_name, format!("not valid JSON: {e}")))
                .and_then(|v| validate::document("", &v, None).map(|_| v));
            match checked {
                Ok(v) if doc.len() <= validate::MAX_DOCUMENT_BYTES => SendContent::Form(v),
                Ok(_) => {
                    let msg = format!(
                        "{doc_name} was not sent: it is {} bytes, over the limit of {} bytes",
                        doc.len(),
                        validate::MAX_DOCUMENT_BYTES
                    );
                    self.fail(stem, &files, &msg, "What to do: make the document smaller (attachments do not belong in a form), then drop it into OUT again.")?;
                    return Ok(Outcome::Failed);
                }
                Err(e) if e.field == doc_name => {
                    let msg = format!("{doc_name} was not sent: it is {}", e.message);
                    let todo = format!(
                        "What to do: make {doc_name} a complete JSON form (write it under a temporary name, rename it when complete), then drop it and {sidecar} into OUT again."
                    );
                    self.fail(stem, &files, &msg, &todo)?;
                    return Ok(Outcome::Failed);
                }
                Err(e) => {
                    let msg = format!("{doc_name} was not sent: {e}");
                    self.fail(stem, &files, &msg, &fix_doc)?;
                    return Ok(Outcome::Failed);
                }
            }
        } else {
            if let Err(e) = validate::bundle(doc_name, &doc) {
                self.fail(stem, &files, &format!("{doc_name} was not sent: {}", e.message),
                    &format!("What to do: {doc_name} must be a signed document exactly as a gateway exported it (`tsunagi inbox export` or a .doc from IN/); drop a good copy into OUT again."))?;
                return Ok(Outcome::Failed);
            }
            SendContent::Bundle(doc.clone())
        };
        let client_ref = client_ref(doc_name, &doc, &to, purpose);
        match self
            .client
            .send(&to, purpose, content, Some(&client_ref))
            .await
        {
            Ok(entry) => {
                self.sent(stem, &files, &entry, &client_ref)?;
                tracing::info!(
                    file = doc_name,
                    id = entry.id.as_str(),
                    to = entry.to.as_str(),
                    "queued"
                );
                Ok(Outcome::Sent)
            }
            Err(e) if e.kind == ErrorKind::Unreachable => Err(AdapterError::Unreachable(e.message)),
            Err(e) if e.is_temporary() => {
                tracing::warn!(
                    file = doc_name,
                    "the gateway could not take it now, will retry: {e}"
                );
                Ok(Outcome::Waiting)
            }
            Err(e) => {
                let todo = match e.kind {
                    ErrorKind::Refused => format!(
                        "What to do: check the person's consent for this recipient, purpose and document type with the authority that records it; if it should be allowed, have a new consent version recorded, then drop {doc_name} and {sidecar} into OUT again."
                    ),
                    ErrorKind::Unsupported => "What to do: update the gateway to the adapter's version, then drop the files into OUT again.".to_owned(),
                    _ => format!(
                        "What to do: correct what is named above in {doc_name} or {sidecar}, then drop both into OUT again."
                    ),
                };
                self.fail(
                    stem,
                    &files,
                    &format!("{doc_name} was not sent: {}", e.message),
                    &todo,
                )?;
                Ok(Outcome::Failed)
            }
        }
    }

    fn sent(
        &self,
        stem: &str,
        files: &[&str],
        entry: &OutboxEntry,
        client_ref: &str,
    ) -> Result<(), AdapterError> {
        let record = json!({
            "id": entry.id,
            "to": entry.to.as_str(),
            "state": entry.state,
            "kind": entry.kind.as_str(),
            "purpose": entry.purpose.as_str(),
            "case": entry.case.as_str(),
            "profile": entry.profile,
            "withheld": entry.withheld,
            "created": entry.created,
            "expires": entry.expires,
            "file": files[0],
            "client_ref": client_ref,
        });
        let mut bytes = serde_json::to_vec_pretty(&record).unwrap_or_default();
        bytes.push(b'\n');
        let dir = self.root.join(SENT);
        // The record of this very submission (the gateway returned the same entry after a crash
        // before the move) is rewritten in place; anything else of the same name is kept.
        let same_submission = |s: &str| {
            std::fs::read(dir.join(format!("{s}.sent.json")))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| v["id"] == entry.id.as_str())
        };
        self.move_out(SENT, stem, files, "sent.json", &bytes, same_submission)
    }

    fn fail(
        &self,
        stem: &str,
        files: &[&str],
        message: &str,
        what_to_do: &str,
    ) -> Result<(), AdapterError> {
        let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = format!("{}\n{}\n", one_line(message), one_line(what_to_do));
        tracing::warn!(file = files[0], "moved to FAILED/: {}", one_line(message));
        self.move_out(FAILED, stem, files, "error.txt", text.as_bytes(), |_| false)
    }

    /// Writes `stem.<record_ext>` into `dir`, then moves `files` (the document first) from `OUT/`
    /// beside it, under a stem that overwrites nothing (unless `reuse` says the existing record is
    /// of the same submission).
    fn move_out(
        &self,
        dir: &str,
        stem: &str,
        files: &[&str],
        record_ext: &str,
        record: &[u8],
        reuse: impl Fn(&str) -> bool,
    ) -> Result<(), AdapterError> {
        let out = self.root.join(OUT);
        let dest = self.root.join(dir);
        let renamed = |s: &str, f: &str| format!("{s}{}", &f[stem.len()..]);
        // symlink_metadata: a link moved there earlier counts, whether or not its target exists.
        let taken = |p: PathBuf| std::fs::symlink_metadata(p).is_ok();
        let free = |s: &str| {
            !taken(dest.join(format!("{s}.{record_ext}")))
                && files.iter().all(|f| !taken(dest.join(renamed(s, f))))
        };
        let mut target = stem.to_owned();
        let mut n = 1;
        while !(free(&target) || reuse(&target)) {
            n += 1;
            target = format!("{stem}~{n}");
        }
        write_atomic(&dest.join(format!("{target}.{record_ext}")), record)?;
        for f in files {
            let from = out.join(f);
            std::fs::rename(&from, dest.join(renamed(&target, f))).map_err(io(&from))?;
        }
        sync_dir(&dest)?;
        sync_dir(&out)
    }

    // -----------------------------------------------------------------------------------------
    // IN

    async fn export_in(&self, state: &mut State, report: &mut Report) -> Result<(), AdapterError> {
        let list = self.client.call(json!({"op": "inbox_list"})).await?;
        let entries: Vec<InboxEntry> = serde_json::from_value(list)
            .map_err(|e| AdapterError::Gateway(format!("unreadable inbox listing: {e}")))?;
        let before = state.exported.len();
        let mut result = Ok(());
        for e in entries {
            if state.exported.contains(&e.id) {
                continue;
            }
            match self.export_one(&e, report).await {
                Ok(()) => {
                    state.exported.insert(e.id.clone());
                }
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
        }
        if state.exported.len() != before {
            let mut bytes = serde_json::to_vec(&*state).unwrap_or_default();
            bytes.push(b'\n');
            write_atomic(&self.root.join(STATE), &bytes)?;
        }
        result
    }

    async fn export_one(&self, e: &InboxEntry, report: &mut Report) -> Result<(), AdapterError> {
        // The id names files: accept nothing but a message id.
        if validate::message_id("id", &e.id).is_err() {
            return Err(AdapterError::Gateway(format!(
                "the inbox listed an entry with the id {:?}, which is not a message id",
                e.id
            )));
        }
        let dir = self.root.join(IN);
        if let Some(text) = &e.report {
            let body = format!(
                "{}\nWhat to do: ask the recipient whether their gateway is running and reachable; once it is, drop the document into OUT again under a new name.\n",
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            write_atomic(
                &dir.join(format!("{}.undelivered.txt", e.id)),
                body.as_bytes(),
            )?;
            report.undelivered += 1;
            return Ok(());
        }
        let shown = self
            .client
            .call(json!({"op": "inbox_show", "id": e.id}))
            .await?;
        match self
            .client
            .call(json!({"op": "inbox_bundle", "id": e.id}))
            .await
        {
            Ok(v) => {
                let bytes = hex::decode(v["bundle_hex"].as_str().unwrap_or_default())
                    .map_err(|err| AdapterError::Gateway(format!("bundle of {}: {err}", e.id)))?;
                write_atomic(&dir.join(format!("{}.doc", e.id)), &bytes)?;
            }
            Err(err) if err.kind == ErrorKind::NotFound => {}
            Err(err) => return Err(err.into()),
        }
        let mut bytes = serde_json::to_vec_pretty(&shown).unwrap_or_default();
        bytes.push(b'\n');
        write_atomic(&dir.join(format!("{}.json", e.id)), &bytes)?;
        tracing::info!(
            id = e.id.as_str(),
            from = e.from.as_str(),
            "exported to IN/"
        );
        report.exported += 1;
        Ok(())
    }
}

/// The idempotency key of a folder submission: the file name and a SHA-256 over the document,
/// the recipient and the purpose.
fn client_ref(name: &str, doc: &[u8], to: &OrgId, purpose: Purpose) -> String {
    let mut ctx = Context::new(&SHA256);
    ctx.update(doc);
    ctx.update(b"\0");
    ctx.update(to.as_str().as_bytes());
    ctx.update(b"\0");
    ctx.update(purpose.as_str().as_bytes());
    format!("folder:{name}:{}", hex::encode(ctx.finish()))
}

/// Reads a regular file without following a symbolic link; `None` when it vanished or was
/// replaced by something else than a regular file in the meantime (the next pass sees what it
/// became).
fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, AdapterError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let before = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Ok(None),
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let opened = file.metadata().map_err(io(path))?;
    if (opened.dev(), opened.ino()) != (before.dev(), before.ino()) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io(path))?;
    Ok(Some(bytes))
}

/// Writes `bytes` to `path` (mode 0600) through a temporary name: write, fsync, rename, fsync
/// the folder. The temporary file is new ([`create_temp`]): a link or file another account
/// planted at its name is neither followed nor removed.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AdapterError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (tmp, mut f) = create_temp(dir, &name).map_err(io(path))?;
    let mut write = || -> std::io::Result<()> {
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        // Created by this call, so ours to remove.
        let _ = std::fs::remove_file(&tmp);
        io(path)(e)
    })?;
    sync_dir(dir)
}

/// Creates a new temporary file for `name` in `dir`, mode 0600, with `create_new` (O_EXCL:
/// never through a name that exists, so never through a planted symbolic link). Tries
/// `.NAME.tmp` first, then `.NAME.RANDOM.tmp` names (64 random bits each, which another account
/// cannot plant in advance), [`TEMP_ATTEMPTS`](tsunagi_certs::local::TEMP_ATTEMPTS) names in all; every name starts with `.` and ends
/// in `.tmp`, so the folder passes ignore it.
fn create_temp(dir: &Path, name: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    let rng = ring::rand::SystemRandom::new();
    let random = || {
        let mut b = [0u8; 8];
        ring::rand::SecureRandom::fill(&rng, &mut b)
            .map_err(|_| std::io::Error::other("the system random generator failed"))?;
        Ok(format!(".{name}.{}.tmp", hex::encode(b)))
    };
    tsunagi_certs::local::create_private_temp(dir, format!(".{name}.tmp"), random)
}

fn sync_dir(dir: &Path) -> Result<(), AdapterError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Checks a folder of the adapter, which holds personal data: it must belong to this account
/// (a folder another account created first, at a name it could guess, would let that account
/// read every document dropped or received there, or swap files in it), and others (outside the
/// folder's group) lose any access to it. A group the operator gave access on purpose (the
/// account of a local system that drops files, say) keeps it.
fn keep_private(dir: &Path) -> Result<(), AdapterError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let refuse = |detail: String| AdapterError::Io {
        path: dir.to_owned(),
        detail,
    };
    let meta = std::fs::metadata(dir).map_err(io(dir))?;
    if !meta.is_dir() {
        return Err(refuse("is not a folder".into()));
    }
    let euid = tsunagi_certs::local::effective_uid().map_err(|e| {
        refuse(format!(
            "cannot tell which account this is (/proc/self: {e})"
        ))
    })?;
    if meta.uid() != euid {
        return Err(refuse(format!(
            "belongs to uid {}, not to this account (uid {euid}): another account could read or replace the documents in it; use a folder of this account's own, or as root `chown -R {euid}` it",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o007 != 0 {
        let private = mode & !0o007;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(private)).map_err(io(dir))?;
        tracing::warn!(folder = %dir.display(), "removed other accounts' access to the folder ({mode:04o} -> {private:04o}): it holds personal data");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folders_are_this_accounts_own_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = TempDir::new("private");
        let root = tmp.0.join("root");
        // Created by hand, readable by everyone (a umask of 022): others lose their access, the
        // group keeps what the operator gave it; folders the adapter creates are 0700.
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(root.join(OUT)).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(root.join(OUT), std::fs::Permissions::from_mode(0o777)).unwrap();
        FolderAdapter::new(&root, tmp.0.join("none.sock")).unwrap();
        for (dir, want) in [
            (root.clone(), 0o750),
            (root.join(OUT), 0o770),
            (root.join(IN), 0o700),
        ] {
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, want, "{}", dir.display());
        }
        // A folder of another account is refused, naming it (only root can make one here).
        if tsunagi_certs::local::effective_uid().unwrap() == 0 {
            std::os::unix::fs::chown(root.join(IN), Some(65534), None).unwrap();
            let Err(err) = FolderAdapter::new(&root, tmp.0.join("none.sock")) else {
                panic!("a folder of another account was used")
            };
            let err = err.to_string();
            assert!(
                err.contains("IN") && err.contains("belongs to uid 65534"),
                "{err}"
            );
        }
    }

    /// A fresh folder under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let p =
                std::env::temp_dir().join(format!("tsunagi-folder-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Another account plants a symbolic link at the temporary name of a file the adapter
    /// writes into `IN/`: the link must be neither followed nor removed (as root too, who may
    /// remove any link).
    #[test]
    fn write_atomic_neither_follows_nor_removes_a_symlink_planted_at_its_temporary_name() {
        let tmp = TempDir::new("symlink");
        let inbox = tmp.0.join("IN");
        std::fs::create_dir(&inbox).unwrap();
        let loot = tmp.0.join("loot");
        std::fs::write(&loot, b"").unwrap();
        let link = inbox.join(".m1.json.tmp");
        std::os::unix::fs::symlink(&loot, &link).unwrap();
        let out = inbox.join("m1.json");

        write_atomic(&out, b"personal data").unwrap();

        let leaked = std::fs::read(&loot).unwrap();
        assert!(
            leaked.is_empty(),
            "written through the planted link: {:?}",
            String::from_utf8_lossy(&leaked)
        );
        assert_eq!(
            std::fs::read_link(&link).ok().as_deref(),
            Some(loot.as_path()),
            "the planted link was removed or replaced"
        );
        assert_eq!(std::fs::read(&out).unwrap(), b"personal data");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(&inbox).unwrap().count(), 2);
    }

    #[test]
    fn create_temp_names_are_ignored_by_the_folder_and_bounded() {
        let tmp = TempDir::new("taken");
        let (a, _) = create_temp(&tmp.0, "x.json").unwrap();
        let (b, _) = create_temp(&tmp.0, "x.json").unwrap();
        assert_eq!(a, tmp.0.join(".x.json.tmp"));
        let n = b.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            n.starts_with(".x.json.") && n.ends_with(".tmp") && n.len() == 28,
            "{n}"
        );
        // Every name taken: a clear error, and nothing of theirs touched.
        let mut i = 0;
        let e = tsunagi_certs::local::create_private_temp(&tmp.0, ".x.json.tmp".into(), || {
            i += 1;
            Ok(if i < tsunagi_certs::local::TEMP_ATTEMPTS {
                n.clone()
            } else {
                ".x.json.tmp".into()
            })
        })
        .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("no free temporary name"), "{e}");
        assert_eq!(std::fs::read_dir(&tmp.0).unwrap().count(), 2);
    }

    #[test]
    fn client_ref_depends_on_document_recipient_and_purpose() {
        let a: OrgId = "lg:131059".parse().unwrap();
        let b: OrgId = "mi:1310000025".parse().unwrap();
        let r = client_ref("x.json", b"{}", &a, Purpose::PlanCreation);
        assert!(r.starts_with("folder:x.json:"));
        assert_eq!(r.len(), "folder:x.json:".len() + 64);
        assert_eq!(r, client_ref("x.json", b"{}", &a, Purpose::PlanCreation));
        assert_ne!(r, client_ref("x.json", b"{ }", &a, Purpose::PlanCreation));
        assert_ne!(r, client_ref("x.json", b"{}", &b, Purpose::PlanCreation));
        assert_ne!(
            r,
            client_ref("x.json", b"{}", &a, Purpose::PlanImplementation)
        );
        assert_ne!(r, client_ref("y.json", b"{}", &a, Purpose::PlanCreation));
    }
}
