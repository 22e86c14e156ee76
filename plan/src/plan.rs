//! The plan: the one artifact that crosses from configuration into every later stage.
//!
//! It is plain data with a stable, documented JSON form (`docs/plan-format.md`). Maps are
//! `BTreeMap` so serialisation is sorted; nothing in it depends on the time or the machine.
//! Stages downstream (image builder, `testudo-init`, the WASM host, the cloud agent) read it
//! and never re-evaluate Nickel.
//!
//! Bytes and identity: [`Plan::to_canonical_json`] gives the canonical text `testudo plan`
//! writes; [`Plan::content_hash`] is its sha256; [`Plan::from_bytes`] and [`Plan::read`]
//! read a plan back, refusing another format version before anything else.
//! [`AppSlot::admits`] is the one check of a deployment against a slot's maximum.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::PlanError;
pub use crate::roles::SandboxRole;

/// Version of the plan format. Bump on any incompatible change.
///
/// - 1: the first format.
/// - 2: `components.<name>.role` (the component's sandbox role) is required.
/// - 3: `board.network`, `hosts`; `cloud.dps` (endpoint, scope, attestation) replaces
///   `cloud.dps_scope`; `cloud.model_id`, `cloud.trust_anchors`, `cloud.mqtt_port`.
pub const PLAN_FORMAT_VERSION: u32 = 3;

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
    /// Host names the device resolves without DNS, to IP addresses (like `/etc/hosts`):
    /// names a board's resolver cannot answer, e.g. a local hub reached through QEMU's
    /// gateway. Consulted before DNS.
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
}

/// Hardware/boot description of the target board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Board name, e.g. `qemu-x86_64`.
    pub name: String,
    /// Target architecture, e.g. `x86_64`.
    pub arch: String,
    /// Processor features beyond the architecture's baseline that every CPU of the board has
    /// (Cranelift names, e.g. `sse3`): what precompiled WASM code may assume.
    #[serde(default)]
    pub cpu_features: Vec<String>,
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
    /// Kernel modules of the board, by what needs them.
    #[serde(default)]
    pub modules: BoardModules,
    /// The board's network interface and how it is configured; absent on boards whose
    /// network is configured by the host (development hosts).
    #[serde(default)]
    pub network: Option<BoardNetwork>,
}

/// How a board's network interface is configured at boot by the component that owns the
/// network. Static addressing only: boards with a fixed network (QEMU's user network) need
/// no DHCP client on the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardNetwork {
    /// The interface's kernel name, e.g. `eth0`.
    pub interface: String,
    /// Its IPv4 address with prefix length, e.g. `10.0.2.15/24`.
    pub address: String,
    /// The default gateway, e.g. `10.0.2.2` (absent: no default route).
    #[serde(default)]
    pub gateway: Option<String>,
    /// DNS servers to ask, in order, e.g. `["10.0.2.3"]`.
    #[serde(default)]
    pub dns: Vec<String>,
}

/// Kernel modules of a board, grouped by what needs them; the image builder loads a group
/// only when the plan needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardModules {
    /// Always loaded, by the initramfs before it looks for the root partition (the disk
    /// controller's drivers).
    #[serde(default)]
    pub always: Vec<String>,
    /// Network interface drivers, loaded when a component owns the network.
    #[serde(default)]
    pub network: Vec<String>,
    /// TPM interface drivers, loaded when a component owns a `/dev/tpm*` node.
    #[serde(default)]
    pub tpm: Vec<String>,
}

/// Partition sizes of the disk image, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partitions {
    /// EFI system partition (GRUB, kernel, initramfs, grubenv).
    pub esp_bytes: u64,
    /// Each of the two A/B root file system slots.
    pub rootfs_bytes: u64,
    /// The persistent data partition.
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
    /// Driver, service or WASM app.
    pub kind: ComponentKind,
    /// The sandbox role: which seccomp allowlist the component runs under.
    pub role: SandboxRole,
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
    Binary {
        /// Binary file name, e.g. `testudo-log` (no path).
        name: String,
    },
    /// A WebAssembly module, by path relative to the repository (the image builder copies it).
    Wasm {
        /// Module path relative to the repository root, e.g. `wasm-apps/forwarder.wasm`.
        module: String,
    },
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
    /// Read only (e.g. a sensor, an identity).
    Read,
    /// Write only (e.g. a log sink, a telemetry upload).
    Write,
    /// Both.
    ReadWrite,
}

