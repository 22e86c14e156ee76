//! testudo's WASM host: runs WebAssembly apps — WASI preview 1 core modules and preview 2
//! components — with exactly the capabilities their routes grant, under the plan's limits.
//!
//! - [`grants`]: what an app may use, computed from its routes (or `testudo app run` flags).
//! - [`device`]: the `testudo:device` interfaces (sensor, telemetry, net) and the
//!   [`DeviceBackend`] they forward to ([`LocalDevice`]; [`scheme_device`] over routed scheme
//!   handles); [`device_p1`]/[`device_p2`] bind them for modules and components.
//! - [`limits`], [`output`]: memory/table caps, CPU and wall budgets, output budget.
//! - [`engine`], [`cache`]: the shared engine with its epoch ticker; the `.cwasm` cache.
//! - [`provided`]: telemetry capabilities an app provides, served to consumers as a scheme.
//! - [`precompile`]: `.cwasm` files for images, loaded as sidecars (and their trust rule).
//! - [`run`]: one run of one app, ending in an [`Outcome`].
//! - [`run_phase`]: the narrower seccomp filter the host enters before the app's code runs.
//! - [`supervise`]: restart policy and hot swap with rollback.
//! - [`componentize`]: turning a preview 1 module into a component.
//!
//! # The `testudo-wasm-host` binary
//!
//! `testudo-init` runs one host process per `kind = wasm` component:
//!
//! ```text
//! testudo-wasm-host precompile IN.wasm OUT.cwasm
//!     compile ahead of time with the host's engine settings (for images: OUT = IN's
//!     sidecar, `P.wasm` -> `P.cwasm`, loaded before the cache; see [`precompile`])
//! testudo-wasm-host --plan PLAN.json --component NAME
//!     [--app-root DIR]      directory the plan's `run.module` paths are relative to (default .)
//!     [--storage-root DIR]  root of storage providers' per-consumer dirs (default /data)
//!     [--cache DIR]         .cwasm cache (default /var/cache/testudo/wasm)
//!     [--device-dir DIR]    local device backend: sensor values from DIR/sensors/<channel>,
//!                           telemetry appended to DIR/telemetry.jsonl
//! ```
//!
//! When `TESTUDO_HANDLES` is set (by `testudo-init`), device calls go to the routed scheme
//! handles instead ([`scheme_device::SchemeDevice`]) and stdout/stderr to the `log` handle.
//! When the app provides a `telemetry` capability and init passed the provider control
//! socket (`TESTUDO_SCHEME_FD`), the host serves that capability to its consumers
//! ([`provided`]) and the app's publishing goes there.
//!
//! It runs the app, applies the component's restart policy, and exits with the code below.
//!
//! # Exit codes (host binary and `testudo app run`)
//!
//! | code  | meaning |
//! |-------|---------|
//! | 0-69  | the app's own exit code (`proc_exit` / return from `main`) |
//! | 70    | the app trapped (out-of-bounds access, unreachable, stack exhausted) |
//! | 71    | memory or table limit exceeded |
//! | 72    | CPU-time or wall-clock budget exceeded |
//! | 73    | output limit exceeded |
//! | 74    | the app imports something no route grants (it never started) |
//! | 75    | stopped by the host |
//! | 76    | the app could not be loaded or set up (not wasm, compile error, missing dir) |
//! | 2     | bad command line |
//!
//! Each non-zero host-side ending prints one line `testudo-wasm-host: app NAME: REASON`.

pub mod cache;
pub mod componentize;
pub mod device;
pub mod device_p1;
pub mod device_p2;
pub mod engine;
pub mod error;
pub mod grants;
pub mod limits;
pub mod output;
pub mod precompile;
pub mod provided;
pub mod refused_calls;
pub mod run;
pub mod run_phase;
pub mod scheme_device;
pub mod supervise;

pub use cache::{
    compile_app, load_app, AppKind, CodeOrigin, CodeSources, CompiledApp, ModuleCache,
};
pub use device::{DeviceBackend, LocalDevice, TelemetryRecord};
pub use engine::{EngineOptions, HostEngine};
pub use error::HostError;
pub use grants::{DirGrant, Grants, PlanPaths, PlannedApp};
pub use limits::{AppLimits, LimitExceeded};
pub use output::OutputSink;
pub use run::{Outcome, PreparedApp, RunContext, StopSignal};

/// Exit code for an app that could not be loaded or set up.
pub const EXIT_SETUP_FAILED: u8 = 76;
