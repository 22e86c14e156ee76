//! `testudo update install|status|mark-good|mark-bad|mark-active`: A/B updates on a device
//! described by RAUC's system.conf.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use testudo_updater::install::{self, InstallOptions};
use testudo_updater::mark::{self, Mark, MarkTarget};
use testudo_updater::signature::Keyring;
use testudo_updater::system_conf::{SlotConf, SystemConf, DEFAULT_PATH};
use testudo_updater::{bootloader, bundle, slot};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The system.conf describing slots, bootloader and keyring.
    #[arg(long, global = true, default_value = DEFAULT_PATH)]
    conf: PathBuf,
    /// Take this slot (bootname or slot name) as booted instead of reading /proc/cmdline.
    #[arg(long, global = true)]
    override_boot_slot: Option<String>,
    #[command(subcommand)]
    command: UpdateCommand,
}

#[derive(Debug, clap::Subcommand)]
enum UpdateCommand {
    /// Verify BUNDLE and install it into the inactive slot; it boots next with one try.
    Install {
        /// The bundle.
        bundle: PathBuf,
        /// Accept a version lower than the installed one.
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Show booted slot, primary, and every slot's state.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Confirm a slot (default: the booted one) so it keeps booting.
    MarkGood {
        /// booted, other, or a bootname / slot name.
        #[arg(default_value = "booted")]
        slot: MarkTarget,
    },
    /// Make a slot not bootable.
    MarkBad {
        /// booted, other, or a bootname / slot name.
        #[arg(default_value = "booted")]
        slot: MarkTarget,
    },
    /// Make a slot primary with one try.
    MarkActive {
        /// booted, other, or a bootname / slot name.
        #[arg(default_value = "booted")]
        slot: MarkTarget,
    },
}

fn booted<'c>(conf: &'c SystemConf, override_slot: Option<&str>) -> anyhow::Result<&'c SlotConf> {
    if let Some(name) = override_slot {
        return Ok(slot::by_name(conf, name)?);
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    slot::booted_from_cmdline(conf, &cmdline).with_context(|| {
        format!(
            "cannot tell the booted slot: no {} or matching root= on the kernel command line \
             (use --override-boot-slot)",
            testudo_plan::layout::cmdline::RAUC_SLOT
        )
    })
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let conf =
        SystemConf::load(&args.conf).with_context(|| format!("loading {}", args.conf.display()))?;
    let booted = booted(&conf, args.override_boot_slot.as_deref())?;
    let mut boot = bootloader::open(&conf)?;
    match args.command {
        UpdateCommand::Install {
            bundle,
            allow_downgrade,
        } => install_bundle(&conf, booted, boot.as_mut(), &bundle, allow_downgrade)?,
        UpdateCommand::Status { json } => status(&conf, booted, boot.as_mut(), json)?,
        UpdateCommand::MarkGood { slot } => {
            marked(&conf, booted, boot.as_mut(), Mark::Good, &slot, "good")?
        }
        UpdateCommand::MarkBad { slot } => {
            marked(&conf, booted, boot.as_mut(), Mark::Bad, &slot, "bad")?
        }
        UpdateCommand::MarkActive { slot } => {
            marked(&conf, booted, boot.as_mut(), Mark::Active, &slot, "active")?
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `update install`: verify against the system.conf keyring (an encrypted bundle opened with
/// its `[encryption]` key), then install with progress on stderr.
fn install_bundle(
    conf: &SystemConf,
    booted: &SlotConf,
    boot: &mut dyn bootloader::Bootloader,
    path: &Path,
    allow_downgrade: bool,
) -> anyhow::Result<()> {
    let keyring_path = conf
        .keyring
        .as_ref()
        .context("system.conf has no [keyring] path=")?;
    let keyring = Keyring::load(keyring_path, conf.check_purpose)?;
    let decryptor = match &conf.encryption {
        Some(encryption) => Some(encryption.load()?),
        None => None,
    };
    let verified =
        bundle::open_with(path, &keyring, decryptor.as_ref()).context("bundle rejected")?;
    let options = InstallOptions {
        allow_downgrade,
        ..InstallOptions::default()
    };
    let crash_at = crash_point_from_env()?;
    let mut progress = Progress {
        total: verified
            .manifest
            .images
            .iter()
            .map(|i| i.installed_size())
            .sum(),
        written: 0,
        last_decile: None,
    };
    let mut observer = |index: usize, step: &install::Step| {
        if crash_at == Some(index) {
            // Test hook: die like a power cut, without unwinding or clean-up.
            std::process::abort();
        }
        progress.report(step);
        ControlFlow::Continue(())
    };
    let report = install::install(conf, booted, &verified, boot, &options, &mut observer)
        .with_context(|| format!("installing {}", path.display()))?;
    for program in &report.programs {
        eprintln!("{}: {}", program.name, program.exit);
        for line in program.stdout.lines().chain(program.stderr.lines()) {
            eprintln!("  | {line}");
        }
    }
    println!(
        "installed version {} into {} ({}); it boots next with one try",
        report.version.as_deref().unwrap_or("?"),
        report.target,
        report.bootname
    );
    Ok(())
}

/// Install progress on stderr: the steps that matter to a human, and the write in tenths.
struct Progress {
    total: u64,
    written: u64,
    last_decile: Option<u64>,
}

impl Progress {
    fn report(&mut self, step: &install::Step) {
        match step {
            install::Step::MarkTargetBad { bootname } => {
                eprintln!("marking slot {bootname} not bootable");
            }
            install::Step::WriteChunk { slot, len, .. } => {
                self.written += *len as u64;
                let decile = (self.written * 10).checked_div(self.total).unwrap_or(10);
                if self.last_decile != Some(decile) {
                    self.last_decile = Some(decile);
                    eprintln!("writing {slot}: {}%", decile * 10);
                }
            }
            install::Step::SyncSlot { slot } => eprintln!("syncing and reading back {slot}"),
            install::Step::RunProgram { program } => {
                eprintln!("running the bundle's {program}, sandboxed");
            }
            install::Step::SetPrimary { bootname } => {
                eprintln!("making slot {bootname} primary with one try");
            }
            install::Step::RecordInstalling { .. } | install::Step::RecordInstalled { .. } => {}
        }
    }
}

/// `update status [--json]`.
fn status(
    conf: &SystemConf,
    booted: &SlotConf,
    boot: &mut dyn bootloader::Bootloader,
    json: bool,
) -> anyhow::Result<()> {
    let report = mark::report(conf, booted, boot)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("compatible: {}", report.compatible);
    println!("bootloader: {}", report.bootloader);
    println!("booted:     {}", report.booted);
    println!(
        "primary:    {}",
        report.primary.as_deref().unwrap_or("(none)")
    );
    for slot in &report.slots {
        println!(
            "{} [{}] {}: boot={} status={} version={}",
            slot.name,
            slot.bootname.as_deref().unwrap_or("-"),
            slot.device,
            slot.boot_state.map_or("-", |s| s.as_str()),
            slot.status.status.as_deref().unwrap_or("-"),
            slot.status.bundle_version.as_deref().unwrap_or("-"),
        );
    }
    Ok(())
}

fn marked(
    conf: &SystemConf,
    booted: &SlotConf,
    boot: &mut dyn bootloader::Bootloader,
    what: Mark,
    target: &MarkTarget,
    word: &str,
) -> anyhow::Result<()> {
    let name = mark::mark(conf, booted, boot, what, target)?;
    println!("marked slot {name} as {word}");
    Ok(())
}

/// `TESTUDO_UPDATER_CRASH_AT=N`: abort right before install write step N (power-cut tests).
fn crash_point_from_env() -> anyhow::Result<Option<usize>> {
    match std::env::var("TESTUDO_UPDATER_CRASH_AT") {
        Ok(value) => Ok(Some(value.parse().with_context(|| {
            format!("TESTUDO_UPDATER_CRASH_AT={value:?} is not a step number")
        })?)),
        Err(_) => Ok(None),
    }
}
