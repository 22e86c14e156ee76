//! The plan: the one artifact that crosses from configuration into every later stage.
//!
//! It is plain data with a stable, documented JSON form (`docs/plan-format.md`). Maps are
//! `BTreeMap` so serialisation is sorted; nothing in it depends on the time or the machine.
//! Stages downstream (image builder, `testudo-init`, the WASM host, the cloud agent) read it
//! and never re-evaluate Nickel.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the plan format. Bump on any incompatible change.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// A validated system, ready to be built and run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Plan format version ([`PLAN_FORMAT_VERSION`]).
    pub format: u32,
    /// System name, e.g. `gateway`.
    pub name: String,
    /// Semantic version of the system image.
    pub version: String,
    /// RAUC `compatible` string: bundles for another string are refused.
    pub compatible: String,
    /// The board, as evaluated from its Nickel definition.
    pub board: Board,
    /// Every component by name.
    pub components: BTreeMap<String, PlanComponent>,
    /// Slots the cloud may deploy WASM apps into, by name.
    pub app_slots: BTreeMap<String, AppSlot>,
    /// Update policy for the A/B updater.
    pub update: UpdatePolicy,
    /// Cloud identity and hub connection.
    pub cloud: CloudConfig,
}

/// Hardware/boot description of the target board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Board name, e.g. `qemu-x86_64`.
    pub name: String,
    /// Target architecture, e.g. `x86_64`.
    pub arch: String,
    /// Memory available to components, in bytes.
    pub memory_bytes: u64,
    /// Kernel image: a file path, relative to the board file's directory or absolute on the
    /// build host (the default is the Debian cloud kernel).
    pub kernel: String,
    /// Bootloader used by the image (`grub`).
    pub bootloader: String,
    /// Serial console device for the kernel command line, e.g. `ttyS0`.
    pub console: String,
    /// Partition sizes in bytes.
    pub partitions: Partitions,
}

/// Partition sizes of the disk image, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partitions {
    pub esp_bytes: u64,
    pub rootfs_bytes: u64,
    pub data_bytes: u64,
}

/// What kind of thing a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    /// A user-space driver daemon that may own device resources.
    Driver,
    /// A native service daemon.
    Service,
    /// A WebAssembly app run by the WASM host.
    Wasm,
}

/// One component of the system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanComponent {
    pub kind: ComponentKind,
    /// What the component runs.
    pub run: Run,
    /// Device resources owned by this component (drivers only; empty otherwise).
    pub devices: Devices,
    /// Capabilities this component provides, by capability name.
    pub provides: BTreeMap<String, Provided>,
    /// Capabilities routed to this component, by the component's local name for them.
    /// This is *everything* the component may hold: there is no default route.
    pub uses: BTreeMap<String, Route>,
    /// Resource limits and restart policy.
    pub limits: Limits,
    /// Components that must be running before this one starts (sorted, deduplicated).
    pub after: Vec<String>,
    /// Environment variables given to the component (sorted by key).
    pub env: BTreeMap<String, String>,
    /// Arguments given to the component.
    pub args: Vec<String>,
}

/// What a component runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Run {
    /// A native binary, looked up by name in the image's binary directory.
    Binary { name: String },
    /// A WebAssembly module, by path relative to the repository (the image builder copies it).
    Wasm { module: String },
}

/// Device resources a driver owns exclusively.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Devices {
    /// Device nodes, e.g. `/dev/tpm0`.
    pub nodes: Vec<String>,
    /// PCI ids `vendor:device`, e.g. `8086:100e`.
    pub pci: Vec<String>,
    /// Whether this component owns the network (keeps the host network namespace).
    pub network: bool,
}

/// The interface type of a capability. Routes must match interfaces exactly.
pub type Interface = String;

/// A capability provided by a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provided {
    /// Interface type, e.g. `log`, `storage`, `tpm`, `net`, `sensor`, `telemetry`.
    pub interface: Interface,
}

/// Access rights carried by a route (and by the handle that realises it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rights {
    Read,
    Write,
    ReadWrite,
}

impl Rights {
    /// True when `self` grants nothing beyond `max`.
    pub fn within(self, max: Rights) -> bool {
        match max {
            Rights::ReadWrite => true,
            other => self == other,
        }
    }

    pub fn can_read(self) -> bool {
        matches!(self, Rights::Read | Rights::ReadWrite)
    }

    pub fn can_write(self) -> bool {
        matches!(self, Rights::Write | Rights::ReadWrite)
    }
}

/// A resolved capability route: the consumer's local name maps to a provider's capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Providing component.
    pub component: String,
    /// Capability name on the provider.
    pub capability: String,
    /// Interface type (copied from the provider; checked to match the consumer's expectation).
    pub interface: Interface,
    /// Rights granted over the capability.
    pub rights: Rights,
    /// Route parameters, sorted: e.g. for `net` the `host:port` destinations allowed,
    /// for `storage` nothing (the provider gives each consumer its own directory).
    pub allow: Vec<String>,
}

/// Restart policy for a supervised component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

/// Resource limits for a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory limit in bytes (cgroup memory.max or RLIMIT_AS; WASM linear memory for apps).
    pub memory_bytes: u64,
    /// CPU share in percent of one core (1..=100 per core).
    pub cpu_percent: u32,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Maximum number of processes/threads (RLIMIT_NPROC inside the sandbox).
    pub max_tasks: u32,
    /// For WASM apps: CPU time budget per call into the app, in milliseconds (0 = none).
    pub cpu_time_ms: u64,
}

/// A slot into which the cloud may later deploy a signed WASM app. The slot fixes the
/// maximum capabilities; a deployment chooses the module, never widens the rights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSlot {
    /// The most an app in this slot may ever be routed, by local name.
    pub max_uses: BTreeMap<String, Route>,
    /// Limits for an app in this slot.
    pub limits: Limits,
    /// Components that must be running before an app in this slot starts.
    pub after: Vec<String>,
}

/// A/B update policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    /// Boot attempts a new slot gets before it is abandoned.
    pub boot_tries: u32,
    /// Refuse bundles older than the installed version unless explicitly overridden.
    pub allow_downgrade: bool,
    /// Bundle format to build: `verity` or `plain`.
    pub bundle_format: String,
}

/// Cloud identity and hub connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    /// IoT Hub host name, e.g. `myhub.azure-devices.net`.
    pub hub: String,
    /// Device id (registration id for DPS).
    pub device_id: String,
    /// How the device proves its identity: `tpm_sas`, `sas`, `x509`.
    pub identity: String,
    /// DPS id scope, when the device is provisioned through DPS.
    pub dps_scope: Option<String>,
}
