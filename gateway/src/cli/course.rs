//! The course of support from the command line, on a running gateway: `distribute` (plan
//! revisions, meeting records, extensions, readmissions, support ends to every party),
//! `reminders`, `disclosure request / answer` (R9), `delegation record / list` (III.8) and
//! `transfer take-over / ask / answer / consents / export` (after a move: the destination takes
//! over and asks the origin, or a Form 7 package for a municipality no gateway serves).

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};

use super::gateway::{call, print_json, ConfigArg};
use crate::files::{fail, read, read_json, CliResult, Fail};

/// Reads a JSON file, naming it when it is not JSON.
/// `tsunagi distribute`: sign once, send to every party of the case.
pub(crate) fn distribute(config: ConfigArg, file: PathBuf) -> CliResult {
    let bytes = read(&file)?;
    let request = if bytes
        .first()
        .is_some_and(|b| *b == b'{' || b.is_ascii_whitespace())
    {
        json!({"op": "distribute", "form": read_json(&file)?})
    } else {
        json!({"op": "distribute", "bundle_hex": tsunagi_protocol::hex::encode(&bytes)})
    };
    let r = call(&config, request)?;
    let rows = r.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return Err(Fail(
            "the case has no party to send this to yet; record a consent that names the parties first".into(),
        ));
    }
    let mut queued = 0usize;
    for d in &rows {
        let to = d["to"].as_str().unwrap_or("?");
        match (d["entry"].as_object(), d["refused"].as_str()) {
            (Some(e), _) => {
                queued += 1;
                crate::outln!(
                    "{to}: queued {} ({})",
                    e.get("id").and_then(Value::as_str).unwrap_or("?"),
                    e.get("profile").and_then(Value::as_str).unwrap_or("?")
                );
            }
            (None, Some(why)) => crate::outln!("{to}: refused: {why}"),
            (None, None) => crate::outln!("{to}: not sent"),
        }
    }
    crate::outln!(
        "{queued} of {} parties queued; follow them with `tsunagi outbox list`",
        rows.len()
    );
    Ok(())
}

