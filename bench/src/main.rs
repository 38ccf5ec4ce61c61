//! `tsunagi-bench`: the benchmark's binary (`tsunagi bench` runs it with the same arguments).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tsunagi_control::outln;

#[global_allocator]
static ALLOC: tsunagi_gateway::Allocator = tsunagi_gateway::Allocator;

/// Measure two gateways on loopback: envelopes/s, latency, fsyncs, memory and disk, as ratios
/// to the Ed25519 and fsync ceilings measured in the same run; then restart a sender with a
/// backlog for a peer that was down, and drain it.
#[derive(Debug, Parser)]
#[command(name = "tsunagi bench", version)]
struct Cli {
    /// Envelopes sent one at a time.
    #[arg(long, default_value_t = 300, value_name = "N")]
    n1: usize,
    /// Envelopes sent with 64 in flight.
    #[arg(long, default_value_t = 3000, value_name = "N")]
    n64: usize,
    /// Envelopes queued for the unreachable peer in the backlog-restart scenario (0 skips it).
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    backlog: usize,
    /// Keep the federation and both stores in this (new or empty) directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tsunagi_control::output::quiet_on_closed_stdout(|| {
        let report = match tsunagi_bench::run(&tsunagi_bench::Options {
            n1: cli.n1,
            n64: cli.n64,
            backlog: cli.backlog,
            dir: cli.dir.clone(),
            ..Default::default()
        }) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: bench: {e}");
                return ExitCode::FAILURE;
            }
        };
        if cli.json {
            match serde_json::to_string_pretty(&report) {
                Ok(text) => outln!("{text}"),
                Err(e) => {
                    eprintln!("error: bench: {e}");
                    return ExitCode::FAILURE;
                }
            }
        } else {
            tsunagi_control::out!("{}", tsunagi_bench::table(&report));
        }
        ExitCode::SUCCESS
    })
}
