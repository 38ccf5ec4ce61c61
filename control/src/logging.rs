//! Log setup shared by the `tsunagi` and `tsunagi-adapter` binaries.
//!
//! Logs go to standard error, as text or as JSON lines (one object per event, for a log
//! collector). Colour codes are written only when standard error is a terminal, so a journal or
//! a log file never holds ANSI escapes. What is logged is the callers' concern: message ids, org
//! ids and case pseudonyms, never personal data.

use std::io::IsTerminal;

/// Installs the process-wide subscriber (INFO and above); `json` selects JSON lines. A second
/// call does nothing.
pub fn init(json: bool) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
