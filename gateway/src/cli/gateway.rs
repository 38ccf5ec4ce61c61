//! `tsunagi gateway run`, and the commands that talk to a running gateway: `send`, `outbox`,
//! `inbox`, `consent`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::config::{Config, LogFormat};
use crate::control;
use crate::engine::Gateway;
use crate::files::{fail, read, CliResult, Fail};

/// Where the gateway's configuration is.
#[derive(Debug, Args)]
pub(crate) struct ConfigArg {
    /// The gateway's configuration file.
    #[arg(
        long,
        value_name = "FILE",
        env = "TSUNAGI_CONFIG",
        default_value = "gateway.toml"
    )]
    config: PathBuf,
}

impl ConfigArg {
    /// The configuration file's path.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.config
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum GatewayCommand {
    /// Run the gateway: receive from peers, deliver the outbox, serve the local control socket.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Log one JSON object per line (overrides log_format in the configuration).
        #[arg(long)]
        log_json: bool,
    },
}

/// Which entries a listing shows.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Only the entries of this case (its pseudonym).
    #[arg(long)]
    case: Option<String>,
    /// Only the newest N entries.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

impl ListArgs {
    /// The control request of listing `op` with these arguments.
    fn request(&self, op: &str) -> serde_json::Value {
        let mut request = json!({ "op": op });
        if let Some(case) = &self.case {
            request["case"] = case.as_str().into();
        }
        if let Some(limit) = self.limit {
            request["limit"] = limit.into();
        }
        request
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum OutboxCommand {
    /// List entries with their states, oldest first.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        page: ListArgs,
    },
    /// Show one entry.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// The message id.
        id: String,
    },
    /// Cancel an entry that is not sent yet (waiting for consent, queued, or waiting to
    /// retry): it is never sent afterwards. Refused for a final entry and one being sent.
    Cancel {
        #[command(flatten)]
        config: ConfigArg,
        /// The message id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum InboxCommand {
    /// List entries with their states, oldest first.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        page: ListArgs,
    },
    /// Show one entry.
    Show {
        #[command(flatten)]
        config: ConfigArg,
        /// The message id.
        id: String,
    },
    /// Write a received document (as disclosed to us) to FILE, e.g. to forward it.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// The message id.
        id: String,
        /// Where to write the document.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConsentCommand {
    /// Record a consent version (JSON) on the controller's gateway and send it to the orgs it names.
    Record {
        #[command(flatten)]
        config: ConfigArg,
        /// The consent record (JSON).
        file: PathBuf,
    },
    /// Withdraw consent: record a withdrawn version, cancel queued envelopes, notify every recipient.
    Withdraw {
        #[command(flatten)]
        config: ConfigArg,
        /// The consent id.
        id: String,
    },
}

/// `tsunagi send` arguments.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The recipient org.
    #[arg(long)]
    to: String,
    /// Why: plan_creation, plan_implementation, relocation_transfer, consent_management, support_end.
    #[arg(long)]
    purpose: String,
    /// A form (JSON), which the gateway signs as author, or a signed document to forward.
    file: PathBuf,
    /// Wait for the outcome (delivered, rejected, expired, cancelled) and print it; fails
    /// unless delivered.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this many seconds (the entry stays queued).
    #[arg(long, default_value_t = 60, value_name = "SECS", requires = "wait")]
    timeout: u64,
}

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail("cannot start the async runtime", e))
}

fn socket(config: &ConfigArg) -> CliResult<PathBuf> {
    Ok(Config::load(&config.config)?.control_socket())
}

pub(crate) fn call(config: &ConfigArg, request: Value) -> CliResult<Value> {
    let sock = socket(config)?;
    runtime()?
        .block_on(control::call(&sock, &request))
        .map_err(|e| Fail(e.message))
}

pub(crate) fn print_json(v: &Value) -> CliResult {
    crate::outln!(
        "{}",
        serde_json::to_string_pretty(v).map_err(|e| fail("output", e))?
    );
    Ok(())
}

