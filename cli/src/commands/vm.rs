//! `testudo vm run DISK [--expect REGEX] [--timeout SECONDS]`: boot an image in QEMU
//! (OVMF, swtpm TPM, serial console on stdout).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use testudo_images::{run_vm, VmOptions, VmOutcome};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: VmCommand,
}

#[derive(Debug, clap::Subcommand)]
enum VmCommand {
    /// Boot a disk image; with --expect, exit 0 as soon as the console matches.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The disk image (OUT/disk.img from `testudo build`).
    disk: PathBuf,
    /// Exit 0 as soon as a serial console line matches this regular expression.
    #[arg(long)]
    expect: Option<String>,
    /// Give up (non-zero exit) after this many seconds [default with --expect: 300].
    #[arg(long)]
    timeout: Option<u64>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u64,
    /// QEMU accelerators in order of preference, e.g. `tcg` or `kvm:tcg`.
    #[arg(long, default_value = "tcg")]
    accel: String,
    /// Keep firmware variables and TPM state here between runs [default: fresh each run].
    #[arg(long)]
    state: Option<PathBuf>,
    /// Discard the guest's disk writes.
    #[arg(long)]
    snapshot: bool,
    /// Run without a TPM.
    #[arg(long)]
    no_tpm: bool,
    /// Do not echo the console.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let VmCommand::Run(args) = args.command;
    let mut options = VmOptions::new(&args.disk);
    options.timeout = args
        .timeout
        .or(args.expect.as_ref().map(|_| 300))
        .map(Duration::from_secs);
    options.expect = args.expect;
    options.memory_mib = args.memory;
    options.accel = args.accel;
    options.state_dir = args.state;
    options.snapshot = args.snapshot;
    options.tpm = !args.no_tpm;
    options.echo = !args.quiet;
    match run_vm(&options).with_context(|| format!("running {}", args.disk.display()))? {
        VmOutcome::Matched { line, elapsed } => {
            eprintln!("\nmatched after {:.1} s: {line}", elapsed.as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        VmOutcome::Exited { status } => {
            eprintln!("\nQEMU exited ({status})");
            Ok(ExitCode::SUCCESS)
        }
    }
}
