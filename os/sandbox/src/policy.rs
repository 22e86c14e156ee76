//! Seccomp allowlists per role, kept as data (seccompiler's JSON format, Firecracker style)
//! in `os/sandbox/policies/<role>.json`, built into the binary and compiled by
//! [`crate::search_filter`] (the subset used: syscall names, `eq` conditions on arguments).
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
//! components), `updater` (the device's updater: its boot partitions read, written and synced,
//! init's status and power; decision 0090), `wasm_host` (wasmtime: loading and compiling an app, threads, JIT memory,
//! signals for traps, WASI file operations in granted directories; owned by the WASM host, 62
//! syscalls, each with the reason in its `comment`, decisions 0086 and 0088), `bundle_program`
//! (a bundle's install hook or handler: a POSIX shell and its tools, 110 syscalls measured with
//! `strace -f` on a hook using sh, coreutils, dd, tar and gzip; its confinement is the mounts,
//! namespaces and landlock rules of the step, not a short list; decision 0097).
//!
//! A WASM host stacks a second filter before its app's code runs ([`AppRunPolicy`]:
//! `wasm_app_run`, 36 syscalls, and `wasm_app_files`, 14 more for an app with storage;
//! decision 0089).
//!
//! The native lists were measured with `strace -f` on each daemon serving every operation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};

use seccompiler::sock_filter;
use serde::Deserialize;

use crate::search_filter::{self, ArgEquals, SyscallRule};

use testudo_plan::SandboxRole;

use crate::SandboxError;

/// Named syscalls in the x86_64 table (the kernel 6.12 table, as seccompiler and the
/// `syscalls` crate name them).
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
        SandboxRole::Updater => include_str!("../policies/updater.json"),
        SandboxRole::BundleProgram => include_str!("../policies/bundle_program.json"),
    }
}

/// The filter a WASM host narrows itself to once its app is loaded and before the app's code
/// runs (a second seccomp filter, stacked on its role's; decision 0089). Start-up calls
/// (`execve`, ld.so, loading and caching code) are gone; file operations stay only for an app
/// that has files to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AppRunPolicy {
    /// `wasm_app_run`: the app has no granted directory, so no file operation at all.
    WithoutFiles,
    /// `wasm_app_run` and `wasm_app_files`: the app has granted directories (or, in
    /// development, the file-backed local device of `testudo-wasm-host --device-dir`).
    WithFiles,
}

impl AppRunPolicy {
    /// Both policies.
    pub const ALL: [AppRunPolicy; 2] = [AppRunPolicy::WithoutFiles, AppRunPolicy::WithFiles];

    /// The policy for an app that does, or does not, use files.
    pub fn for_app(uses_files: bool) -> AppRunPolicy {
        if uses_files {
            AppRunPolicy::WithFiles
        } else {
            AppRunPolicy::WithoutFiles
        }
    }

    /// The policy's name in reports and errors.
    pub fn name(self) -> &'static str {
        match self {
            AppRunPolicy::WithoutFiles => "wasm_app_run",
            AppRunPolicy::WithFiles => "wasm_app_run+wasm_app_files",
        }
    }

    fn documents(self) -> &'static [&'static str] {
        const RUN: &str = include_str!("../policies/wasm_app_run.json");
        const FILES: &str = include_str!("../policies/wasm_app_files.json");
        match self {
            AppRunPolicy::WithoutFiles => &[RUN],
            AppRunPolicy::WithFiles => &[RUN, FILES],
        }
    }

    /// The syscalls the policy allows, sorted.
    pub fn allowed_syscalls(self) -> Result<BTreeSet<String>, SandboxError> {
        Ok(rule_syscalls(&self.rules()?))
    }

    /// The policy compiled to a BPF program for x86_64.
    pub fn compile(self) -> Result<Vec<sock_filter>, SandboxError> {
        compile_rules(self.name(), &self.rules()?)
    }

    /// The rules of all the policy's documents, in order.
    fn rules(self) -> Result<Vec<serde_json::Value>, SandboxError> {
        let mut rules = Vec::new();
        for json in self.documents() {
            rules.extend(main_rules(self.name(), json)?);
        }
        Ok(rules)
    }
}

/// The syscalls `role` allows, sorted.
pub fn allowed_syscalls(role: SandboxRole) -> Result<BTreeSet<String>, SandboxError> {
    Ok(rule_syscalls(&main_rules(
        role.as_str(),
        policy_json(role),
    )?))
}

