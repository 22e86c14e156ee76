//! Every way loading, validating or reading a plan can fail.
//!
//! Variants are named after the step that failed and carry what that step worked on (the
//! config path, the component, the capability). Display texts never repeat a source error;
//! it is reachable through [`std::error::Error::source`].

use std::fmt;
use std::path::PathBuf;

use crate::plan::ComponentKind;

/// Deepest bracket nesting accepted in a config file. Real configs stay below 20; the limit
/// stops pathological input before Nickel's recursive parser can overflow its stack.
pub const MAX_NESTING: usize = 256;

/// A position in a config file, 1-based, as editors show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as Nickel named it (the path as given, or an imported file's path).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Where in the config a graph error sits: `components.<component>.uses.<local name>` and so on.
pub type ConfigPath = String;

/// One problem found in a config or a plan.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read (missing, unreadable, a directory...).
    #[error("{}: cannot read the config", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The config file is empty.
    #[error("{}: the config file is empty", path.display())]
    Empty { path: PathBuf },

    /// The config file is not UTF-8 text (so not Nickel).
    #[error("{}: not a Nickel file: byte {offset} is not UTF-8 text", path.display())]
    NotText { path: PathBuf, offset: usize },

    /// The config nests brackets deeper than [`MAX_NESTING`].
    #[error("{}:{line}: nesting deeper than {} levels ({depth}); refusing to evaluate", path.display(), MAX_NESTING)]
    TooDeep {
        path: PathBuf,
        line: usize,
        depth: usize,
    },

    /// Nickel refused the config: a parse error, a contract violation (wrong type, missing
    /// field, bad version...) or an evaluation error. `message` is Nickel's one-line summary,
    /// `report` its full report with source excerpts.
    #[error("{}: {message}", location.as_ref().map_or_else(|| path.display().to_string(), Location::to_string))]
    Evaluate {
        path: PathBuf,
        location: Option<Location>,
        message: String,
        report: String,
    },

    /// The evaluated value does not have the shape of a testudo system (typically the
    /// config does not apply the `S.System` contract).
    /// `reason` is the deserialiser's message without its position in the exported JSON
    /// (which would point into text the user never saw).
    #[error("{}: not a testudo system config (does it end with `| S.System`?): {reason}", path.display())]
    Shape { path: PathBuf, reason: String },

    /// A route or a start dependency names a component that does not exist.
    #[error("{at}: component `{component}` does not exist")]
    UnknownComponent { at: ConfigPath, component: String },

    /// A route names a capability its target component does not provide.
    #[error(
        "{at}: component `{component}` provides no capability `{capability}`{}",
        provided_list(provided)
    )]
    UnknownCapability {
        at: ConfigPath,
        component: String,
        capability: String,
        provided: Vec<String>,
    },

    /// A route expects another interface than the provider offers.
    #[error(
        "{at}: expects interface `{expected}` but `{component}.{capability}` provides `{provided}`"
    )]
    InterfaceMismatch {
        at: ConfigPath,
        component: String,
        capability: String,
        expected: String,
        provided: String,
    },

    /// Two components provide a capability with the same (system-wide) name.
    #[error("capability `{capability}` is provided by both `{first}` and `{second}`; capability names are system-wide")]
    DuplicateProvider {
        capability: String,
        first: String,
        second: String,
    },

    /// Start dependencies (explicit `after` plus route providers) form a cycle.
    #[error("start-dependency cycle: {}", cycle.join(" -> "))]
    StartCycle {
        /// The cycle, first component repeated at the end.
        cycle: Vec<String>,
    },

    /// Two components claim the same device resource.
    #[error("device {device} is claimed by both `{first}` and `{second}`")]
    DeviceConflict {
        device: String,
        first: String,
        second: String,
    },

    /// A component that is not a driver claims devices.
    #[error("components.{component}.devices: only drivers may own devices, `{component}` is a {}", crate::audit::kind_name(*kind))]
    DevicesOnNonDriver {
        component: String,
        kind: ComponentKind,
    },

    /// The component's kind and what it runs disagree (a WASM app running a binary...).
    #[error("components.{component}.run: a {} component must run {expected}", crate::audit::kind_name(*kind))]
    RunMismatch {
        component: String,
        kind: ComponentKind,
        expected: &'static str,
    },

    /// The component's sandbox role does not fit its kind (only WASM apps run as `wasm_host`).
    #[error("components.{component}.role: a {} component cannot run as `{role}`", crate::audit::kind_name(*kind))]
    RoleMismatch {
        component: String,
        kind: ComponentKind,
        role: crate::plan::SandboxRole,
    },

    /// A configured component takes a name reserved for a built-in provider.
    #[error("components.{name}: the name `{name}` is reserved for testudo-init's own capabilities (`init.status`, `init.power`)")]
    ReservedName { name: String },

    /// The DPS attestation and the hub identity do not go together.
    #[error("cloud.identity: `{identity}` cannot follow DPS attestation `{}`: use {expected}", crate::audit::attestation_name(*attestation))]
    AttestationMismatch {
        attestation: crate::plan::DpsAttestation,
        identity: String,
        expected: String,
    },

    /// A `hosts` entry's name is not a host name.
    #[error("hosts.{name}: not a host name (letters, digits and `-` in dot-separated labels)")]
    BadHostName { name: String },

    /// A `net` route's `allow` entry is not `host:port`, or a non-`net` route has entries.
    #[error("{at}: allow entry `{entry}`: {reason}")]
    BadAllow {
        at: ConfigPath,
        entry: String,
        reason: &'static str,
    },

    /// The memory limits of all components and app slots exceed the board's memory.
    #[error("memory limits total {} but board `{board}` has {}; largest: {}", mib(*total_bytes), mib(*board_bytes), largest.iter().map(|(n, b)| format!("{n} {}", mib(*b))).collect::<Vec<_>>().join(", "))]
    MemoryOverBoard {
        board: String,
        board_bytes: u64,
        total_bytes: u64,
        /// The largest budgets (name, bytes), biggest first.
        largest: Vec<(String, u64)>,
    },

    /// An app slot's initial app is routed beyond the slot's `max_uses`.
    #[error("app_slots.{slot}.initial.uses.{local_name}: {reason}")]
    SlotBeyondMax {
        slot: String,
        local_name: String,
        reason: crate::plan::RouteBeyondSlot,
    },
}

/// Bytes as MiB with up to one decimal, e.g. `1216 MiB`, `0.5 MiB`.
fn mib(bytes: u64) -> String {
    let tenths = bytes.saturating_mul(10) / (1024 * 1024);
    if tenths.is_multiple_of(10) {
        format!("{} MiB", tenths / 10)
    } else {
        format!("{}.{} MiB", tenths / 10, tenths % 10)
    }
}

fn provided_list(provided: &[String]) -> String {
    if provided.is_empty() {
        " (it provides nothing)".to_owned()
    } else {
        format!(" (it provides: {})", provided.join(", "))
    }
}

/// Every error found in one config, in a stable order. Never empty.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, in report order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} errors", many.len())?;
                for error in many {
                    write!(f, "\n  {error}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigErrors {}

/// A problem that does not stop the config from being used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// A capability nobody routes to (neither a component nor an app slot's maximum).
    UnusedCapability {
        component: String,
        capability: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::UnusedCapability {
                component,
                capability,
            } => write!(
                f,
                "components.{component}.provides.{capability}: provided but never routed to anyone"
            ),
        }
    }
}
