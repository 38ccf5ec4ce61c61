//! `tsunagi`: the command-line tool of the tsunagi gateway.
//!
//! Every error a user can cause ends in one line on stderr (`error: …`) and exit status 1;
//! command-line mistakes exit with status 2 (clap's usage error); `doc verify` without `--crl`
//! exits with status 3 (revocation not checked); a closed stdout (`… | head -1`) ends a command
//! quietly with status 141, as `SIGPIPE` would.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOC: tsunagi_gateway::Allocator = tsunagi_gateway::Allocator;

fn main() -> ExitCode {
    let cli = tsunagi_gateway::cli::Cli::parse();
    tsunagi_gateway::output::quiet_on_closed_stdout(|| match tsunagi_gateway::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    })
}
