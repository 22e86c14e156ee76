//! `testudo run CONFIG`: run a whole system on this host with real isolation (each
//! component in its own sandbox under `testudo-init`'s supervisor). Prints `ready: NAMES`
//! once every component is up; SIGTERM or Ctrl-C stops everything and exits 0.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use testudo_init::device_owners::DeviceOwner;
use testudo_init::{
    signals, DeviceOwners, EventKind, EventLog, InitOptions, SoftwareTpm, Supervisor,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Nickel system config (or a plan JSON file, `*.json`).
    config: PathBuf,
    /// Directory holding the component binaries (default: the directory of `testudo`).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Runtime state directory (default: a new temporary directory, removed at exit).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Data directory for the storage driver (default: `data/` in the state directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Directory the plan's WASM module paths are relative to (default: current directory).
    #[arg(long, default_value = ".")]
    app_root: PathBuf,
    /// Print every component's runtime enforcement report (JSON lines) once ready.
    #[arg(long)]
    report: bool,
    /// Use a host path for a device node the plan names, e.g.
    /// `--device /dev/tpm0=/tmp/swtpm.sock` (a swtpm unixio socket). Repeatable; takes
    /// precedence over `--tpm`.
    #[arg(long = "device", value_name = "NODE=PATH")]
    devices: Vec<String>,
    /// What stands in for the plan's TPM nodes (`/dev/tpm*`). `swtpm` (the default): a
    /// private swtpm per node, its state in the state directory, discarded at exit; if
    /// swtpm is not installed the tpm driver is reported not started (an explicit
    /// `--tpm swtpm` makes that an error). `host`: this host's own TPM device, handed to the
    /// tpm driver's uid while running and given back to its owner at exit. `none`: no TPM
    /// (the tpm driver is not started).
    #[arg(long, value_enum)]
    tpm: Option<TpmSource>,
    /// The deploy public key signed app deployments must verify with (as the image carries
    /// it), e.g. `keys/deploy.ed25519.pub` from `testudo keys init`. Without it no
    /// deployment is accepted and app slots run their factory apps.
    #[arg(long, value_name = "FILE")]
    deploy_key: Option<PathBuf>,
    /// How long a deployed app must keep running before it replaces the previous one for
    /// good (milliseconds); ending sooner rolls its slot back.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    health_check_ms: u64,
}

/// Where the TPM comes from (`--tpm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TpmSource {
    /// A private swtpm per TPM node.
    Swtpm,
    /// The host's device node.
    Host,
    /// No TPM.
    None,
}

/// A development host's own partitions (`/dev/disk/by-partlabel/...`, which the plan names for
/// a device's ESP and slots) are never handed to a component. Each such node gets a stand-in
/// in the state directory unless `--device NODE=FILE` names one: the ESP a small FAT image
/// whose grubenv boots slot A (made with `mkfs.vfat` and mtools, as an image's ESP is), every
/// other partition an empty file (an install grows it). The simulated disk has booted slot A.
/// Without the FAT tools the partitions are withheld and their holder is not started.
/// Reported on stderr.
fn simulate_partitions(
    plan: &testudo_config::plan::Plan,
    state_dir: &std::path::Path,
    options: &mut InitOptions,
) -> anyhow::Result<()> {
    use testudo_plan::layout::partitions;
    let esp_node = partitions::node(partitions::ESP);
    let disk = state_dir.join("disk");
    for component in plan.components.values() {
        for node in &component.devices.nodes {
            let Some(name) = node
                .strip_prefix(partitions::BY_NAME)
                .and_then(|rest| rest.strip_prefix('/'))
            else {
                continue;
            };
            if options.devices.contains_key(node) || options.withheld_devices.contains_key(node) {
                continue;
            }
            std::fs::create_dir_all(&disk)
                .with_context(|| format!("creating {}", disk.display()))?;
            let stand_in = disk.join(format!("{name}.img"));
            if *node == esp_node {
                let tools = testudo_images::tool::HostTools::new();
                if let Err(error) =
                    testudo_images::esp::stand_in_esp(&tools, &disk.join("esp-work"), &stand_in)
                {
                    let reason = format!(
                        "no stand-in ESP ({:#}); this host's partitions are never given to components",
                        anyhow::Error::from(error)
                    );
                    eprintln!("testudo run: {node} -> none: {reason}");
                    options.withheld_devices.insert(node.clone(), reason);
                    continue;
                }
                if let Some((first, _)) = partitions::ROOTFS_SLOTS.first() {
                    options
                        .booted_slot
                        .get_or_insert_with(|| (*first).to_owned());
                }
            } else {
                std::fs::File::create(&stand_in)
                    .with_context(|| format!("creating {}", stand_in.display()))?;
            }
            eprintln!(
                "testudo run: {node} -> {} (a stand-in; this host's partitions are never given to components)",
                stand_in.display()
            );
            options.devices.insert(node.clone(), stand_in);
        }
    }
    Ok(())
}

