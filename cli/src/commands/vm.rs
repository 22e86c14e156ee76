//! `testudo vm run DISK [--expect REGEX] [--timeout SECONDS]`: boot an image in QEMU
//! (OVMF, swtpm TPM, serial console on stdout); `testudo vm tpm-ek --state DIR`: the
//! endorsement key of the VM's TPM, for enrolling it with DPS; `testudo vm scenario
//! rollback ...`: a VM scenario of `testudo_images::vm_scenario` (what the cargo VM tests and
//! the Nix checks both run).

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
    /// Print the endorsement key of the VM's TPM (base64 `TPM2B_PUBLIC`), creating the TPM
    /// state if needed: what a factory enrolls (`testudo hub enrollment add --tpm-ek`).
    #[cfg(feature = "agent")]
    TpmEk(TpmEkArgs),
    /// Run a VM scenario: boots and disk changes with what each boot must show.
    #[command(subcommand)]
    Scenario(ScenarioCommand),
}

#[derive(Debug, clap::Subcommand)]
enum ScenarioCommand {
    /// The device confirms a good slot, gives a broken update its boot tries, falls back and
    /// abandons it by itself (images of `images/scenarios/rollback-{good,broken}.ncl`).
    Rollback(RollbackArgs),
}

#[derive(Debug, clap::Args)]
struct RollbackArgs {
    /// `disk.img` of the good image (copied, never written).
    #[arg(long, value_name = "FILE")]
    good_disk: PathBuf,
    /// `update.raucb` of the broken image.
    #[arg(long, value_name = "FILE")]
    broken_bundle: PathBuf,
    /// The CA the bundles are signed under (`ca.pem` of the keys).
    #[arg(long, value_name = "FILE")]
    keyring: PathBuf,
    /// Scratch directory for the disk copy [default: a temporary one].
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    #[command(flatten)]
    firmware: FirmwareArgs,
    /// Do not echo the console.
    #[arg(long, short)]
    quiet: bool,
}

/// UEFI firmware other than Debian's OVMF.
#[derive(Debug, clap::Args)]
struct FirmwareArgs {
    /// UEFI firmware code [default: Debian's /usr/share/OVMF/OVMF_CODE_4M.fd].
    #[arg(long, value_name = "FILE")]
    firmware_code: Option<PathBuf>,
    /// UEFI variable store template, copied per VM [default: Debian's OVMF_VARS_4M.fd].
    #[arg(long, value_name = "FILE")]
    firmware_vars: Option<PathBuf>,
}

impl FirmwareArgs {
    fn apply(self, options: &mut VmOptions) {
        if let Some(code) = self.firmware_code {
            options.firmware.code = code;
        }
        if let Some(vars) = self.firmware_vars {
            options.firmware.vars_template = vars;
        }
    }
}

/// `testudo vm scenario rollback`: each step is printed as it passes.
fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let scratch;
    let work = match args.work {
        Some(dir) => dir,
        None => {
            scratch = tempfile::tempdir().context("creating a scratch directory")?;
            scratch.path().to_path_buf()
        }
    };
    let mut options = VmOptions::new(&args.good_disk);
    args.firmware.apply(&mut options);
    options.echo = !args.quiet;
    let inputs = testudo_images::vm_scenario::RollbackInputs {
        good_disk: args.good_disk,
        broken_bundle: args.broken_bundle,
        keyring: args.keyring,
        work,
    };
    let tools = testudo_images::HostTools::new();
    // The error names the scenario and its step itself.
    testudo_images::vm_scenario::rollback(&inputs, &options, &tools, &mut |step| {
        eprintln!("scenario rollback: {step}");
    })?;
    eprintln!("scenario rollback: passed");
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "agent")]
#[derive(Debug, clap::Args)]
struct TpmEkArgs {
    /// The VM's state directory (as given to `testudo vm run --state`).
    #[arg(long)]
    state: PathBuf,
    /// Write the key to this file instead of stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// `testudo vm tpm-ek`: the EK (and the SRK, which registration sends) are created in the
/// VM's TPM state as the device's first registration would, then the EK is printed.
#[cfg(feature = "agent")]
fn tpm_ek(args: TpmEkArgs) -> anyhow::Result<ExitCode> {
    use base64::Engine as _;
    let tpm = testudo_images::vm_tpm::open_vm_tpm(&args.state)
        .with_context(|| format!("opening the TPM in {}", args.state.display()))?;
    let keys = testudo_agent::dps_tpm::read_public_keys(&tpm.tcti)
        .with_context(|| format!("reading the endorsement key in {}", args.state.display()))?;
    drop(tpm);
    let text = base64::engine::general_purpose::STANDARD.encode(&keys.endorsement_key);
    match args.output {
        Some(path) => std::fs::write(&path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?,
        None => println!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The disk image (OUT/disk.img from `testudo build`).
    disk: PathBuf,
    /// Exit 0 as soon as a serial console line matches this regular expression.
    #[arg(long, conflicts_with = "until_ready")]
    expect: Option<String>,
    /// Exit 0 as soon as testudo-init reports every component ready.
    #[arg(long)]
    until_ready: bool,
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
    #[command(flatten)]
    firmware: FirmwareArgs,
    /// Run without a TPM.
    #[arg(long)]
    no_tpm: bool,
    /// Do not echo the console.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let args = match args.command {
        VmCommand::Run(args) => args,
        #[cfg(feature = "agent")]
        VmCommand::TpmEk(args) => return tpm_ek(args),
        VmCommand::Scenario(ScenarioCommand::Rollback(args)) => return rollback(args),
    };
    let mut options = VmOptions::new(&args.disk);
    let expect = if args.until_ready {
        Some(testudo_images::vm::READY_PATTERN.to_owned())
    } else {
        args.expect
    };
    options.timeout = args
        .timeout
        .or(expect.as_ref().map(|_| 300))
        .map(Duration::from_secs);
    options.expect = expect;
    args.firmware.apply(&mut options);
    options.memory_mib = args.memory;
    options.accel = args.accel;
    options.state_dir = args.state;
    options.snapshot = args.snapshot;
    options.tpm = !args.no_tpm;
    options.echo = !args.quiet;
    match run_vm(&options).with_context(|| format!("running {}", args.disk.display()))? {
        VmOutcome::Matched { line, elapsed, .. } => {
            eprintln!("\nmatched after {:.1} s: {line}", elapsed.as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        VmOutcome::Exited { status } => {
            eprintln!("\nQEMU exited ({status})");
            Ok(ExitCode::SUCCESS)
        }
    }
}
