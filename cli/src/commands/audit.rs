//! `testudo audit CONFIG [--json]`: what each component holds versus the whole system.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Nickel system config.
    config: PathBuf,
    /// Print the audit as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Prints the audit table (or JSON).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some((plan, _warnings)) = super::config_input::load_config(&args.config) else {
        return Ok(ExitCode::FAILURE);
    };
    let audit = testudo_config::audit::audit(&plan);
    if args.json {
        let json = serde_json::to_string_pretty(&audit).context("serialising the audit")?;
        println!("{json}");
    } else {
        print!("{}", audit.to_table());
    }
    Ok(ExitCode::SUCCESS)
}