/// The `main` filter's rules of one policy document, which must allow what it lists and kill
/// on anything else (the only actions [`crate::search_filter`] compiles), and hold no other
/// filter.
fn main_rules(policy: &'static str, json: &str) -> Result<Vec<serde_json::Value>, SandboxError> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|source| SandboxError::PolicyParse { policy, source })?;
    let serde_json::Value::Object(mut filters) = value else {
        return Err(SandboxError::PolicyWithoutMainFilter { policy });
    };
    let Some(mut main) = filters.remove("main") else {
        return Err(SandboxError::PolicyWithoutMainFilter { policy });
    };
    if !filters.is_empty() {
        return Err(SandboxError::PolicyRule {
            policy,
            problem: "a filter other than `main`",
        });
    }
    if main["match_action"] != "allow" || main["mismatch_action"] != "kill_process" {
        return Err(SandboxError::PolicyRule {
            policy,
            problem: "actions other than `allow` on a match and `kill_process` otherwise",
        });
    }
    match main.get_mut("filter").map(serde_json::Value::take) {
        Some(serde_json::Value::Array(rules)) => Ok(rules),
        _ => Err(SandboxError::PolicyWithoutMainFilter { policy }),
    }
}

fn rule_syscalls(rules: &[serde_json::Value]) -> BTreeSet<String> {
    rules
        .iter()
        .filter_map(|rule| rule["syscall"].as_str().map(str::to_owned))
        .collect()
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
    let program = compile_rules(
        role.as_str(),
        &main_rules(role.as_str(), policy_json(role))?,
    )?;
    CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(role, program.clone());
    Ok(program)
}

/// A rule as the policy files write it (seccompiler's JSON format, the subset used here).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleText {
    syscall: String,
    /// Absent: always allowed. Present: must not be empty (seccompiler refuses an empty list).
    #[serde(default)]
    args: Option<Vec<ConditionText>>,
    #[serde(default, rename = "comment")]
    _comment: Option<String>,
}

/// An argument condition as the policy files write it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionText {
    index: u8,
    #[serde(rename = "type")]
    width: String,
    op: String,
    val: u64,
    #[serde(default, rename = "comment")]
    _comment: Option<String>,
}

/// Compiles a policy's rules to a BPF program for x86_64 ([`crate::search_filter`]).
fn compile_rules(
    policy: &'static str,
    rules: &[serde_json::Value],
) -> Result<Vec<sock_filter>, SandboxError> {
    let rules: Vec<SyscallRule> = rules
        .iter()
        .map(|rule| syscall_rule(policy, rule))
        .collect::<Result<_, _>>()?;
    search_filter::compile(policy, &rules)
}

