//! The run phase: once its app is loaded, and before any of the app's code runs, the host
//! narrows itself to a second seccomp filter for all its threads.
//!
//! The role's filter (installed by the sandbox before `execve`) has to allow start-up: ld.so,
//! reading the plan and the module, compiling or loading code, writing the `.cwasm` cache. None
//! of that is needed once the app runs, and the app is the untrusted part. The run-phase filter
//! ([`AppRunPolicy`], data in `os/sandbox/policies/wasm_app_*.json`) keeps only what running
//! needs, and file operations only for an app with granted directories. Filters stack: a call
//! runs only if both allow it. Decision 0089.

use testudo_sandbox::policy::AppRunPolicy;

use crate::HostError;

/// Installs the run-phase filter for every thread of the process (`SECCOMP_FILTER_FLAG_TSYNC`)
/// and returns the policy installed. Irreversible: call it right before the app starts.
pub fn enter_run_phase(uses_files: bool) -> Result<AppRunPolicy, HostError> {
    start_wasi_runtime();
    let policy = AppRunPolicy::for_app(uses_files);
    let program = policy
        .compile()
        .map_err(|source| HostError::RunPhasePolicy { source })?;
    seccompiler::apply_filter_all_threads(&program).map_err(|source| {
        HostError::RunPhaseFilter {
            policy: policy.name(),
            source,
        }
    })?;
    Ok(policy)
}

/// Builds wasmtime-wasi's tokio runtime now, in the start-up phase: building it sizes the
/// worker pool from `/proc/self/cgroup` and `/sys/fs/cgroup` (std's `available_parallelism`),
/// files the run-phase filter does not let the host open. Its worker threads then exist before
/// the filter and are covered by `TSYNC`.
fn start_wasi_runtime() {
    wasmtime_wasi::runtime::in_tokio(async {});
}
