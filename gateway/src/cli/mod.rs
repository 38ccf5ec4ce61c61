//! The `tsunagi` command line.
//!
//! | command | what it does |
//! |---|---|
//! | `tsunagi demo [--scenario kanagawa]` | plays case-0007 across a local federation (or the move to Kanagawa across two prefectures) and prints the timeline |
//! | `tsunagi bench` | runs `tsunagi-bench` (its own binary): two gateways on loopback, throughput, latency, fsyncs, memory and disk against ceilings measured in the same run, and the backlog-restart scenario |
//! | `tsunagi certs init-ca / issue / revoke / show` | the federation PKI |
//! | `tsunagi directory sign / show` | the signed federation member list |
//! | `tsunagi federation init / member add` | a federation and a working member (CA, credentials, directory entry, signed directory, gateway.toml) in one step |
//! | `tsunagi check` | is a gateway ready: configuration, credentials and their modes, CRL, directory, peers |
//! | `tsunagi doc sign / redact / verify / inspect` | documents, offline, without a gateway |
//! | `tsunagi gateway run` | the gateway |
//! | `tsunagi backup / restore / master-key rotate` | backups of a running gateway, restore, master-key export and rotation |
//! | `tsunagi send / outbox / inbox / consent / residence-change / audit / stats` | talk to the running gateway over its control socket |
//! | `tsunagi distribute / reminders / disclosure / delegation / transfer` | the course of support on the running gateway: a document to every party, periods that ran out, the person's request to see their records, delegations, the destination's takeover after a move and its information request, a Form 7 package for another channel |

mod backup;
mod certs;
mod check;
mod course;
mod directory;
mod doc;
mod federation;
mod gateway;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::files::{fail, CliResult, Fail};

/// tsunagi: the gateway for exchanging post-discharge support documents (退院後支援).
#[derive(Debug, Parser)]
#[command(name = "tsunagi", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Play case-0007 end to end across a local federation and print the timeline.
    Demo {
        /// Keep every participant's certificates and documents in this directory.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// Which scenario: `default` (case-0007 in Tokyo) or `kanagawa` (the move from Bunkyo
        /// to Yokohama across two prefectures, and the destination taking over).
        #[arg(long, value_enum, default_value_t = crate::demo::Scenario::Default)]
        scenario: crate::demo::Scenario,
    },
    /// Measure two gateways on loopback (runs `tsunagi-bench`, installed beside `tsunagi`, with
    /// the same arguments; `tsunagi bench --help` shows them).
    #[command(disable_help_flag = true)]
    Bench {
        /// The arguments of `tsunagi-bench` (`--n1 N --n64 N --backlog N --dir DIR --json`).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<std::ffi::OsString>,
    },
    /// Federation PKI: the CA, gateway certificates, revocation.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// The signed federation directory.
    #[command(subcommand)]
    Directory(directory::DirectoryCommand),
    /// A federation and its members in one step each: CA, credentials, directory, gateway.toml.
    #[command(subcommand)]
    Federation(federation::FederationCommand),
    /// Check a gateway's configuration, credentials (and their file modes), CRL, directory and
    /// peers; print what to fix, one line each; fail if anything must be fixed.
    Check {
        #[command(flatten)]
        config: gateway::ConfigArg,
        /// How long to wait for each peer's handshake and answer.
        #[arg(long, default_value_t = 3000, value_name = "MS")]
        peer_timeout_ms: u64,
    },
    /// Sign, redact, verify and inspect documents offline.
    #[command(subcommand)]
    Doc(doc::DocCommand),
    /// Run a gateway.
    #[command(subcommand)]
    Gateway(gateway::GatewayCommand),
    /// Hand a form or a signed document to the running gateway for one recipient.
    Send(gateway::SendArgs),
    /// The running gateway's outbox: what it sends, with states, attempts and last errors.
    #[command(subcommand)]
    Outbox(gateway::OutboxCommand),
    /// The running gateway's inbox: what it received.
    #[command(subcommand)]
    Inbox(gateway::InboxCommand),
    /// Record or withdraw the person's consent (on the controller's gateway).
    #[command(subcommand)]
    Consent(gateway::ConsentCommand),
    /// Report a change of residence (JSON); the plan's author drafts the Form 7 transfer notice.
    ResidenceChange {
        #[command(flatten)]
        config: gateway::ConfigArg,
        /// The residence change report (JSON).
        file: PathBuf,
    },
    /// Sign a form once (or take a signed document) and send it to every party of the case, each
    /// in its role's view: plan revisions, meeting records, extensions, readmission and
    /// support-end notices.
    Distribute {
        #[command(flatten)]
        config: gateway::ConfigArg,
        /// The form (JSON) or the signed document.
        file: PathBuf,
    },
    /// Support periods that ran out with neither an extension nor an end of support.
    Reminders {
        #[command(flatten)]
        config: gateway::ConfigArg,
    },
    /// The person's request to see their records (R9): note it, then answer it.
    #[command(subcommand)]
    Disclosure(course::DisclosureCommand),
    /// Delegations of the authority's work to a contracted organisation (III.8).
    #[command(subcommand)]
    Delegation(course::DelegationCommand),
    /// After a move to another authority: the destination takes over, asks the origin for
    /// information and the origin answers; a Form 7 package for a municipality no gateway serves.
    #[command(subcommand)]
    Transfer(course::TransferCommand),
    /// The audit trail: verify it, or show everything about one case.
    #[command(subcommand)]
    Audit(gateway::AuditCommand),
    /// R12 statistics: aggregates without personal data.
    Stats {
        #[command(flatten)]
        config: gateway::ConfigArg,
    },
    /// Back up the running gateway to one file (or: verify a backup, export the master key).
    Backup(backup::BackupArgs),
    /// Restore a backup into the fresh data directory of a stopped gateway.
    Restore {
        #[command(flatten)]
        config: backup::Cfg,
        /// The backup file.
        file: PathBuf,
        /// Restore a backup without a seal: one written before backups were sealed (its audit
        /// trail must still verify). Refused by default: a removed seal looks the same.
        #[arg(long)]
        unsealed: bool,
        /// Restore even when the backup's seal does not hold or the audit trail inside it does
        /// not verify against the federation CA (refused by default: the file or its store was
        /// altered); for the last backup there is.
        #[arg(long)]
        despite_audit_problems: bool,
    },
    /// The master key that wraps every case key.
    #[command(subcommand)]
    MasterKey(backup::MasterKeyCommand),
}

