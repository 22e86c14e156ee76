//! Sandbox roles: which seccomp allowlist a component runs under. The role is plan data
//! (`components.<name>.role`), chosen in the config or derived from the component's kind
//! ([`SandboxRole::default_for`]), so `testudo audit` shows it and init never guesses it from
//! a binary's name. Each role's allowlist is the policy file
//! `os/sandbox/policies/<role>.json`.

use serde::{Deserialize, Serialize};

use crate::plan::ComponentKind;

/// A seccomp role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxRole {
    /// Single-threaded scheme daemons (log, sensor).
    Driver,
    /// The network owner: adds outbound TCP and the host's network namespace.
    NetDriver,
    /// The storage driver: adds directory creation, positioned writes and syncs.
    StorageDriver,
    /// The TPM driver: adds a Unix socket to a software TPM.
    TpmDriver,
    /// Native services and test components.
    Service,
    /// The cloud agent: an async runtime and TLS over connections from its `net` route.
    Agent,
    /// The WASM host (wasmtime): threads, JIT memory, signals for traps.
    WasmHost,
    /// The device's updater: the boot partitions it holds, read, written and synced;
    /// init gives it the slot GRUB booted as its argument.
    Updater,
    /// A bundle's install hook or handler, run by the updater (never a component): a POSIX
    /// shell and its tools, the slot it may write, no network.
    BundleProgram,
}

impl SandboxRole {
    /// Every role, in name order.
    pub const ALL: [SandboxRole; 9] = [
        SandboxRole::Agent,
        SandboxRole::BundleProgram,
        SandboxRole::Driver,
        SandboxRole::NetDriver,
        SandboxRole::Service,
        SandboxRole::StorageDriver,
        SandboxRole::TpmDriver,
        SandboxRole::Updater,
        SandboxRole::WasmHost,
    ];

    /// The role's name as the plan and the policy file name spell it (`net_driver`).
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxRole::Driver => "driver",
            SandboxRole::NetDriver => "net_driver",
            SandboxRole::StorageDriver => "storage_driver",
            SandboxRole::TpmDriver => "tpm_driver",
            SandboxRole::Service => "service",
            SandboxRole::Agent => "agent",
            SandboxRole::WasmHost => "wasm_host",
            SandboxRole::Updater => "updater",
            SandboxRole::BundleProgram => "bundle_program",
        }
    }

    /// The role of a component whose config names none: `wasm_host` for WASM apps,
    /// `net_driver` for the network owner, else `driver` or `service` by kind.
    pub fn default_for(kind: ComponentKind, owns_network: bool) -> SandboxRole {
        match kind {
            ComponentKind::Wasm => SandboxRole::WasmHost,
            _ if owns_network => SandboxRole::NetDriver,
            ComponentKind::Driver => SandboxRole::Driver,
            ComponentKind::Service => SandboxRole::Service,
        }
    }

    /// Whether a component of `kind` may run under this role: WASM apps only under
    /// `wasm_host`, and nothing else under it; no component under `bundle_program`.
    pub fn fits(self, kind: ComponentKind) -> bool {
        self != SandboxRole::BundleProgram
            && (self == SandboxRole::WasmHost) == (kind == ComponentKind::Wasm)
    }
}

impl std::fmt::Display for SandboxRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde() {
        for role in SandboxRole::ALL {
            let json = serde_json::to_string(&role).expect("serialises");
            assert_eq!(json, format!("\"{role}\""));
            let back: SandboxRole = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, role);
        }
    }

    #[test]
    fn defaults_follow_kind_and_network() {
        use ComponentKind::*;
        assert_eq!(SandboxRole::default_for(Wasm, false), SandboxRole::WasmHost);
        assert_eq!(
            SandboxRole::default_for(Driver, true),
            SandboxRole::NetDriver
        );
        assert_eq!(SandboxRole::default_for(Driver, false), SandboxRole::Driver);
        assert_eq!(
            SandboxRole::default_for(Service, false),
            SandboxRole::Service
        );
        assert!(!SandboxRole::Agent.fits(Wasm));
        assert!(!SandboxRole::WasmHost.fits(Service));
        assert!(SandboxRole::WasmHost.fits(Wasm));
        for kind in [Wasm, Driver, Service] {
            assert!(!SandboxRole::BundleProgram.fits(kind));
        }
    }
}
