//! `tsunagi`: the command-line tool of the tsunagi gateway.
//!
//! Every error a user can cause ends in one line on stderr (`error: …`) and exit status 1;
//! command-line mistakes exit with status 2 (clap's usage error).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = tsunagi_gateway::cli::Cli::parse();
    match tsunagi_gateway::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
