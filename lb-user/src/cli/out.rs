//! Standard output for the subcommands that print. `println!` panics when stdout is a pipe
//! whose reader has gone (`lb list flows | head`): every line goes through [`line`]
//! instead, and a closed pipe becomes [`StdoutClosed`], which ends the command quietly with
//! exit code 0, as the reader has all it wanted (`cli::run`). Any other write error is an
//! error like any other.
use std::fmt::Display;
use std::io::{self, Write};

/// Standard output is a pipe nobody reads any more.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

/// Writes `text` and a newline to stdout.
pub fn line(text: impl Display) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).map_err(|e| match e.kind() {
        io::ErrorKind::BrokenPipe => anyhow::Error::new(StdoutClosed),
        _ => anyhow::Error::new(e).context("writing to standard output"),
    })
}

/// Writes to stderr, where nothing can be done about a failure.
pub fn note(text: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}
