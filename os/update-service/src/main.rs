//! `testudo-updater`: the device's updater component (see the crate docs). Init starts it with
//! the slot GRUB booted (`--booted-slot`) and the running system's version; it confirms that
//! slot (or reboots a failing trial) and serves the `update` capability.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use testudo_plan::layout;
use testudo_update_service::service::{run, ServiceOptions};
use testudo_update_service::{HealthPolicy, UpdateConfig};

#[derive(Debug, Parser)]
#[command(
    name = "testudo-updater",
    about = "Confirms the booted slot when the system is healthy and installs OS updates"
)]
struct Args {
    /// The slot GRUB booted (`A` or `B`; init passes it from `testudo.slot=`).
    #[arg(long)]
    booted_slot: String,
    /// The running system's version (the plan's `version`; init passes it).
    #[arg(long, default_value = "")]
    system_version: String,
    /// The EFI system partition holding the grubenv.
    #[arg(long, default_value_t = layout::partitions::node(layout::partitions::ESP))]
    esp: String,
    /// The updater's directory on the data partition (staging file and record).
    #[arg(long, default_value = layout::RAUC_DATA)]
    update_dir: PathBuf,
    /// RAUC's system.conf.
    #[arg(long, default_value = layout::rootfs::RAUC_SYSTEM_CONF)]
    system_conf: PathBuf,
    /// The root keys update manifests are signed under (JWK set).
    #[arg(long, default_value = layout::rootfs::UPDATE_ROOT_KEYS)]
    root_keys: PathBuf,
    /// How long every component must run without a restart before the slot is confirmed.
    #[arg(long, default_value_t = HealthPolicy::default().stable_for.as_millis() as u64)]
    stable_for_ms: u64,
    /// How long a slot on trial gets to become healthy before the device reboots.
    #[arg(long, default_value_t = HealthPolicy::default().confirm_within.as_millis() as u64)]
    confirm_within_ms: u64,
    /// A slot on trial is healthy only once the cloud agent has reached the cloud (init passes
    /// it when a component relays OS updates to it: the cloud agent).
    #[arg(long)]
    require_connected: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = ServiceOptions {
        policy: HealthPolicy {
            stable_for: Duration::from_millis(args.stable_for_ms),
            confirm_within: Duration::from_millis(args.confirm_within_ms),
            require_connected: args.require_connected,
        },
        esp: PathBuf::from(&args.esp),
        config: UpdateConfig {
            dir: args.update_dir,
            system_conf: args.system_conf,
            root_keys: args.root_keys,
            booted: args.booted_slot,
            system_version: args.system_version,
        },
    };
    if let Err(error) = run(options) {
        eprintln!("updater: {}", testudo_error_chain::error_chain(&error));
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