/// Starts what `--tpm` asks for and maps the plan's TPM nodes onto it; returns the running
/// swtpm instances (stopped when dropped). Every choice is reported on stderr.
fn provide_tpms(
    plan: &testudo_config::plan::Plan,
    source: Option<TpmSource>,
    state_dir: &std::path::Path,
    options: &mut InitOptions,
) -> anyhow::Result<Vec<SoftwareTpm>> {
    let mut running = Vec::new();
    for node in testudo_init::swtpm::tpm_nodes(plan) {
        if let Some(path) = options.devices.get(&node) {
            eprintln!("testudo run: {node} -> {} (--device)", path.display());
            continue;
        }
        match source.unwrap_or(TpmSource::Swtpm) {
            TpmSource::Swtpm => {
                let file = node.rsplit('/').next().unwrap_or("tpm");
                match SoftwareTpm::start(&state_dir.join("swtpm").join(file)) {
                    Ok(tpm) => {
                        eprintln!(
                            "testudo run: {node} -> private swtpm (pid {}, fresh state in {}, removed at exit; --tpm host uses this host's TPM)",
                            tpm.pid(),
                            tpm.state_dir().display()
                        );
                        options
                            .devices
                            .insert(node.clone(), tpm.socket().to_owned());
                        running.push(tpm);
                    }
                    Err(error) if source.is_none() => {
                        let reason = format!("{:#}", anyhow::Error::from(error));
                        eprintln!(
                            "testudo run: {node} -> none: {reason} (pass --tpm host or --device {node}=PATH)"
                        );
                        options.withheld_devices.insert(node.clone(), reason);
                    }
                    Err(error) => {
                        return Err(error).with_context(|| format!("--tpm swtpm for {node}"))
                    }
                }
            }
            TpmSource::Host => {
                eprintln!("testudo run: {node} -> this host's {node} (--tpm host)");
            }
            TpmSource::None => {
                eprintln!("testudo run: {node} -> none (--tpm none)");
                options
                    .withheld_devices
                    .insert(node.clone(), "--tpm none".to_owned());
            }
        }
    }
    Ok(running)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let plan = super::config_input::load_config_or_plan(&args.config)?;
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()
            .context("locating the testudo binary")?
            .parent()
            .map(PathBuf::from)
            .context("the testudo binary has no directory")?,
    };
    let temp = match &args.state_dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("testudo-run-")
                .tempdir()
                .context("creating a state directory")?,
        ),
    };
    let state_dir = args
        .state_dir
        .clone()
        .or_else(|| temp.as_ref().map(|t| t.path().to_owned()))
        .context("no state directory")?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| state_dir.join("data"));
    let mut options = InitOptions::new(bin_dir, state_dir, data_dir, args.app_root.clone());
    options.echo = true;
    // The CAs the config names for the cloud agent, as the image would carry them.
    options.trust_anchors = plan
        .cloud
        .trust_anchors
        .as_ref()
        .map(PathBuf::from)
        .filter(|path| path.is_file());
    if let Some(key) = &args.deploy_key {
        anyhow::ensure!(
            key.is_file(),
            "--deploy-key {}: no such file (`testudo keys init DIR` writes DIR/deploy.ed25519.pub)",
            key.display()
        );
    }
    options.deploy_key = args.deploy_key.clone();
    options.slot_health_check = Duration::from_millis(args.health_check_ms);
    for mapping in &args.devices {
        let (node, path) = mapping
            .split_once('=')
            .with_context(|| format!("--device {mapping}: expected NODE=PATH"))?;
        options.devices.insert(node.to_owned(), PathBuf::from(path));
    }
    let tpm_dir = options.state_dir.clone();
    let software_tpms = provide_tpms(&plan, args.tpm, &tpm_dir, &mut options)?;
    let disk_dir = options.state_dir.clone();
    simulate_partitions(&plan, &disk_dir, &mut options)?;
    // As root, init hands each device path to its driver's uid; given back when the run ends
    // (whether or not supervision ended well: the guard also does on `?`).
    let mut device_owners = DeviceOwners::for_plan(&plan, &options).with_report(|given| {
        let DeviceOwner { path, uid, gid } = given.owner;
        match given.result {
            Ok(()) => eprintln!(
                "testudo run: {} given back to uid {uid}, gid {gid}",
                path.display()
            ),
            Err(error) => eprintln!(
                "testudo run: could not give {} back to uid {uid}, gid {gid}: {error}",
                path.display()
            ),
        }
    });
    let stop = signals::stop_on_signals().context("installing signal handlers")?;
    let events = EventLog::new(true);
    let mut supervisor =
        Supervisor::new(plan, options, events.clone()).context("preparing the system")?;
    let power = supervisor.power_requests();
    let supervisor_started = Instant::now();
    let watcher = events.clone();
    let report = args.report;
    std::thread::spawn(move || {
        if let Some(event) = watcher.wait_for(Duration::from_secs(86_400 * 365), |e| {
            matches!(e.kind, EventKind::Ready { .. })
        }) {
            println!(
                "{} (in {} ms; {} ms including loading the config)",
                event.line(),
                supervisor_started.elapsed().as_millis(),
                started.elapsed().as_millis()
            );
            if report {
                for event in watcher.snapshot() {
                    if let EventKind::Started { report, .. } = &event.kind {
                        if let Ok(json) = serde_json::to_string(report) {
                            println!("{json}");
                        }
                    }
                }
            }
        }
    });
    let supervised = supervisor
        .run(stop.as_fd())
        .context("supervising the system");
    device_owners.give_back();
    supervised?;
    drop(software_tpms);
    if let Some((action, by)) = power.pending() {
        println!(
            "{} asked by {by}: a device would {} now",
            action.word(),
            action.word()
        );
    }
    println!("stopped");
    drop(temp);
    Ok(ExitCode::SUCCESS)
}