impl std::fmt::Display for Rights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rights::Read => "read",
            Rights::Write => "write",
            Rights::ReadWrite => "read_write",
        })
    }
}

impl Rights {
    /// True when `self` grants nothing beyond `max`.
    pub fn within(self, max: Rights) -> bool {
        match max {
            Rights::ReadWrite => true,
            other => self == other,
        }
    }

    /// True when these rights include reading.
    pub fn can_read(self) -> bool {
        matches!(self, Rights::Read | Rights::ReadWrite)
    }

    /// True when these rights include writing.
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
    /// Restart whenever it exits.
    Always,
    /// Restart when it exits with a failure status or a signal.
    OnFailure,
    /// Never restart.
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
    /// The factory app placed in the slot before any cloud deployment (absent when the slot
    /// starts empty). Its routes are within `max_uses` (checked by `testudo check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<SlotApp>,
}

/// An app placed in a slot: the module and the routes it is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotApp {
    /// WASM module path, relative to the repository root (as in [`Run::Wasm`]).
    pub module: String,
    /// Routes given to the app, by local name; a subset of the slot's `max_uses`.
    pub uses: BTreeMap<String, Route>,
}

impl AppSlot {
    /// Checks that `uses` (what a deployment asks for) stays within this slot's `max_uses`:
    /// every local name exists in the maximum with the same target and interface, rights
    /// within the maximum's rights and `allow` entries among the maximum's entries.
    /// Returns every violation with its local name. The component that deploys apps calls
    /// this before running one; `testudo check` calls it on the slot's initial app.
    pub fn admits(
        &self,
        uses: &BTreeMap<String, Route>,
    ) -> Result<(), Vec<(String, RouteBeyondSlot)>> {
        let violations: Vec<(String, RouteBeyondSlot)> = uses
            .iter()
            .filter_map(|(local, route)| {
                route_within(local, route, &self.max_uses)
                    .err()
                    .map(|reason| (local.clone(), reason))
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

/// Why a route is beyond an app slot's maximum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteBeyondSlot {
    /// The local name is not in the slot's `max_uses`.
    #[error("`{local}` is not among the slot's max_uses ({})", allowed.join(", "))]
    UnknownName {
        /// The local name asked for.
        local: String,
        /// The local names the slot allows.
        allowed: Vec<String>,
    },
    /// The route targets another provider capability than the maximum's.
    #[error("routes to `{target}` but the slot allows only `{allowed}`")]
    Target {
        /// `component.capability` asked for.
        target: String,
        /// `component.capability` the slot allows.
        allowed: String,
    },
    /// The route's interface differs from the maximum's.
    #[error("interface `{found}` but the slot allows `{allowed}`")]
    Interface {
        /// The interface asked for.
        found: String,
        /// The interface the slot allows.
        allowed: String,
    },
    /// The route's rights exceed the maximum's.
    #[error("rights {found} exceed the slot's maximum {max}")]
    Rights {
        /// The rights asked for.
        found: Rights,
        /// The most the slot allows.
        max: Rights,
    },
    /// An `allow` entry is not among the maximum's.
    #[error("allow entry `{entry}` is not in the slot's maximum")]
    Allow {
        /// The entry asked for.
        entry: String,
    },
}

/// Checks one route against a slot maximum; `Err` says why it is beyond it.
pub fn route_within(
    local: &str,
    route: &Route,
    max_uses: &BTreeMap<String, Route>,
) -> Result<(), RouteBeyondSlot> {
    let Some(max) = max_uses.get(local) else {
        return Err(RouteBeyondSlot::UnknownName {
            local: local.to_owned(),
            allowed: max_uses.keys().cloned().collect(),
        });
    };
    if (route.component.as_str(), route.capability.as_str())
        != (max.component.as_str(), max.capability.as_str())
    {
        return Err(RouteBeyondSlot::Target {
            target: format!("{}.{}", route.component, route.capability),
            allowed: format!("{}.{}", max.component, max.capability),
        });
    }
    if route.interface != max.interface {
        return Err(RouteBeyondSlot::Interface {
            found: route.interface.clone(),
            allowed: max.interface.clone(),
        });
    }
    if !route.rights.within(max.rights) {
        return Err(RouteBeyondSlot::Rights {
            found: route.rights,
            max: max.rights,
        });
    }
    if let Some(extra) = route.allow.iter().find(|a| !max.allow.contains(a)) {
        return Err(RouteBeyondSlot::Allow {
            entry: extra.clone(),
        });
    }
    Ok(())
}

/// The most boots `update.boot_tries` may give a slot (GRUB counts them in one digit).
pub const MAX_BOOT_TRIES: u32 = 9;

/// A/B update policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    /// Boot attempts a slot gets, after it is activated or confirmed, before the bootloader
    /// abandons it for the other slot: 1 ..= [`MAX_BOOT_TRIES`].
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
    /// IoT Hub host name, e.g. `myhub.azure-devices.net`: the hub the device connects to, or
    /// with DPS the hub it expects to be assigned (the agent's `net` route must allow the
    /// hub DPS assigns, so DPS can only move a device between hubs the config allows).
    pub hub: String,
    /// Device id (registration id for DPS).
    pub device_id: String,
    /// How the device proves its identity to the hub: `tpm_sas`, `sas`, `x509`.
    pub identity: String,
    /// Zero-touch provisioning through the Device Provisioning Service, if used.
    #[serde(default)]
    pub dps: Option<DpsConfig>,
    /// IoT Plug and Play model id announced at connect (MQTT username `model-id=`).
    #[serde(default)]
    pub model_id: Option<String>,
    /// The CA certificates (PEM) the device trusts for the hub and DPS: a build-host path,
    /// relative to the repository root or absolute, as written in the config. The image
    /// carries them at [`crate::layout::rootfs::TRUST_ANCHORS`].
    #[serde(default)]
    pub trust_anchors: Option<String>,
    /// The hub's MQTT/TLS port.
    #[serde(default = "default_mqtt_port")]
    pub mqtt_port: u16,
}

fn default_mqtt_port() -> u16 {
    8883
}

fn default_https_port() -> u16 {
    443
}

/// The Device Provisioning Service a device registers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpsConfig {
    /// The DPS host, e.g. `global.azure-devices-provisioning.net`.
    pub endpoint: String,
    /// The DPS id scope, e.g. `0ne00000000`.
    pub scope: String,
    /// How the device attests its identity to DPS.
    pub attestation: DpsAttestation,
    /// DPS's HTTPS port (TPM attestation registers over HTTPS).
    #[serde(default = "default_https_port")]
    pub https_port: u16,
    /// DPS's MQTT/TLS port (symmetric key and X.509 register over MQTT).
    #[serde(default = "default_mqtt_port")]
    pub mqtt_port: u16,
}

/// How a device attests its identity to DPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpsAttestation {
    /// TPM attestation: the TPM's endorsement key; DPS answers with a key only that TPM can
    /// import (HTTPS).
    Tpm,
    /// A symmetric key: individual, or derived from an enrollment group's key (MQTT).
    SymmetricKey,
    /// An X.509 certificate whose key the TPM holds (MQTT).
    X509,
}