/// `tsunagi reminders`: support periods that ran out with neither an extension nor an end.
pub(crate) fn reminders(config: ConfigArg) -> CliResult {
    let r = call(&config, json!({"op": "reminders"}))?;
    let rows = r.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        crate::outln!("no support period has run out without an extension or an end");
    }
    for m in rows {
        crate::outln!(
            "{}: the support period of plan v{} ended on {}; extend it (meeting record and consent) or end the support",
            m["case"].as_str().unwrap_or("?"),
            m["plan_version"],
            m["period_ended_on"].as_str().unwrap_or("?"),
        );
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub(crate) enum DisclosureCommand {
    /// Note that the person asked to see their records (R9), and when the request was received.
    Request {
        #[command(flatten)]
        config: ConfigArg,
        /// The case pseudonym.
        case: String,
        /// The day the request was received (YYYY-MM-DD).
        #[arg(long, value_name = "DATE")]
        received_on: String,
    },
    /// Answer it: gather every gateway's records of the case into one printable Japanese page.
    Answer {
        #[command(flatten)]
        config: ConfigArg,
        /// The case pseudonym.
        case: String,
        /// Where to write the page (HTML).
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
    },
}

pub(crate) fn disclosure(cmd: DisclosureCommand) -> CliResult {
    match cmd {
        DisclosureCommand::Request {
            config,
            case,
            received_on,
        } => {
            let _: tsunagi_protocol::Date = received_on
                .parse()
                .map_err(|e| fail("--received-on (YYYY-MM-DD)", e))?;
            call(
                &config,
                json!({"op": "disclosure_request", "case": case, "received_on": received_on}),
            )?;
            crate::outln!(
                "noted the request for {case} received on {received_on}; answer it with `tsunagi disclosure answer`"
            );
            Ok(())
        }
        DisclosureCommand::Answer { config, case, html } => {
            let r = call(&config, json!({"op": "disclosure_answer", "case": case}))?;
            crate::files::write_atomic(&html, r["html"].as_str().unwrap_or("").as_bytes())?;
            let orgs: Vec<&str> = r["organisations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            crate::outln!(
                "wrote the answer for {case} to {} (records of this gateway{})",
                html.display(),
                if orgs.is_empty() {
                    String::new()
                } else {
                    format!(" and of {}", orgs.join(", "))
                }
            );
            Ok(())
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum DelegationCommand {
    /// Record a delegation (JSON) as the case's controller and send it to the contractor; a new
    /// version with "status": "revoked" ends it.
    Record {
        #[command(flatten)]
        config: ConfigArg,
        /// The delegation record (JSON).
        file: PathBuf,
    },
    /// The newest version of each delegation of a case.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// The case pseudonym.
        case: String,
    },
}

pub(crate) fn delegation(cmd: DelegationCommand) -> CliResult {
    match cmd {
        DelegationCommand::Record { config, file } => {
            let record = read_json(&file)?;
            let e = call(
                &config,
                json!({"op": "delegation_record", "record": record}),
            )?;
            crate::outln!(
                "recorded; {} queued to {} (see `tsunagi outbox show {}`)",
                e["id"].as_str().unwrap_or("?"),
                e["to"].as_str().unwrap_or("?"),
                e["id"].as_str().unwrap_or("?"),
            );
            Ok(())
        }
        DelegationCommand::List { config, case } => {
            print_json(&call(&config, json!({"op": "delegations", "case": case}))?)
        }
    }
}

/// The other channel a transfer package is carried by.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Channel {
    /// By post (郵送).
    Post,
    /// Handed over (持参).
    Hand,
    /// By fax.
    Fax,
}

/// After a move to another authority (III.5).
#[derive(Debug, Subcommand)]
pub(crate) enum TransferCommand {
    /// On the destination: take the case of a received Form 7 over with this gateway's own
    /// consent and plan (the plan's support period defaults to Form 7's remaining period).
    TakeOver {
        #[command(flatten)]
        config: ConfigArg,
        /// The inbox message id of the transfer notice.
        transfer: String,
        /// The destination's consent record (JSON), this gateway its controller.
        consent: PathBuf,
        /// The destination's plan (JSON); `support_period` may be left out.
        plan: PathBuf,
    },
    /// On the destination: ask the origin for information about past support (JSON request).
    Ask {
        #[command(flatten)]
        config: ConfigArg,
        /// The information request (JSON).
        file: PathBuf,
    },
    /// On the origin: answer a received information request (JSON answer).
    Answer {
        #[command(flatten)]
        config: ConfigArg,
        /// The inbox message id of the request.
        request: String,
        /// The answer (JSON).
        file: PathBuf,
    },
    /// The consents of a case this gateway holds, one per controller.
    Consents {
        #[command(flatten)]
        config: ConfigArg,
        /// The case pseudonym.
        case: String,
    },
    /// Print the Form 7 package of a move to a municipality no directory serves (state
    /// no_gateway), to carry it by another channel; the audit trail records the channel.
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// The case pseudonym.
        case: String,
        /// How it is carried.
        #[arg(long, value_enum)]
        channel: Channel,
        /// Where to write the printable package (HTML).
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
    },
}

pub(crate) fn transfer(c: TransferCommand) -> CliResult {
    match c {
        TransferCommand::TakeOver {
            config,
            transfer,
            consent,
            plan,
        } => {
            let r = call(
                &config,
                json!({"op": "take_over", "transfer": transfer, "consent": read_json(&consent)?, "plan": read_json(&plan)?}),
            )?;
            crate::outln!(
                "{} taken over from {}: consent {} recorded, plan for {} to {}",
                r["case"].as_str().unwrap_or("?"),
                r["from"].as_str().unwrap_or("?"),
                r["consent"].as_str().unwrap_or("?"),
                r["period"]["from"].as_str().unwrap_or("?"),
                r["period"]["to"].as_str().unwrap_or("?"),
            );
            print_json(&r)
        }
        TransferCommand::Ask { config, file } => print_json(&call(
            &config,
            json!({"op": "information_request", "form": read_json(&file)?}),
        )?),
        TransferCommand::Answer {
            config,
            request,
            file,
        } => print_json(&call(
            &config,
            json!({"op": "information_answer", "request": request, "form": read_json(&file)?}),
        )?),
        TransferCommand::Consents { config, case } => {
            print_json(&call(&config, json!({"op": "consents", "case": case}))?)
        }
        TransferCommand::Export {
            config,
            case,
            channel,
            html,
        } => export(config, case, channel, html),
    }
}

/// `tsunagi transfer export`.
fn export(config: ConfigArg, case: String, channel: Channel, html: PathBuf) -> CliResult {
    let channel = match channel {
        Channel::Post => "post",
        Channel::Hand => "hand",
        Channel::Fax => "fax",
    };
    let r = call(
        &config,
        json!({"op": "transfer_export", "case": case, "channel": channel}),
    )?;
    crate::files::write_atomic(&html, r["html"].as_str().unwrap_or("").as_bytes())?;
    crate::outln!(
        "wrote the Form 7 package for {case} to {} (channel: {channel}); print it and send it",
        html.display()
    );
    Ok(())
}
