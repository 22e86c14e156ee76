//! Every environment variable init passes to a component. Each is written here once; no
//! other crate spells one of these names as a literal (`cargo xtask test` checks it).

/// The component's own name in the plan.
pub const COMPONENT: &str = "TESTUDO_COMPONENT";

/// The routed handles: `NAME=FD,…`, one per route, by the route's local name, at fds 3, 4, …
/// in the order of the names.
pub const HANDLES: &str = "TESTUDO_HANDLES";

/// The fd of a provider's control socket (only for components that provide capabilities):
/// init sends new root handles on it, each with its grant.
pub const SCHEME_FD: &str = "TESTUDO_SCHEME_FD";

/// The plan's `cloud` section as JSON ([`crate::CloudConfig`]), given to the component that
/// provides the `identity` interface (the cloud agent).
pub const CLOUD: &str = "TESTUDO_CLOUD";

/// The network settings as JSON ([`NetworkSettings`]), given to the component that owns the
/// network (`devices.network`).
pub const NETWORK: &str = "TESTUDO_NETWORK";

/// What the running system is, as JSON ([`SystemInfo`]), given to the component that provides
/// the `identity` interface (it reports it to the cloud).
pub const SYSTEM: &str = "TESTUDO_SYSTEM";

/// Every variable of this contract, for tools that check where they are spelled.
pub const ALL: &[&str] = &[COMPONENT, HANDLES, SCHEME_FD, CLOUD, NETWORK, SYSTEM];

/// What the running system is: the plan's name, version and hash, the board, and the slot
/// it booted from.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemInfo {
    /// The plan's `name`.
    pub name: String,
    /// The plan's `version` (the image version).
    pub version: String,
    /// The plan's RAUC `compatible`.
    pub compatible: String,
    /// The plan's content hash (SHA-256 of its canonical JSON, hex).
    pub plan_hash: String,
    /// The board's name.
    pub board: String,
    /// The board's CPU architecture.
    pub arch: String,
    /// The rootfs slot booted (`A` or `B`, from the kernel command line); absent on a
    /// development host.
    #[serde(default)]
    pub slot: Option<String>,
}

impl SystemInfo {
    /// The description of `plan` booted from `slot`.
    pub fn of(plan: &crate::Plan, slot: Option<String>) -> Result<SystemInfo, serde_json::Error> {
        Ok(SystemInfo {
            name: plan.name.clone(),
            version: plan.version.clone(),
            compatible: plan.compatible.clone(),
            plan_hash: plan.content_hash()?,
            board: plan.board.name.clone(),
            arch: plan.board.arch.clone(),
            slot,
        })
    }
}

/// The slot named on a kernel command line (`testudo.slot=A`).
pub fn booted_slot(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|word| word.strip_prefix(crate::layout::cmdline::SLOT))
        .map(str::to_owned)
}

/// What the network owner is told: the board's interface configuration and the plan's
/// `hosts` map.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    /// The interface to bring up and how (absent: leave the network as the host set it).
    pub interface: Option<crate::BoardNetwork>,
    /// Names resolved without DNS.
    pub hosts: std::collections::BTreeMap<String, String>,
}

impl NetworkSettings {
    /// The settings of `plan`.
    pub fn of(plan: &crate::Plan) -> NetworkSettings {
        NetworkSettings {
            interface: plan.board.network.clone(),
            hosts: plan.hosts.clone(),
        }
    }
}

/// The value of a JSON-carrying variable ([`CLOUD`], [`NETWORK`]).
pub fn to_value<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string(value)
}

/// Parses the value of a JSON-carrying variable.
pub fn from_value<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(text)
}
