//! `testudo check CONFIG`: evaluate and validate a system config.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Nickel system config to check.
    config: PathBuf,
}

/// Prints a one-line summary (exit 0) or every error with its place (exit 1). Warnings go to
/// stderr and do not fail the check.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match super::config_input::load_config(&args.config) {
        Some((plan, warnings)) => {
            let routes: usize = plan.components.values().map(|c| c.uses.len()).sum();
            let slot_routes: usize = plan.app_slots.values().map(|s| s.max_uses.len()).sum();
            println!(
                "{}: ok: system {} {} on {}, {} components, {} routes, {} app slots ({} routes at most), {} warnings",
                args.config.display(),
                plan.name,
                plan.version,
                plan.board.name,
                plan.components.len(),
                routes,
                plan.app_slots.len(),
                slot_routes,
                warnings.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::FAILURE),
    }
}
