//! `tsunagi backup`, `backup verify`, `backup master-key`, `restore` and `master-key rotate`
//! (see [`crate::backup`]).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::backup;
use crate::config::Config;
use crate::files::{fail, read, CliResult, Fail};

/// Where the gateway's configuration is.
#[derive(Debug, Args)]
pub(crate) struct Cfg {
    /// The gateway's configuration file.
    #[arg(
        long,
        value_name = "FILE",
        env = "TSUNAGI_CONFIG",
        default_value = "gateway.toml"
    )]
    config: PathBuf,
}

/// `tsunagi backup` arguments.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct BackupArgs {
    #[command(subcommand)]
    command: Option<BackupCommand>,
    #[command(flatten)]
    config: Cfg,
    /// The backup file to create (mode 0600; an existing file is never overwritten).
    #[arg(long, value_name = "FILE", required = true)]
    out: Option<PathBuf>,
    /// Put the master key in the backup too. Whoever gets such a file can decrypt every case in
    /// it: keep it as carefully as the master key itself. Without this flag, export the key
    /// apart with `tsunagi backup master-key` and store it somewhere else.
    #[arg(long)]
    with_master_key: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BackupCommand {
    /// Check a backup file: header, SHA-256, that every record decodes, the gateway's seal, and
    /// the audit chain and signed checkpoints inside it.
    Verify {
        #[command(flatten)]
        config: Cfg,
        /// The federation CA certificate to check the seal and the audit checkpoints with
        /// (default: the configuration's `ca` and `crl`).
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// The CA's CRL to check revocation with, beside --ca; without it, a certificate
        /// revoked since is not noticed (the output says so).
        #[arg(long, value_name = "FILE", requires = "ca")]
        crl: Option<PathBuf>,
        /// The backup file.
        file: PathBuf,
    },
    /// Export the gateway's master key to a new file (mode 0600, no passphrase): anyone with it
    /// and a backup reads every case. Keep it apart from the backups.
    MasterKey {
        #[command(flatten)]
        config: Cfg,
        /// The file to create, e.g. lg_131059.MASTER-KEY.secret.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum MasterKeyCommand {
    /// With the gateway stopped: make a new master key, re-wrap every case key with it in one
    /// durable batch, then put it in place; the old key stays as `master.key.old`.
    Rotate {
        #[command(flatten)]
        config: Cfg,
    },
}

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail("cannot start the async runtime", e))
}

/// `tsunagi backup …`.
pub(crate) fn backup(args: BackupArgs) -> CliResult {
    match args.command {
        Some(BackupCommand::Verify {
            config,
            ca,
            crl,
            file,
        }) => verify(&config, ca, crl, &file),
        Some(BackupCommand::MasterKey { config, out }) => {
            let cfg = Config::load(&config.config)?;
            backup::export_master_key(&cfg, &out).map_err(Fail)?;
            crate::outln!(
                "wrote the master key of {} to {} (mode 0600, not protected by a passphrase): with it, any backup of this gateway can be decrypted; store it offline, apart from the backups",
                cfg.org,
                out.display()
            );
            Ok(())
        }
        None => {
            let out = args
                .out
                .ok_or_else(|| Fail("--out FILE is required".into()))?;
            let out = std::path::absolute(&out).map_err(|e| fail(out.display(), e))?;
            let cfg = Config::load(&args.config.config)?;
            let h = runtime()?
                .block_on(crate::control::call(
                    &cfg.control_socket(),
                    &json!({"op": "backup", "out": out, "with_master_key": args.with_master_key}),
                ))
                .map_err(|e| Fail(e.message))?;
            crate::outln!(
                "wrote {}: {} records of {} taken {} (store format {}, sha256 {})",
                out.display(),
                h["records"],
                h["org"].as_str().unwrap_or("?"),
                h["created_date"].as_str().unwrap_or("?"),
                h["store_format"],
                h["sha256"].as_str().unwrap_or("?")
            );
            if args.with_master_key {
                crate::outln!("the master key IS in this backup: anyone with the file can decrypt every case in it; keep it like the key itself");
            } else {
                crate::outln!(
                    "the master key is NOT in this backup: without {} (export it with `tsunagi backup master-key --out FILE`) the backup cannot be restored",
                    cfg.master_key.display()
                );
            }
            Ok(())
        }
    }
}