/// One rule of `policy`, its syscall named by its x86_64 number.
fn syscall_rule(
    policy: &'static str,
    rule: &serde_json::Value,
) -> Result<SyscallRule, SandboxError> {
    let text = RuleText::deserialize(rule)
        .map_err(|source| SandboxError::PolicyParse { policy, source })?;
    let number =
        syscall_number(&text.syscall).ok_or_else(|| SandboxError::PolicyUnknownSyscall {
            policy,
            syscall: text.syscall.clone(),
        })?;
    let conditions = match &text.args {
        None => &[][..],
        Some(conditions) if conditions.is_empty() => {
            return Err(SandboxError::PolicyRule {
                policy,
                problem: "a rule with an empty `args` list",
            });
        }
        Some(conditions) => &conditions[..],
    };
    let conditions = conditions
        .iter()
        .map(|condition| {
            if condition.op != "eq" {
                return Err(SandboxError::PolicyRule {
                    policy,
                    problem: "an argument condition other than `eq`",
                });
            }
            let whole = match condition.width.as_str() {
                "dword" => false,
                "qword" => true,
                _ => {
                    return Err(SandboxError::PolicyRule {
                        policy,
                        problem: "an argument type other than `dword` or `qword`",
                    })
                }
            };
            Ok(ArgEquals {
                index: condition.index,
                value: condition.val,
                whole,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(SyscallRule { number, conditions })
}

/// The x86_64 number of the syscall `name`.
fn syscall_number(name: &str) -> Option<u32> {
    let sysno: syscalls::x86_64::Sysno = name.parse().ok()?;
    u32::try_from(sysno.id()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search_filter::tests::{run, Call};
    use crate::search_filter::AUDIT_ARCH_X86_64;

    /// seccompiler's program for the same rules (how every policy was compiled before the
    /// search filter, decision 0103).
    fn seccompiler_program(rules: &[serde_json::Value]) -> Vec<sock_filter> {
        let json = serde_json::json!({
            "main": {
                "mismatch_action": "kill_process",
                "match_action": "allow",
                "filter": rules,
            }
        });
        let mut programs = seccompiler::compile_from_json(
            json.to_string().as_bytes(),
            seccompiler::TargetArch::x86_64,
        )
        .unwrap();
        programs.remove("main").unwrap()
    }

    #[test]
    fn every_policy_gives_the_verdicts_seccompiler_gives() {
        let mut policies: Vec<(String, Vec<serde_json::Value>)> = SandboxRole::ALL
            .iter()
            .map(|role| {
                let rules = main_rules(role.as_str(), policy_json(*role)).unwrap();
                (role.to_string(), rules)
            })
            .collect();
        for policy in AppRunPolicy::ALL {
            policies.push((policy.name().to_owned(), policy.rules().unwrap()));
        }
        let mut calls_checked = 0u64;
        for (name, rules) in policies {
            let ours = compile_rules("test", &rules).unwrap();
            let theirs = seccompiler_program(&rules);
            // The numbers of the syscalls with conditions, and the argument values that
            // matter to them: each compared value, its neighbours, with the high half set.
            let mut conditional = BTreeSet::new();
            let mut values: BTreeSet<u64> = [0, 1, u64::MAX].into();
            for rule in &rules {
                let Some(conditions) = rule["args"].as_array() else {
                    continue;
                };
                conditional.insert(syscall_number(rule["syscall"].as_str().unwrap()).unwrap());
                for condition in conditions {
                    let value = condition["val"].as_u64().unwrap();
                    values.extend([
                        value,
                        value.wrapping_add(1),
                        value.wrapping_sub(1),
                        value | 1 << 32,
                        value ^ 1 << 63,
                    ]);
                }
            }
            let numbers = (0..1024u32)
                .chain(0x4000_0000..0x4000_0400) // x32
                .chain([0x7fff_ffff, 0x8000_0000, u32::MAX]);
            for nr in numbers {
                for arch in [AUDIT_ARCH_X86_64, 0x4000_0003 /* i386 */, 0] {
                    let mut argument_sets = vec![[0u64; 6]];
                    // Each rule of this number with all its conditions met, then with each
                    // one of them missed by one.
                    for rule in rules.iter().filter(|rule| {
                        syscall_number(rule["syscall"].as_str().unwrap_or("")) == Some(nr)
                    }) {
                        let mut met = [0u64; 6];
                        let conditions = rule["args"].as_array().cloned().unwrap_or_default();
                        for condition in &conditions {
                            let index = condition["index"].as_u64().unwrap() as usize;
                            met[index] = condition["val"].as_u64().unwrap();
                        }
                        argument_sets.push(met);
                        for condition in &conditions {
                            let index = condition["index"].as_u64().unwrap() as usize;
                            let mut missed = met;
                            missed[index] = missed[index].wrapping_add(1);
                            argument_sets.push(missed);
                        }
                    }
                    if conditional.contains(&nr) {
                        for index in 0..6 {
                            for &value in &values {
                                let mut args = [0u64; 6];
                                args[index] = value;
                                argument_sets.push(args);
                            }
                        }
                    }
                    for args in argument_sets {
                        let call = Call { nr, arch, args };
                        assert_eq!(run(&ours, &call), run(&theirs, &call), "{name}: {call:?}");
                        calls_checked += 1;
                    }
                }
            }
            assert!(
                ours.len() <= theirs.len(),
                "{name}: {} > {}",
                ours.len(),
                theirs.len()
            );
        }
        // Every policy, every number, every architecture: at least 11 x 2,051 x 3.
        assert!(calls_checked >= 11 * 2051 * 3, "{calls_checked}");
    }

    #[test]
    fn a_rule_the_compiler_does_not_do_is_refused_naming_the_policy() {
        let unknown = serde_json::json!({"syscall": "no_such_call"});
        let err = compile_rules("probe", &[unknown]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "seccomp policy probe names `no_such_call`, which is not an x86_64 syscall"
        );
        let masked = serde_json::json!({"syscall": "prctl", "args": [
            {"index": 0, "type": "dword", "op": {"masked_eq": 1}, "val": 15}
        ]});
        assert!(compile_rules("probe", &[masked]).is_err());
        let ge = serde_json::json!({"syscall": "prctl", "args": [
            {"index": 0, "type": "dword", "op": "ge", "val": 15}
        ]});
        let err = compile_rules("probe", &[ge]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "seccomp policy probe has an argument condition other than `eq`"
        );
        let empty = serde_json::json!({"syscall": "read", "args": []});
        let err = compile_rules("probe", &[empty]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "seccomp policy probe has a rule with an empty `args` list"
        );
        let both = [
            serde_json::json!({"syscall": "prctl"}),
            serde_json::json!({"syscall": "prctl", "args": [
                {"index": 0, "type": "dword", "op": "eq", "val": 15}
            ]}),
        ];
        let err = compile_rules("probe", &both).unwrap_err();
        assert_eq!(
            err.to_string(),
            "seccomp policy probe has a syscall listed both with and without argument conditions"
        );
        let logging =
            r#"{"main": {"mismatch_action": "log", "match_action": "allow", "filter": []}}"#;
        let err = main_rules("probe", logging).unwrap_err();
        assert!(err.to_string().contains("`kill_process`"), "{err}");
        let two = r#"{"main": {"mismatch_action": "kill_process", "match_action": "allow", "filter": []},
                      "other": {"mismatch_action": "kill_process", "match_action": "allow", "filter": []}}"#;
        let err = main_rules("probe", two).unwrap_err();
        assert!(err.to_string().contains("other than `main`"), "{err}");
        let misspelt = serde_json::json!({"syscall": "read", "arguments": []});
        assert!(matches!(
            compile_rules("probe", &[misspelt]),
            Err(SandboxError::PolicyParse { .. })
        ));
    }

    #[test]
    fn syscall_numbers_are_x86_64s() {
        assert_eq!(syscall_number("read"), Some(0));
        assert_eq!(syscall_number("sched_yield"), Some(24));
        assert_eq!(syscall_number("clone3"), Some(435));
        assert_eq!(syscall_number("no_such_call"), None);
    }

    #[test]
    fn every_policy_compiles_and_native_roles_stay_small() {
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
            // wasm-host: wasmtime plus WASI's file operations (decision 0086); updater: the
            // pipe through which OpenSSL checks a plain bundle's detached signature. Every
            // rule carries its reason.
            let limit = match role {
                SandboxRole::BundleProgram => 111,
                SandboxRole::WasmHost => 66,
                SandboxRole::Updater => 50,
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
    fn app_run_policies_only_narrow_the_wasm_host_role() {
        let role = allowed_syscalls(SandboxRole::WasmHost).expect("parses");
        let without = AppRunPolicy::WithoutFiles
            .allowed_syscalls()
            .expect("parses");
        let with = AppRunPolicy::WithFiles.allowed_syscalls().expect("parses");
        for policy in AppRunPolicy::ALL {
            assert!(!policy.compile().expect("compiles").is_empty());
            let allowed = policy.allowed_syscalls().expect("parses");
            // A stacked filter cannot grant what the role denies: a call listed here but not
            // there would be a mistake in one of the files.
            let extra: Vec<_> = allowed.difference(&role).collect();
            assert!(extra.is_empty(), "{} adds {extra:?}", policy.name());
            for start_up_only in ["execve", "seccomp", "memfd_create", "access", "arch_prctl"] {
                assert!(
                    !allowed.contains(start_up_only),
                    "{} allows {start_up_only}",
                    policy.name()
                );
            }
        }
        assert!(without.is_subset(&with));
        for file_call in [
            "openat",
            "openat2",
            "getdents64",
            "unlinkat",
            "renameat",
            "statx",
        ] {
            assert!(
                !without.contains(file_call),
                "wasm_app_run allows {file_call}"
            );
            assert!(with.contains(file_call), "wasm_app_files lacks {file_call}");
        }
        // The goal for what an app's code runs under: at most 50 calls, files or not.
        assert!(without.len() <= 36, "wasm_app_run allows {}", without.len());
        assert!(with.len() <= 50, "with files: {}", with.len());
    }

    #[test]
    fn every_wasm_host_updater_and_bundle_program_rule_says_why() {
        let mut rules =
            main_rules("wasm_host", policy_json(SandboxRole::WasmHost)).expect("parses");
        rules.extend(main_rules("updater", policy_json(SandboxRole::Updater)).expect("parses"));
        rules.extend(
            main_rules("bundle_program", policy_json(SandboxRole::BundleProgram)).expect("parses"),
        );
        for policy in AppRunPolicy::ALL {
            rules.extend(policy.rules().expect("parses"));
        }
        for rule in &rules {
            let comment = rule["comment"].as_str().unwrap_or_default();
            assert!(!comment.trim().is_empty(), "no reason for {rule}");
        }
        // Threads that pass work through std's mpsc channels may yield in its back-off
        // (`sched_yield`): the WASM host (epoch ticker, supervisor) and the updater (the
        // install's and the verification's reader and hasher threads).
        for role in [SandboxRole::WasmHost, SandboxRole::Updater] {
            let allowed = allowed_syscalls(role).expect("parses");
            assert!(allowed.contains("sched_yield"), "{role} lacks sched_yield");
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
