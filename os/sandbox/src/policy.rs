//! Seccomp allowlists per role, kept as data (seccompiler's JSON format, Firecracker style)
//! in `os/sandbox/policies/<role>.json` and compiled into the binary.
//!
//! Every policy has one filter, `main`: the listed syscalls are allowed, anything else kills
//! the process (`SIGSYS`; the supervisor logs it as a seccomp denial). The filter is installed
//! right before `execve`, so `execve` is in every list.
//!
//! Roles are [`SandboxRole`]s, plan data (`components.<name>.role`): `driver`
//! (single-threaded scheme daemons: log, sensor), `storage_driver` (adds mkdir, pwrite64,
//! rename and unlink for atomic replacement,
//! fdatasync, fsync), `tpm_driver` (adds a Unix socket to swtpm), `net_driver` (adds outbound
//! TCP), `agent` (the cloud agent: tokio, rustls over the connection from the `net` route,
//! one server thread; owned by the agent, 37 syscalls), `service` (native services and test
//! components), `wasm_host` (wasmtime: threads, JIT memory, signals for traps, WASI file
//! operations in granted directories; owned by the WASM host, 61 syscalls, each with the
//! reason in its `comment`, decisions 0086 and 0088).
//!
//! The native lists were measured with `strace -f` on each daemon serving every operation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use seccompiler::{sock_filter, TargetArch};

use testudo_plan::SandboxRole;

use crate::SandboxError;

/// Named syscalls in the x86_64 table (seccompiler's kernel 6.12 table).
pub const X86_64_SYSCALLS: usize = 373;

/// A role's policy JSON.
pub fn policy_json(role: SandboxRole) -> &'static str {
    match role {
        SandboxRole::Agent => include_str!("../policies/agent.json"),
        SandboxRole::Driver => include_str!("../policies/driver.json"),
        SandboxRole::NetDriver => include_str!("../policies/net_driver.json"),
        SandboxRole::Service => include_str!("../policies/service.json"),
        SandboxRole::StorageDriver => include_str!("../policies/storage_driver.json"),
        SandboxRole::TpmDriver => include_str!("../policies/tpm_driver.json"),
        SandboxRole::WasmHost => include_str!("../policies/wasm_host.json"),
    }
}

/// The syscalls `role` allows, sorted.
pub fn allowed_syscalls(role: SandboxRole) -> Result<BTreeSet<String>, SandboxError> {
    let json = policy_json(role);
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|source| SandboxError::PolicyParse { role, source })?;
    Ok(value["main"]["filter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|rule| rule["syscall"].as_str().map(str::to_owned))
        .collect())
}

/// Compiles `role`'s policy to a BPF program for x86_64.
/// Compiled programs are cached per role for the life of the process.
pub fn compile(role: SandboxRole) -> Result<Vec<sock_filter>, SandboxError> {
    static CACHE: Mutex<BTreeMap<SandboxRole, Vec<sock_filter>>> = Mutex::new(BTreeMap::new());
    if let Some(program) = CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&role)
    {
        return Ok(program.clone());
    }
    let program = compile_uncached(role)?;
    CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(role, program.clone());
    Ok(program)
}

fn compile_uncached(role: SandboxRole) -> Result<Vec<sock_filter>, SandboxError> {
    let json = policy_json(role);
    let wrap = |source| SandboxError::PolicyCompile { role, source };
    let mut map =
        seccompiler::compile_from_json(json.as_bytes(), TargetArch::x86_64).map_err(wrap)?;
    map.remove("main")
        .ok_or(SandboxError::PolicyWithoutMainFilter { role })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_compiles_and_native_roles_stay_under_48() {
        for role in SandboxRole::ALL {
            let program = compile(role).expect("compiles");
            assert!(!program.is_empty());
            let allowed = allowed_syscalls(role).expect("parses");
            assert!(
                allowed.contains("execve"),
                "{role} must allow the final execve"
            );
            for forbidden in [
                "ptrace",
                "mount",
                "kexec_load",
                "bpf",
                "init_module",
                "finit_module",
                "process_vm_readv",
                "unshare",
                "setns",
            ] {
                assert!(!allowed.contains(forbidden), "{role} allows {forbidden}");
            }
            // wasm-host: wasmtime plus WASI's file operations (decision 0086); every rule
            // carries its reason.
            let limit = match role {
                SandboxRole::WasmHost => 66,
                _ => 48,
            };
            assert!(
                allowed.len() < limit,
                "{role} allows {} syscalls",
                allowed.len()
            );
        }
    }

    #[test]
    fn every_wasm_host_rule_says_why() {
        let value: serde_json::Value =
            serde_json::from_str(policy_json(SandboxRole::WasmHost)).expect("parses");
        let rules = value["main"]["filter"].as_array().expect("a filter");
        for rule in rules {
            let comment = rule["comment"].as_str().unwrap_or_default();
            assert!(!comment.trim().is_empty(), "no reason for {rule}");
        }
        let allowed = allowed_syscalls(SandboxRole::WasmHost).expect("parses");
        // Removed because nothing in the host, wasmtime, WASI or glibc 2.36 calls them.
        for gone in [
            "dup",
            "ioctl",
            "mkdir",
            "fchmod",
            "getuid",
            "pipe2",
            "renameat2",
        ] {
            assert!(!allowed.contains(gone), "wasm_host allows {gone} again");
        }
    }
}
