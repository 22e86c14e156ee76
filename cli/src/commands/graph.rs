//! `testudo graph CONFIG -o FILE.svg|FILE.dot`: draw the capability graph.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Nickel system config.
    config: PathBuf,
    /// Output file; `.svg` draws the picture (no Graphviz needed), `.dot` writes Graphviz text.
    #[arg(short, long)]
    output: PathBuf,
}

/// Writes the picture and prints its path.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let extension = args
        .output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let render: fn(&testudo_config::Plan) -> String = match extension.as_deref() {
        Some("svg") => testudo_config::graph::to_svg,
        Some("dot" | "gv") => testudo_config::graph::to_dot,
        _ => anyhow::bail!("{}: output must end in .svg or .dot", args.output.display()),
    };
    let Some((plan, _warnings)) = super::config_input::load_config(&args.config) else {
        return Ok(ExitCode::FAILURE);
    };
    std::fs::write(&args.output, render(&plan))
        .with_context(|| format!("writing {}", args.output.display()))?;
    println!("{}", args.output.display());
    Ok(ExitCode::SUCCESS)
}
