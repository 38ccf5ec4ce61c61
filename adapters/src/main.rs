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

/// Connects local systems and staff to a running tsunagi gateway: a drop folder, a local HTTP
/// API, or the staff console.
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
    /// The staff console in Japanese: serve it, or manage its accounts.
    Console {
        #[command(subcommand)]
        command: ConsoleCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConsoleCommand {
    /// Serve the console (loopback by default; TLS required on any other address).
    Serve {
        /// The gateway's configuration file (to find its control socket and directory).
        #[arg(
            long,
            value_name = "FILE",
            env = "TSUNAGI_CONFIG",
            default_value = "gateway.toml"
        )]
        config: PathBuf,
        /// The address and port to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7490")]
        listen: SocketAddr,
        /// The account file (made by `console user add`; mode 0600).
        #[arg(long, value_name = "FILE")]
        users: PathBuf,
        /// TLS certificate chain (PEM); required with --tls-key off loopback.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM, mode 0600).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Minutes of inactivity after which a session ends.
        #[arg(long, value_name = "MINUTES", default_value_t = 15)]
        idle_minutes: u64,
        /// Seconds of inactivity after which a session ends (overrides --idle-minutes; for tests).
        #[arg(long, value_name = "SECS", hide = true)]
        idle_secs: Option<u64>,
        /// Where sessions and drafts are kept across restarts, sealed (created with mode 0700;
        /// default: beside the gateway's data directory, its name followed by `-console`).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Play `tsunagi demo`, keep its ten gateways running with a console each, and print each
    /// organisation's console address and the demo logins (until Ctrl-C).
    Demo {
        /// Where the demo federation is kept (an empty or new directory; a temporary one when
        /// not given).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Manage console accounts.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add an account, or set a new password and role for an existing one. The password is read
    /// from standard input (one line, at least 12 characters).
    Add {
        /// The account file (created with mode 0600 when missing).
        #[arg(long, value_name = "FILE")]
        users: PathBuf,
        /// The account id (letters, digits, '.', '_', '-'; recorded in the audit trail — not a name).
        #[arg(long)]
        id: String,
        /// viewer, clerk, approver or admin.
        #[arg(long)]
        role: String,
    },
    /// Remove an account. Its open sessions end at their next request, as they do when an
    /// account gets a new password or role.
    Remove {
        /// The account file.
        #[arg(long, value_name = "FILE")]
        users: PathBuf,
        /// The account id.
        #[arg(long)]
        id: String,
    },
}

mod demo;

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
        Command::Console { command } => run_console(&rt, command),
    }
}

fn run_console(rt: &tokio::runtime::Runtime, command: ConsoleCommand) -> Result<(), String> {
    use tsunagi_adapters::console;
    match command {
        ConsoleCommand::User {
            command: UserCommand::Add { users, id, role },
        } => {
            let role = console::accounts::Role::parse(&role).map_err(|e| e.to_string())?;
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
            let password = password.trim_end_matches(['\n', '\r']);
            console::accounts::add_user(&users, &id, role, password, None)
                .map_err(|e| e.to_string())?;
            tsunagi_control::outln!("account {id} ({role:?}) saved in {}", users.display());
            Ok(())
        }
        ConsoleCommand::User {
            command: UserCommand::Remove { users, id },
        } => {
            console::accounts::remove_user(&users, &id).map_err(|e| e.to_string())?;
            tsunagi_control::outln!("account {id} removed from {}", users.display());
            Ok(())
        }
        ConsoleCommand::Demo { dir } => rt.block_on(demo::run(dir)),
        ConsoleCommand::Serve {
            config,
            listen,
            users,
            tls_cert,
            tls_key,
            idle_minutes,
            idle_secs,
            data_dir,
        } => {
            let socket = tsunagi_control::socket_of_config(&config)?;
            let data_dir = match data_dir {
                Some(d) => d,
                None => {
                    let gateway_data = socket.parent().unwrap_or(std::path::Path::new("."));
                    let name = gateway_data
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "data".into());
                    gateway_data.with_file_name(format!("{name}-console"))
                }
            };
            let members = match rt.block_on(console::members_from_gateway(&socket)) {
                Ok((_, m)) => m,
                Err(e) => {
                    tracing::warn!("organisation names unavailable (org ids shown instead): {e}");
                    Vec::new()
                }
            };
            let opts = console::Options {
                listen,
                socket,
                users,
                tls: tls_cert.zip(tls_key),
                idle: Duration::from_secs(idle_secs.unwrap_or(idle_minutes.max(1) * 60)),
                members,
                data_dir: Some(data_dir),
            };
            rt.block_on(async {
                let server = console::bind(opts).await.map_err(|e| e.to_string())?;
                let scheme = if server.is_tls() { "https" } else { "http" };
                tracing::info!(url = %format!("{scheme}://{}/", server.local_addr()), "staff console listening");
                server.run().await.map_err(|e| e.to_string())
            })
        }
    }
}