/// The exit status of `tsunagi doc verify` without `--crl`: the signature and chain verified,
/// but whether the signer's certificate was revoked was not checked.
pub const EXIT_REVOCATION_NOT_CHECKED: u8 = 3;

/// Runs a parsed command line; returns the exit status of a command that did not fail
/// (success, or [`EXIT_REVOCATION_NOT_CHECKED`]).
pub fn run(cli: Cli) -> CliResult<ExitCode> {
    match cli.command {
        Command::Doc(c) => return doc::run(c),
        Command::Demo { keep, scenario } => crate::demo::run_scenario(scenario, keep.as_deref()),
        Command::Bench { args } => return bench(args),
        Command::Certs(c) => certs::run(c),
        Command::Directory(c) => directory::run(c),
        Command::Federation(c) => federation::run(c),
        Command::Check {
            config,
            peer_timeout_ms,
        } => check::run(config.path(), peer_timeout_ms),
        Command::Gateway(c) => gateway::run_gateway(c),
        Command::Send(a) => gateway::send(a),
        Command::Outbox(c) => gateway::outbox(c),
        Command::Inbox(c) => gateway::inbox(c),
        Command::Consent(c) => gateway::consent(c),
        Command::ResidenceChange { config, file } => gateway::residence_change(config, file),
        Command::Distribute { config, file } => course::distribute(config, file),
        Command::Reminders { config } => course::reminders(config),
        Command::Disclosure(c) => course::disclosure(c),
        Command::Delegation(c) => course::delegation(c),
        Command::Transfer(c) => course::transfer(c),
        Command::Audit(c) => gateway::audit(c),
        Command::Stats { config } => gateway::stats(config),
        Command::Backup(a) => backup::backup(a),
        Command::Restore {
            config,
            file,
            unsealed,
            despite_audit_problems,
        } => backup::restore(
            config,
            file,
            crate::backup::Accepting {
                unsealed,
                problems: despite_audit_problems,
            },
        ),
        Command::MasterKey(c) => backup::master_key(c),
    }?;
    Ok(ExitCode::SUCCESS)
}

/// `tsunagi bench`: runs the `tsunagi-bench` executable beside this one with the same
/// arguments and answers its exit status (the benchmark is not part of the gateway's code).
fn bench(args: Vec<std::ffi::OsString>) -> CliResult<ExitCode> {
    let exe = std::env::current_exe().map_err(|e| fail("cannot find the tsunagi executable", e))?;
    let bin = exe.with_file_name("tsunagi-bench");
    let status = std::process::Command::new(&bin)
        .args(args)
        .status()
        .map_err(|e| {
            Fail(format!(
                "cannot run {}: {e}; the benchmark is its own executable, installed beside tsunagi (cargo build --bin tsunagi-bench)",
                bin.display()
            ))
        })?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
