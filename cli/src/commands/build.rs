//! `testudo build CONFIG -o OUT [--keys DIR] [--delta-from OLD.raucb]...`: build the image of a
//! system config, and delta bundles from published base versions.
//!
//! Without `--keys`, development keys are created once in
//! `$XDG_DATA_HOME/testudo/dev-keys` (default `~/.local/share/testudo/dev-keys`) and reused.
//! The build cache defaults to `$XDG_CACHE_HOME/testudo/images` (`~/.cache/testudo/images`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use testudo_images::{keys, Cache, HostPaths, HostTools, ProgressMode, Reuse};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Nickel system config (or a plan `.json` written by `testudo plan`).
    config: PathBuf,
    /// Output directory: rootfs.img, disk.img, update.raucb, manifest.json.
    #[arg(short, long)]
    out: PathBuf,
    /// Key directory made by `testudo keys init` [default: development keys, created once in
    /// ~/.local/share/testudo/dev-keys].
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Build cache directory [default: ~/.cache/testudo/images].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Where to find native binaries (testudo-init, drivers, WASM host); repeatable
    /// [default: the directory of this testudo executable].
    #[arg(long = "bin-dir")]
    bin_dirs: Vec<PathBuf>,
    /// Directory the config's relative paths (WASM modules, trust anchors) are resolved in
    /// [default: the nearest of CONFIG's directory and its ancestors holding all of them].
    #[arg(long)]
    source_root: Option<PathBuf>,
    /// The kernel image, instead of the board's `kernel` setting (Nix: `${kernel}/bzImage`).
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// Kernel modules: a `lib/modules` root or one release's directory.
    #[arg(long, value_name = "DIR", default_value = "/lib/modules")]
    kernel_modules: PathBuf,
    /// A static busybox for the initramfs and the rootfs.
    #[arg(long, value_name = "FILE", default_value = "/usr/bin/busybox")]
    busybox: PathBuf,
    /// GRUB's x86_64 EFI modules (the directory holding normal.mod).
    #[arg(long, value_name = "DIR", default_value = testudo_images::esp::GRUB_EFI_MODULE_DIR)]
    grub_modules: PathBuf,
    /// Print one plain line per step even on a terminal.
    #[arg(long)]
    plain: bool,
    /// A published full bundle (`update.raucb` of an earlier build) to write a delta from:
    /// `OUT/delta-from-<its version>.raucb` (repeatable).
    #[arg(long = "delta-from", value_name = "OLD.raucb")]
    delta_from: Vec<PathBuf>,
}

fn default_source_root(config: &Path, plan: &testudo_plan::Plan) -> anyhow::Result<PathBuf> {
    let config = std::fs::canonicalize(config)
        .with_context(|| format!("cannot read config {}", config.display()))?;
    let config_dir = config.parent().unwrap_or(Path::new("/"));
    let inputs = testudo_images::source_root::relative_inputs(plan);
    Ok(testudo_images::source_root::find(config_dir, &inputs)
        .unwrap_or_else(|| config_dir.to_path_buf()))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let plan = super::config_input::load_config_or_plan(&args.config)?;
    let source_root = match args.source_root {
        Some(root) => root,
        None => default_source_root(&args.config, &plan)?,
    };
    let keys = match &args.keys {
        Some(dir) => {
            keys::open_keys(dir).with_context(|| format!("key directory {}", dir.display()))?
        }
        None => {
            let dir = keys::default_dev_keys_dir();
            keys::ensure_dev_keys(&dir)
                .with_context(|| format!("development keys in {}", dir.display()))?
        }
    };
    let bin_dirs = if args.bin_dirs.is_empty() {
        let exe = std::env::current_exe().context("cannot locate the testudo executable")?;
        exe.parent()
            .map(|p| vec![p.to_path_buf()])
            .unwrap_or_default()
    } else {
        args.bin_dirs
    };
    // The builder passes the clock to each tool explicitly (tools run in a clean
    // environment; the bundle writer drops SOURCE_DATE_EPOCH for mksquashfs itself).
    let source_date_epoch = std::env::var("SOURCE_DATE_EPOCH").ok();
    let request = testudo_images::BuildRequest {
        plan,
        source_root,
        out_dir: args.out.clone(),
        keys,
        bin_dirs,
        cache_dir: args.cache.unwrap_or_else(Cache::default_dir),
        source_date_epoch,
        config_file: Some(args.config.clone()),
        progress: if args.plain {
            ProgressMode::Plain
        } else {
            ProgressMode::Auto
        },
        host: HostPaths {
            kernel: args.kernel,
            kernel_modules: args.kernel_modules,
            busybox: args.busybox,
            grub_modules: args.grub_modules,
        },
    };
    let tools = HostTools::new();
    let report = testudo_images::build(&request, &tools)
        .with_context(|| format!("building {}", args.config.display()))?;
    if !args.delta_from.is_empty() {
        eprintln!(
            "computing {} delta bundle(s) (about 6x the rootfs in memory)",
            args.delta_from.len()
        );
    }
    let deltas = testudo_images::deltas::write_deltas(&args.out, &request.keys, &args.delta_from)
        .context("writing delta bundles")?;
    let cached = report
        .steps
        .iter()
        .filter(|s| s.reuse == Some(Reuse::Hit))
        .count();
    let seconds = report.seconds;
    for output in report.outputs.iter().filter(|o| !o.name.contains(':')) {
        let note = output
            .note
            .as_deref()
            .map(|n| format!("  ({n})"))
            .unwrap_or_default();
        println!(
            "{}  {:>12}  {}{note}",
            &output.sha256[..16],
            output.size,
            args.out.join(&output.name).display()
        );
    }
    for delta in &deltas {
        println!(
            "{:>12}  {}  (delta from {})",
            delta.size,
            delta.path.display(),
            delta.base_version
        );
    }
    eprintln!(
        "built in {seconds:.1} s ({cached} of {} steps cached), SOURCE_DATE_EPOCH={} ({:?})",
        report.steps.len(),
        report.epoch.seconds,
        report.epoch.source
    );
    Ok(ExitCode::SUCCESS)
}
