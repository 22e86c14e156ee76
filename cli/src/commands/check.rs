//! `testudo check CONFIG`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Nickel system config to check.
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Filled in by the foundation work (issue 2).
    anyhow::bail!("checking {} is not implemented yet", args.config.display())
}
