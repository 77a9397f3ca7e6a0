//! veil's entry point: parse the command line, set up logging, run the command, exit with its code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

/// Info for veil; rustls only at error level, since any client can make it warn (e.g. an IP address as SNI) and
/// so flood the log.
const DEFAULT_LOG: &str = "info,rustls=error";

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VEIL_LOG").unwrap_or_else(|_| DEFAULT_LOG.into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    veil::cli::run(veil::cli::Cli::parse())
}
