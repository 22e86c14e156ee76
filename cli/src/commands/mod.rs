//! Subcommand definitions and dispatch. One file per subcommand (or subcommand group).
//!
//! To add a subcommand: add its file, a variant to [`Command`] (behind the subsystem's cargo
//! feature) and one arm in [`run`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[cfg(feature = "config")]
mod check;

/// testudo: declarative, capability-routed system images for IoT gateways.
#[derive(Debug, Parser)]
#[command(name = "testudo", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a system config; prints a one-line summary or every located error.
    #[cfg(feature = "config")]
    Check(check::Args),
}

/// Runs the parsed command line; the returned code is the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        #[cfg(feature = "config")]
        Command::Check(args) => check::run(args),
    }
}