impl Board {
    /// The board of a system run directly on a development host (`testudo run` of a plan
    /// written by hand, tests): nothing is built for it, so its kernel, bootloader and
    /// partitions are placeholders.
    pub fn development_host() -> Board {
        Board {
            name: "host".into(),
            arch: std::env::consts::ARCH.into(),
            cpu_features: Vec::new(),
            memory_bytes: 1 << 30,
            kernel: "none".into(),
            bootloader: "grub".into(),
            console: "ttyS0".into(),
            partitions: Partitions {
                esp_bytes: 0,
                rootfs_bytes: 0,
                data_bytes: 0,
            },
            modules: BoardModules::default(),
            network: None,
        }
    }
}

impl Plan {
    /// A plan of `components` on [`Board::development_host`]: no app slots, the default
    /// update policy (3 boot tries, no downgrade, verity bundles) and a cloud section naming
    /// no reachable hub (`hub.invalid`, device `dev`, `sas`).
    pub fn for_development_host(
        name: &str,
        components: impl IntoIterator<Item = (String, PlanComponent)>,
    ) -> Plan {
        Plan {
            format: PLAN_FORMAT_VERSION,
            name: name.into(),
            version: "0.1.0".into(),
            compatible: format!("testudo-{name}"),
            board: Board::development_host(),
            components: components.into_iter().collect(),
            app_slots: BTreeMap::new(),
            update: UpdatePolicy {
                boot_tries: 3,
                allow_downgrade: false,
                bundle_format: "verity".into(),
            },
            cloud: CloudConfig {
                hub: "hub.invalid".into(),
                device_id: "dev".into(),
                identity: "sas".into(),
                dps: None,
                model_id: None,
                trust_anchors: None,
                mqtt_port: default_mqtt_port(),
            },
            hosts: BTreeMap::new(),
        }
    }

