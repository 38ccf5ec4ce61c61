//! Standard output of the command-line tools (`tsunagi`, `tsunagi-adapter`).
//!
//! `println!` panics when the reader of stdout has gone (`tsunagi outbox list | head -1`: `head`
//! exits, the next write fails with `EPIPE`). The tools print through [`outln!`](crate::outln)
//! and [`out!`](crate::out) instead, which on a closed pipe unwind with [`StdoutClosed`] — no
//! panic message, destructors run — and each binary's `main` runs under
//! [`quiet_on_closed_stdout`], which turns that into the status a shell reports for a command
//! ended by `SIGPIPE` (141), printing nothing.

use std::io::Write;
use std::process::ExitCode;

/// The exit status of a command whose stdout reader went away: 128 + SIGPIPE, as a shell
/// reports for a command the signal ended.
pub const EXIT_STDOUT_CLOSED: u8 = 141;

/// The unwinding payload of a write to a closed stdout.
#[derive(Debug)]
pub struct StdoutClosed;

/// Writes to stdout and flushes; on a closed pipe unwinds with [`StdoutClosed`] (no message).
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::panic::resume_unwind(Box::new(StdoutClosed));
        }
        panic!("failed printing to stdout: {e}");
    }
}

/// `println!` that ends the command quietly when stdout's reader has gone.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that ends the command quietly when stdout's reader has gone.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// Runs a binary's `main` body; a write to a closed stdout ends it with
/// [`EXIT_STDOUT_CLOSED`] and no message. Other panics go on as panics.
pub fn quiet_on_closed_stdout(body: impl FnOnce() -> ExitCode) -> ExitCode {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(code) => code,
        Err(payload) if payload.is::<StdoutClosed>() => ExitCode::from(EXIT_STDOUT_CLOSED),
        Err(payload) => std::panic::resume_unwind(payload),
    }
}