pub(crate) fn run_gateway(cmd: GatewayCommand) -> CliResult {
    let GatewayCommand::Run { config, log_json } = cmd;
    let cfg = Config::load(&config.config)?;
    let json_logs = log_json || cfg.log_format == LogFormat::Json;
    crate::logging::init(json_logs);
    let rt = runtime()?;
    rt.block_on(async move {
        let sock = cfg.control_socket();
        let gw = Gateway::open(cfg).map_err(Fail)?;
        crate::ops::start(&gw).await.map_err(Fail)?;
        tracing::info!(org = gw.org().as_str(), listen = %gw.local_addr(), control = %sock.display(), "gateway running");
        // The store cannot write again in this process (a full disk, a hung flush): say so once
        // and exit, so that a supervisor (or the operator, after freeing space) restarts us.
        // On a thread of its own, so that a runtime blocked by a hung disk cannot hold it up;
        // nothing is flushed on the way out: everything acknowledged is on disk already, and a
        // hung disk would hang the exit too.
        let (watch, handle) = (gw.clone(), tokio::runtime::Handle::current());
        std::thread::Builder::new()
            .name("store-stop".into())
            .spawn(move || {
                let e = handle.block_on(watch.store_stopped());
                tracing::error!("{}", e.stop_message());
                std::process::exit(i32::from(e.exit_status()));
            })
            .map_err(|e| fail("cannot start a thread", e))?;
        let ctl = gw.clone();
        let ctl_path = sock.clone();
        let mut control = tokio::spawn(async move { control::serve(ctl, &ctl_path).await });
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Fail(format!("cannot watch for SIGTERM: {e}")))?;
        let signal = tokio::select! {
            _ = gw.run() => return Ok(()),
            r = &mut control => return Err(Fail(format!("the control socket stopped: {}", r.map_or_else(|e| e.to_string(), |r| r.err().map_or_else(String::new, |e| e.to_string()))))),
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        };
        // Graceful shutdown: no new local requests, no new peers, every commit already begun
        // made durable; then the socket file goes.
        tracing::info!(signal, "shutting down");
        control.abort();
        let _ = std::fs::remove_file(&sock);
        gw.shutdown().await.map_err(|e| Fail(e.to_string()))?;
        tracing::info!("stopped cleanly: everything acknowledged is on disk");
        Ok(())
    })
}

pub(crate) fn send(args: SendArgs) -> CliResult {
    let _: tsunagi_protocol::OrgId = args.to.parse().map_err(|e| fail("--to", e))?;
    let _: tsunagi_protocol::Purpose = args
        .purpose
        .parse()
        .map_err(|e: String| fail("--purpose", e))?;
    let bytes = read(&args.file)?;
    let mut request = json!({"op": "send", "to": args.to, "purpose": args.purpose});
    if bytes
        .first()
        .is_some_and(|b| *b == b'{' || b.is_ascii_whitespace())
    {
        let form: Value = serde_json::from_slice(&bytes)
            .map_err(|e| fail(format!("{} is not valid JSON", args.file.display()), e))?;
        request["form"] = form;
    } else {
        request["bundle_hex"] = tsunagi_protocol::hex::encode(&bytes).into();
    }
    let entry = call(&args.config, request)?;
    if args.wait {
        let id = entry["id"].as_str().unwrap_or("?").to_owned();
        crate::outln!(
            "queued {id} {} of {} to {}; waiting for the outcome",
            entry["kind"].as_str().unwrap_or("?"),
            entry["case"].as_str().unwrap_or("?"),
            entry["to"].as_str().unwrap_or("?"),
        );
        let r = call(
            &args.config,
            json!({"op": "outbox_wait", "id": id, "timeout_ms": args.timeout.saturating_mul(1000)}),
        )?;
        let e = &r["entry"];
        let state = e["state"].as_str().unwrap_or("?");
        let why = e["last_error"].as_str().unwrap_or("");
        return match (r["final"].as_bool(), state) {
            (Some(true), "delivered") => {
                crate::outln!("delivered {id} to {}", e["to"].as_str().unwrap_or("?"));
                Ok(())
            }
            (Some(true), _) => Err(Fail(format!("{id} {state}: {why}"))),
            _ => {
                Err(Fail(format!(
                "{id} is still {state} after {} s{}; it stays queued (`tsunagi outbox show {id}`)",
                args.timeout,
                if why.is_empty() { String::new() } else { format!(" (last error: {why})") }
            )))
            }
        };
    }
    crate::outln!(
        "queued {} {} of {} to {} ({}{}); follow it with `tsunagi outbox show {}`",
        entry["id"].as_str().unwrap_or("?"),
        entry["kind"].as_str().unwrap_or("?"),
        entry["case"].as_str().unwrap_or("?"),
        entry["to"].as_str().unwrap_or("?"),
        entry["profile"].as_str().unwrap_or("?"),
        entry["withheld"]
            .as_array()
            .filter(|w| !w.is_empty())
            .map_or(String::new(), |w| format!(
                ", {} elements withheld",
                w.len()
            )),
        entry["id"].as_str().unwrap_or("?"),
    );
    Ok(())
}

