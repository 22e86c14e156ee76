//! `testudo plan CONFIG [-o FILE]`: write the canonical plan JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Nickel system config.
    config: PathBuf,
    /// Write the plan here instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

/// Writes the canonical plan (stdout or `-o`); prints its sha256 on stderr.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some((plan, _warnings)) = super::config_input::load_config(&args.config) else {
        return Ok(ExitCode::FAILURE);
    };
    let json = plan.to_canonical_json().context("serialising the plan")?;
    let hash = plan.content_hash().context("hashing the plan")?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, &json)
                .with_context(|| format!("writing the plan to {}", path.display()))?;
            eprintln!("wrote {} (sha256 {hash})", path.display());
        }
        None => {
            print!("{json}");
            eprintln!("plan sha256 {hash}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