    /// Parses a plan from its JSON bytes (canonical or not). The format version is checked
    /// first, so a plan of another format is refused as such ([`PlanError::Format`]) rather
    /// than as a mismatch of some field.
    pub fn from_bytes(bytes: &[u8]) -> Result<Plan, PlanError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|source| PlanError::NotAPlan {
                source: Some(source),
            })?;
        let found = value
            .get("format")
            .and_then(serde_json::Value::as_u64)
            .ok_or(PlanError::NotAPlan { source: None })?;
        if found != u64::from(PLAN_FORMAT_VERSION) {
            return Err(PlanError::Format {
                found,
                expected: PLAN_FORMAT_VERSION,
            });
        }
        serde_json::from_value(value).map_err(|source| PlanError::Shape {
            format: PLAN_FORMAT_VERSION,
            source,
        })
    }

    /// Reads a plan file written by `testudo plan` ([`Plan::from_bytes`] of its contents).
    pub fn read(path: &Path) -> Result<Plan, PlanError> {
        let bytes = std::fs::read(path).map_err(|source| PlanError::Read {
            path: path.to_owned(),
            source,
        })?;
        Plan::from_bytes(&bytes).map_err(|source| PlanError::File {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// The canonical JSON text of the plan: object keys sorted, two-space indentation, no
    /// timestamps, a final newline. The same plan always gives the same bytes; this is what
    /// `testudo plan` writes (see `docs/plan-format.md`).
    pub fn to_canonical_json(&self) -> Result<String, serde_json::Error> {
        let value = serde_json::to_value(self)?;
        let mut out = String::new();
        crate::canonical::write_value(&mut out, &value, 0)?;
        out.push('\n');
        Ok(out)
    }

    /// sha256 (lower-case hex) of [`Plan::to_canonical_json`]: the plan's identity. Equal to
    /// `sha256sum` of a plan file written by `testudo plan`.
    pub fn content_hash(&self) -> Result<String, serde_json::Error> {
        let json = self.to_canonical_json()?;
        Ok(hex::encode(Sha256::digest(json.as_bytes())))
    }

    /// All routes of the plan: (consumer, local name, route), components first, then the
    /// maximum routes of app slots (consumer `slot:<name>`). Sorted by consumer and local name.
    pub fn routes(&self) -> Vec<(String, &str, &Route)> {
        let mut routes = Vec::new();
        for (name, component) in &self.components {
            for (local, route) in &component.uses {
                routes.push((name.clone(), local.as_str(), route));
            }
        }
        for (name, slot) in &self.app_slots {
            for (local, route) in &slot.max_uses {
                routes.push((format!("slot:{name}"), local.as_str(), route));
            }
        }
        routes
    }
}