fn list(entries: &Value, cols: &[(&str, usize)]) {
    let rows = entries.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        crate::outln!("(empty)");
        return;
    }
    let header: Vec<String> = cols.iter().map(|(c, w)| format!("{c:<w$}")).collect();
    crate::outln!("{}", header.join(" ").trim_end());
    for r in rows {
        let line: Vec<String> = cols
            .iter()
            .map(|(c, w)| {
                let v = match &r[*c] {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".into(),
                    Value::Array(a) => a.len().to_string(),
                    other => other.to_string(),
                };
                format!("{v:<w$}")
            })
            .collect();
        crate::outln!("{}", line.join(" ").trim_end());
    }
}

pub(crate) fn outbox(cmd: OutboxCommand) -> CliResult {
    match cmd {
        OutboxCommand::List { config, page } => {
            let v = call(&config, page.request("outbox_list"))?;
            list(
                &v,
                &[
                    ("id", 32),
                    ("state", 10),
                    ("to", 16),
                    ("kind", 18),
                    ("case", 24),
                    ("attempts", 8),
                    ("last_error", 0),
                ],
            );
            Ok(())
        }
        OutboxCommand::Show { config, id } => {
            print_json(&call(&config, json!({"op": "outbox_show", "id": id}))?)
        }
        OutboxCommand::Cancel { config, id } => {
            let v = call(&config, json!({"op": "outbox_cancel", "id": id}))?;
            crate::outln!(
                "cancelled {id} ({} of {} to {}); it will not be sent",
                v["kind"].as_str().unwrap_or("?"),
                v["case"].as_str().unwrap_or("?"),
                v["to"].as_str().unwrap_or("?")
            );
            Ok(())
        }
    }
}

pub(crate) fn inbox(cmd: InboxCommand) -> CliResult {
    match cmd {
        InboxCommand::List { config, page } => {
            let v = call(&config, page.request("inbox_list"))?;
            list(
                &v,
                &[
                    ("id", 32),
                    ("from", 16),
                    ("kind", 18),
                    ("case", 24),
                    ("disclosed", 9),
                    ("withheld", 8),
                    ("report", 0),
                ],
            );
            Ok(())
        }
        InboxCommand::Show { config, id } => {
            print_json(&call(&config, json!({"op": "inbox_show", "id": id}))?)
        }
        InboxCommand::Export { config, id, file } => {
            let v = call(&config, json!({"op": "inbox_bundle", "id": id}))?;
            let bytes = control::unhex(v["bundle_hex"].as_str().unwrap_or("")).map_err(Fail)?;
            crate::files::write_atomic(&file, &bytes)?;
            crate::outln!("wrote the received document {id} to {}", file.display());
            Ok(())
        }
    }
}

pub(crate) fn consent(cmd: ConsentCommand) -> CliResult {
    let (config, request) = match cmd {
        ConsentCommand::Record { config, file } => {
            let record = crate::files::read_json(&file)?;
            (config, json!({"op": "consent_record", "record": record}))
        }
        ConsentCommand::Withdraw { config, id } => {
            (config, json!({"op": "consent_withdraw", "id": id}))
        }
    };
    let queued = call(&config, request)?;
    let n = queued.as_array().map_or(0, Vec::len);
    crate::outln!("recorded; {n} envelope(s) queued to the parties (see `tsunagi outbox list`)");
    Ok(())
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Recompute the audit chain and its signed checkpoints; report any modified, inserted or
    /// removed record.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// Also ask every other member of the federation for the newest checkpoint of this
        /// gateway's trail it keeps, and report witnessed records that are gone or differ (the
        /// newest records deleted together with their checkpoints go unnoticed otherwise).
        #[arg(long)]
        peers: bool,
    },
    /// Everything that happened to one case — who received which fields when (R9): JSON, or a
    /// printable Japanese HTML page with --html.
    Subject {
        #[command(flatten)]
        config: ConfigArg,
        /// The case id, e.g. case-131059-2026-0007.
        case: String,
        /// Write the Japanese HTML page for staff to print to this file.
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
}