fn verify(
    config: &Cfg,
    ca: Option<PathBuf>,
    crl: Option<PathBuf>,
    file: &std::path::Path,
) -> CliResult {
    let b = backup::decode(&read(file)?).map_err(|e| fail(file.display(), e))?;
    let trust = match ca {
        Some(ca) => {
            if crl.is_none() {
                crate::outln!(
                    "revocation: not checked (no --crl given): a certificate revoked since still counts"
                );
            }
            tsunagi_certs::FederationTrust::from_files(&ca, crl.as_deref())
        }
        None => {
            let cfg = Config::load(&config.config)?;
            tsunagi_certs::FederationTrust::from_files(&cfg.ca, Some(&cfg.crl))
        }
    }
    .map_err(|e| fail("the federation CA", e))?;
    // Both are reported: a backup of an earlier version has no seal, and its trail still tells.
    let seal = b.verify_seal(&trust);
    if let Err(e) = &seal {
        crate::outln!("seal: {e}");
    }
    let report = b
        .verify_audit(&trust, crate::files::now())
        .map_err(|e| fail(file.display(), e))?;
    for p in &report.problems {
        crate::outln!("audit problem: {p}");
    }
    if seal.is_err() || !report.intact() {
        return Err(Fail(format!(
            "{}: {}; the audit trail inside {} ({} problem(s), {} records, {} signed checkpoints)",
            file.display(),
            match &seal {
                Ok(()) => "the seal holds".to_owned(),
                Err(backup::SealProblem::Missing) => "the backup has no seal".to_owned(),
                Err(_) => "the seal does not hold".to_owned(),
            },
            if report.intact() {
                "is intact"
            } else {
                "does not verify"
            },
            report.problems.len(),
            report.records,
            report.checkpoints
        )));
    }
    crate::outln!(
        "backup intact and sealed by {}: {} records taken {}, sha256 {}; audit trail intact: {} records, {} signed checkpoints; master key {}",
        b.header.org,
        b.header.records,
        b.header.created_date,
        b.header.sha256,
        report.records,
        report.checkpoints,
        b.header.master_key
    );
    Ok(())
}

/// `tsunagi restore`.
pub(crate) fn restore(config: Cfg, file: PathBuf, accepting: backup::Accepting) -> CliResult {
    let cfg = Config::load(&config.config)?;
    let b = backup::decode(&read(&file)?).map_err(|e| fail(file.display(), e))?;
    let r = backup::restore(&cfg, &b, accepting, crate::files::now())
        .map_err(|e| fail("restore refused", e))?;
    if r.unsealed && accepting.unsealed {
        crate::outln!(
            "the backup has no seal (--unsealed): taken as written before backups were sealed"
        );
    }
    if r.audit.intact() {
        crate::outln!(
            "audit trail of the backup intact: {} records, {} signed checkpoints",
            r.audit.records,
            r.audit.checkpoints
        );
    } else {
        for p in &r.audit.problems {
            crate::outln!("audit problem: {p}");
        }
        crate::outln!(
            "restored DESPITE {} problem(s) (--despite-audit-problems): the restored trail records it, with the first problems, and `audit verify` prints that record",
            r.audit.problems.len()
        );
    }
    crate::outln!(
        "restored {} records of {} (taken {}) into {}{}; start the gateway with `tsunagi gateway run`",
        r.records,
        cfg.org,
        b.header.created_date,
        cfg.data_dir.display(),
        if r.master_key_from_backup {
            format!("; the master key from the backup was written to {}", cfg.master_key.display())
        } else {
            String::new()
        }
    );
    Ok(())
}

/// `tsunagi master-key …`.
pub(crate) fn master_key(cmd: MasterKeyCommand) -> CliResult {
    let MasterKeyCommand::Rotate { config } = cmd;
    let cfg = Config::load(&config.config)?;
    if runtime()?
        .block_on(crate::control::call(
            &cfg.control_socket(),
            &json!({"op": "status"}),
        ))
        .is_ok()
    {
        return Err(Fail(
            "the gateway is running: stop it, then rotate the master key".into(),
        ));
    }
    let r = backup::rotate_master_key(&cfg).map_err(|e| fail("master-key rotate", e))?;
    crate::outln!(
        "{} {}: {} case keys re-wrapped; the old key is kept as {}: it no longer opens the data, but backups taken before now need it; destroy it once they are gone",
        if r.resumed { "finished the interrupted rotation of" } else { "rotated" },
        cfg.master_key.display(),
        r.rewrapped,
        r.old.display()
    );
    Ok(())
}
