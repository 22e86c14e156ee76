//! `testudo check CONFIG`: evaluate and validate a system config.

use std::path::PathBuf;
use std::process::ExitCode;

use testudo_config::{ConfigError, ConfigErrors};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Nickel system config to check.
    config: PathBuf,
}

/// Prints a one-line summary (exit 0) or every error with its place (exit 1). Warnings go to
/// stderr and do not fail the check.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match testudo_config::load_plan(&args.config) {
        Ok((plan, warnings)) => {
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
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
        Err(errors) => {
            print_errors(&errors);
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Prints every error on stderr: one `error:` line each (with its cause chain), and for
/// Nickel errors the full report with the source excerpt.
pub fn print_errors(errors: &ConfigErrors) {
    for error in errors.errors() {
        let mut line = format!("error: {error}");
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            line.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        eprintln!("{line}");
        if let ConfigError::Evaluate { report, .. } = error {
            if !report.trim().is_empty() {
                eprintln!("{}", report.trim_end());
            }
        }
    }
    eprintln!(
        "{} error{}",
        errors.errors().len(),
        if errors.errors().len() == 1 { "" } else { "s" }
    );
}
