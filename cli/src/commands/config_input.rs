//! Reading the system a command works on: a Nickel config (evaluated and validated, with its
//! errors and warnings printed) or, for later stages, an already-made plan JSON.

use std::path::Path;

use anyhow::Context;
use testudo_config::{ConfigError, ConfigErrors, Plan, Warning};

/// Evaluates and validates a Nickel config. Prints warnings; on errors prints every one of
/// them and returns `None` (the caller exits 1).
pub fn load_config(config: &Path) -> Option<(Plan, Vec<Warning>)> {
    match testudo_config::load_plan(config) {
        Ok((plan, warnings)) => {
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            Some((plan, warnings))
        }
        Err(errors) => {
            print_errors(&errors);
            None
        }
    }
}

/// Reads a plan (`*.json`) or evaluates a Nickel config into one.
pub fn load_config_or_plan(config: &Path) -> anyhow::Result<Plan> {
    if config.extension().is_some_and(|ext| ext == "json") {
        return Plan::read(config).with_context(|| format!("reading plan {}", config.display()));
    }
    load_config(config)
        .map(|(plan, _)| plan)
        .with_context(|| format!("{} is not a valid system config", config.display()))
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
