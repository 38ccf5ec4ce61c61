//! `tsunagi-adapter`: runs the folder adapter or the local HTTP API beside a running gateway.
//!
//! A binary of its own (not a `tsunagi` subcommand) because this crate depends on the gateway
//! crate; see the crate documentation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tsunagi_adapters::{http, AdapterError, FolderAdapter};

/// Connects local systems to a running tsunagi gateway: a drop folder or a local HTTP API.
#[derive(Debug, Parser)]
#[command(name = "tsunagi-adapter", version, about, long_about = None)]
struct Cli {
    /// Log JSON lines instead of text (logs go to standard error).
    #[arg(long, global = true, env = "TSUNAGI_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send what is dropped into ROOT/OUT (NAME.json or NAME.doc plus NAME.route.json) and write
    /// what arrives into ROOT/IN.
    Folder {
        /// The gateway's configuration file (to find its control socket).
        #[arg(
            long,
            value_name = "FILE",
            env = "TSUNAGI_CONFIG",
            default_value = "gateway.toml"
        )]
        config: PathBuf,
        /// The root folder (OUT, SENT, IN and FAILED are created in it).
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// Do one pass and exit (for cron or a systemd timer).
        #[arg(long)]
        once: bool,
        /// Seconds between passes.
        #[arg(long, value_name = "SECS", default_value_t = 5)]
        interval: u64,
    },
    /// Serve the local HTTP API (loopback only, bearer token; see adapters/openapi.yaml).
    Http {
        /// The gateway's configuration file (to find its control socket).
        #[arg(
            long,
            value_name = "FILE",
            env = "TSUNAGI_CONFIG",
            default_value = "gateway.toml"
        )]
        config: PathBuf,
        /// The loopback address and port to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7480")]
        listen: SocketAddr,
        /// The bearer token file: created (mode 0600) with a new token when missing; refused
        /// when other accounts can read it.
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tsunagi_control::logging::init(cli.log_json);
    // A closed stdout (`… | head -1`) ends the command quietly (status 141), never a panic.
    tsunagi_control::output::quiet_on_closed_stdout(|| match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    })
}

fn run(cli: Cli) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    match cli.command {
        Command::Folder {
            config,
            root,
            once,
            interval,
        } => {
            let socket = tsunagi_control::socket_of_config(&config)?;
            let adapter = FolderAdapter::new(root, socket).map_err(|e| e.to_string())?;
            rt.block_on(async {
                if once {
                    let r = adapter.run_once().await.map_err(|e| match e {
                        AdapterError::Unreachable(m) => {
                            format!("{m} (the files stay in OUT/ for the next run)")
                        }
                        other => other.to_string(),
                    })?;
                    tsunagi_control::outln!(
                        "sent {}, failed {}, waiting {}, received {}, undelivered reports {}",
                        r.sent,
                        r.failed,
                        r.waiting,
                        r.exported,
                        r.undelivered
                    );
                    Ok(())
                } else {
                    tracing::info!(root = %adapter.root().display(), "folder adapter running");
                    adapter.run(Duration::from_secs(interval.max(1))).await;
                    Ok(())
                }
            })
        }
        Command::Http {
            config,
            listen,
            token_file,
        } => {
            let socket = tsunagi_control::socket_of_config(&config)?;
            rt.block_on(http::serve(listen, socket, &token_file))
                .map_err(|e| e.to_string())
        }
    }
}
