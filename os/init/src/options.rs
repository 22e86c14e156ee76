//! How the supervisor is configured (paths and restart tuning).

use std::path::PathBuf;
use std::time::Duration;

/// Restart backoff and crash-loop detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first restart; doubles with each restart inside the window.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// More than `max_restarts` restarts within `window` is a crash loop: the component is
    /// marked failed and not restarted again.
    pub window: Duration,
    /// Restarts allowed within `window`.
    pub max_restarts: u32,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            window: Duration::from_secs(30),
            max_restarts: 5,
        }
    }
}

/// Where things are and how to behave.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Directory holding the component binaries (`testudo-log`, ..., `testudo-wasm-host`).
    pub bin_dir: PathBuf,
    /// Runtime state: sandbox root mount points, the plan copy for the WASM host, caches.
    pub state_dir: PathBuf,
    /// The data partition: the storage driver's per-component directories live here.
    pub data_dir: PathBuf,
    /// Directory the plan's WASM module paths are relative to.
    pub app_root: PathBuf,
    /// Restart tuning.
    pub backoff: Backoff,
    /// How long components get to exit after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
    /// First host uid/gid for components when running as root (component i gets base + i).
    pub uid_base: u32,
    /// Echo events on stderr.
    pub echo: bool,
    /// Host paths standing in for device nodes, e.g. `/dev/tpm0` -> a swtpm `unixio`
    /// socket on a developer's host. Inside the sandbox the node keeps its plan path.
    pub devices: std::collections::BTreeMap<String, PathBuf>,
    /// Device nodes deliberately not provided on this run, with the reason (e.g.
    /// `testudo run --tpm none`): a component owning one is reported not started.
    pub withheld_devices: std::collections::BTreeMap<String, String>,
    /// Set up the sandboxes of independent components concurrently (default). `false`
    /// starts them one after another (the benchmark compares both).
    pub concurrent_start: bool,
    /// The rootfs slot this system booted from (the kernel command line's `testudo.slot=`),
    /// reported to the cloud; `None` on a development host.
    pub booted_slot: Option<String>,
    /// The CA bundle the cloud agent trusts (the image's
    /// [`testudo_plan::layout::rootfs::TRUST_ANCHORS`]); shown read-only at that path in the
    /// sandbox of the component providing `identity` when the file exists.
    pub trust_anchors: Option<PathBuf>,
    /// The public key app deployments must be signed with (the image's
    /// [`testudo_plan::layout::rootfs::DEPLOY_PUBLIC_KEY`]); `None`: no deployment is
    /// accepted, slots run their factory apps.
    pub deploy_key: Option<PathBuf>,
    /// What the updater verifies OS updates with (the image's RAUC system.conf and keyring, and
    /// the root keys of update manifests), shown read-only at the same paths in its sandbox
    /// when they exist.
    pub update_files: Vec<PathBuf>,
    /// How long a newly deployed app must keep running before it replaces the previous one
    /// for good; ending sooner rolls the slot back.
    pub slot_health_check: Duration,
}

impl InitOptions {
    /// Options with defaults for everything but the directories.
    /// The options of init as PID 1 on a device: the image's binaries, app layer and data
    /// partition, runtime state on `/run` (paths from [`testudo_plan::layout`]).
    pub fn device() -> InitOptions {
        use testudo_plan::layout;
        let mut options = InitOptions::new(
            PathBuf::from(layout::rootfs::BIN_DIR),
            PathBuf::from(layout::STATE),
            PathBuf::from(layout::DATA),
            PathBuf::from(layout::rootfs::APPS),
        );
        options.trust_anchors = Some(PathBuf::from(layout::rootfs::TRUST_ANCHORS));
        options.deploy_key = Some(PathBuf::from(layout::rootfs::DEPLOY_PUBLIC_KEY));
        options.update_files = [
            layout::rootfs::RAUC_SYSTEM_CONF,
            layout::rootfs::RAUC_KEYRING,
            layout::rootfs::UPDATE_ROOT_KEYS,
        ]
        .map(PathBuf::from)
        .to_vec();
        options.booted_slot = std::fs::read_to_string("/proc/cmdline")
            .ok()
            .and_then(|cmdline| testudo_plan::env::booted_slot(&cmdline));
        options
    }

    /// Options with the given directories and default supervision settings.
    pub fn new(
        bin_dir: PathBuf,
        state_dir: PathBuf,
        data_dir: PathBuf,
        app_root: PathBuf,
    ) -> InitOptions {
        InitOptions {
            bin_dir,
            state_dir,
            data_dir,
            app_root,
            backoff: Backoff::default(),
            stop_grace: Duration::from_secs(2),
            uid_base: 110_000,
            echo: false,
            devices: std::collections::BTreeMap::new(),
            withheld_devices: std::collections::BTreeMap::new(),
            concurrent_start: true,
            booted_slot: None,
            trust_anchors: None,
            deploy_key: None,
            update_files: Vec::new(),
            slot_health_check: Duration::from_secs(3),
        }
    }
}
