//! The updater component's process: the confirmation of the booted slot on a thread of its
//! own, and the `update` capability served on the main thread, over one shared OS update
//! state and one shared grubenv.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testudo_scheme::{provider_control, Server};

use crate::confirm::{confirm_boot, Confirmation};
use crate::device::{grub_on_esp, DeviceHost, Routes};
use crate::health::HealthPolicy;
use crate::scheme::{lock, UpdateProvider};
use crate::workflow::{UpdateConfig, Updates};
use crate::UpdateServiceError;

/// Stack of the updater's threads: small, so the component fits its address-space limit.
/// (Threads are not named: naming is a `prctl` the updater's filter does not allow.)
pub const THREAD_STACK: usize = 512 * 1024;

/// What the process is started with.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// When the booted slot counts as healthy.
    pub policy: HealthPolicy,
    /// The EFI system partition (the grubenv).
    pub esp: PathBuf,
    /// Where OS updates are staged and what verifies them.
    pub config: UpdateConfig,
}

// Exit at once on SIGTERM: every write the updater makes is durable before it is answered,
// and an install cut short is settled at the next start (`crate::workflow`).
use testudo_scheme::lifecycle::exit_on_sigterm;

/// One line for the component's log.
fn say(line: &str) {
    println!("updater: {line}");
}

/// Runs the updater until init stops it. The confirmation runs whatever happens to the
/// update state: an updater that cannot install still confirms (or gives up on) its boot.
pub fn run(options: ServiceOptions) -> Result<(), UpdateServiceError> {
    exit_on_sigterm();
    let routes = Routes::take()?;
    let bootnames = testudo_plan::layout::partitions::ROOTFS_SLOTS
        .iter()
        .map(|(bootname, _)| bootname.to_string())
        .collect();
    let grub = grub_on_esp(&options.esp, bootnames);
    let connected = Arc::new(AtomicBool::new(false));
    let updates = Updates::open(options.config.clone(), Arc::clone(&grub)).map(|updates| {
        if let Some(damaged) = updates.damaged_record() {
            say(&format!("{damaged}; starting with no workflow"));
        }
        Arc::new(Mutex::new(updates))
    });
    let booted = options.config.booted.clone();
    let confirming = {
        let updates = updates.as_ref().ok().map(Arc::clone);
        let mut host = DeviceHost::new(
            routes.status,
            Arc::clone(&routes.power),
            Arc::clone(&grub),
            Arc::clone(&connected),
        );
        let policy = options.policy;
        std::thread::Builder::new()
            .stack_size(THREAD_STACK)
            .spawn(move || -> Result<(), UpdateServiceError> {
                let confirmation = confirm_boot(&mut host, &booted, policy)?;
                if let (Confirmation::Confirmed { slot, .. }, Some(updates)) =
                    (confirmation, updates)
                {
                    lock(&updates).confirmed(&slot)?;
                }
                Ok(())
            })
            .map_err(|source| UpdateServiceError::Thread { source })?
    };
    let served = updates.and_then(|updates| {
        let control = provider_control().map_err(|source| UpdateServiceError::Serve { source })?;
        let Some(control) = control else {
            return Ok(());
        };
        let provider = UpdateProvider::new(updates, routes.power, connected, Arc::new(say));
        Server::new(provider)
            .with_control(control)
            .run()
            .map_err(|source| UpdateServiceError::Serve { source })
    });
    let confirmed = confirming
        .join()
        .unwrap_or(Err(UpdateServiceError::ConfirmationPanicked));
    served.and(confirmed)?;
    // Confirmed, or a reboot is under way, and nothing to serve: stay up until init stops the
    // component.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