pub(crate) fn audit(cmd: AuditCommand) -> CliResult {
    match cmd {
        AuditCommand::Verify { config, peers } => {
            let cfg = Config::load(&config.config)?;
            let r = if crate::offline::gateway_running(&cfg) {
                call(&config, json!({"op": "audit_verify", "peers": peers}))?
            } else if peers {
                return Err(Fail(format!(
                    "--peers asks the peers through the running gateway, and nothing answers on {}; start it with `tsunagi gateway run`, or verify the local trail without --peers",
                    cfg.control_socket().display()
                )));
            } else {
                let report = crate::offline::Offline::open(&cfg)
                    .and_then(|o| o.audit_verify())
                    .map_err(Fail)?;
                serde_json::to_value(&report).map_err(|e| fail("output", e))?
            };
            let problems = r["problems"].as_array().cloned().unwrap_or_default();
            for w in r["witnesses"].as_array().into_iter().flatten() {
                println!("witness {}", w.as_str().unwrap_or(""));
            }
            for line in r["restores"].as_array().into_iter().flatten() {
                crate::outln!("{}", line.as_str().unwrap_or(""));
            }
            if problems.is_empty() {
                crate::outln!(
                    "audit trail intact: {} records, {} signed checkpoints, {} records after the last checkpoint",
                    r["records"], r["checkpoints"], r["unsigned_tail"]
                );
                Ok(())
            } else {
                for p in &problems {
                    crate::outln!("{}", p.as_str().unwrap_or(""));
                }
                Err(Fail(format!(
                    "the audit trail was altered: {} problem(s) found",
                    problems.len()
                )))
            }
        }
        AuditCommand::Subject {
            config,
            case,
            html: None,
        } => print_json(&call(
            &config,
            json!({"op": "audit_subject", "case": case}),
        )?),
        AuditCommand::Subject {
            config,
            case,
            html: Some(file),
        } => {
            let page = call(
                &config,
                json!({"op": "audit_subject", "case": case, "html": true}),
            )?;
            crate::files::write_atomic(&file, page.as_str().unwrap_or("").as_bytes())?;
            crate::outln!(
                "wrote the subject access page for {case} to {}",
                file.display()
            );
            Ok(())
        }
    }
}

pub(crate) fn stats(config: ConfigArg) -> CliResult {
    let cfg = Config::load(&config.config)?;
    if crate::offline::gateway_running(&cfg) {
        print_json(&call(&config, json!({"op": "stats"}))?)
    } else {
        let offline = crate::offline::Offline::open(&cfg).map_err(Fail)?;
        print_json(&offline.stats().map_err(Fail)?)
    }
}

pub(crate) fn residence_change(config: ConfigArg, file: PathBuf) -> CliResult {
    let report = crate::files::read_json(&file)?;
    let r = call(&config, json!({"op": "residence_change", "report": report}))?;
    let destination = r["destination"].as_str().unwrap_or("?");
    if r["no_gateway"].as_bool() == Some(true) {
        crate::outln!(
            "no gateway serves {destination}: the signed transfer notice is kept here; print the package with `tsunagi transfer export {} --channel post --html FILE` and send it by post, by hand or by fax",
            report["subject"].as_str().unwrap_or("CASE")
        );
        return Ok(());
    }
    match r["transfer"].as_object() {
        None => crate::outln!("the same authority ({}) serves the new municipality: nothing to transfer", r["destination"].as_str().unwrap_or("?")),
        Some(t) => crate::outln!(
            "transfer notice {} to {}: {}",
            t["id"].as_str().unwrap_or("?"),
            r["destination"].as_str().unwrap_or("?"),
            match t["state"].as_str() {
                Some("awaiting_consent") => "waiting for the person's consent to the transfer; it goes when a consent version covers it",
                _ => "queued",
            }
        ),
    }
    Ok(())
}
