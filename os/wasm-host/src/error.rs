//! Errors of the WASM host: each variant names the step that failed and what it worked on.

use std::path::PathBuf;

/// A boxed source error (wasmtime's own error type is converted into this).
pub type BoxedSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong before or around running an app. What happens *inside* an
/// app (trap, limit, exit code) is an [`crate::Outcome`], not an error.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The wasmtime engine could not be configured.
    #[error("configuring the wasmtime engine")]
    EngineConfig {
        #[source]
        source: BoxedSource,
    },
    /// A CPU feature the compiled code should assume is not one Cranelift knows for this
    /// architecture.
    #[error("unknown CPU feature `{feature}` for {arch} (known: {known})")]
    CpuFeature {
        feature: String,
        arch: &'static str,
        known: String,
    },
    /// The app file could not be read.
    #[error("reading app {path}")]
    ReadApp {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are neither a core WebAssembly module nor a component.
    #[error("app {app}: not a WebAssembly module or component (bad header)")]
    NotWasm { app: String },
    /// Compiling (or validating) the app failed.
    #[error("compiling app {app}")]
    Compile {
        app: String,
        #[source]
        source: BoxedSource,
    },
    /// A cached `.cwasm` could not be loaded (it is then recompiled; this surfaces only when
    /// recompiling fails too).
    #[error("loading cached module {path}")]
    CacheLoad {
        path: PathBuf,
        #[source]
        source: BoxedSource,
    },
    /// The app imports something no route grants.
    #[error("app {app}: import {module}#{name} is not granted")]
    ImportNotGranted {
        app: String,
        module: String,
        name: String,
    },
    /// A preopened directory could not be opened.
    #[error("app {app}: granting directory {host_path} as {guest_path}")]
    Preopen {
        app: String,
        host_path: PathBuf,
        guest_path: String,
        #[source]
        source: BoxedSource,
    },
    /// Linking host functions into the linker failed (a host bug, not the app's).
    #[error("app {app}: linking host interfaces")]
    Link {
        app: String,
        #[source]
        source: BoxedSource,
    },
    /// The plan could not be read or parsed.
    #[error("reading plan {path}")]
    ReadPlan {
        path: PathBuf,
        #[source]
        source: BoxedSource,
    },
    /// The named component is not in the plan.
    #[error("component {component} is not in the plan")]
    UnknownComponent { component: String },
    /// The named component is in the plan but is not a WASM app.
    #[error("component {component} is not a wasm component")]
    NotWasmComponent { component: String },
    /// A routed `net` destination is not `host:port` or does not resolve.
    #[error("app {app}: routed net destination {destination} is not a resolvable host:port")]
    NetDestination {
        app: String,
        destination: String,
        #[source]
        source: Option<std::io::Error>,
    },
    /// A grant given on the command line is malformed.
    #[error("grant {text}: {reason}")]
    BadGrant { text: String, reason: &'static str },
    /// The component encoder (wit-component) failed.
    #[error("making a component from {app}")]
    Componentize {
        app: String,
        #[source]
        source: BoxedSource,
    },
    /// A file could not be written.
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The routed scheme handles passed by `testudo-init` could not be taken.
    #[error("taking the routed scheme handles")]
    Handles {
        #[source]
        source: testudo_scheme::SchemeError,
    },
    /// Making the copy-on-write image of an app's initial memory failed.
    #[error("making the memory image of app {app}")]
    MemoryImage {
        app: String,
        #[source]
        source: BoxedSource,
    },
    /// The run-phase seccomp policy did not compile.
    #[error("compiling the run-phase seccomp policy")]
    RunPhasePolicy {
        #[source]
        source: testudo_sandbox::SandboxError,
    },
    /// The kernel refused the run-phase seccomp filter.
    #[error("installing the run-phase seccomp filter {policy}")]
    RunPhaseFilter {
        policy: &'static str,
        #[source]
        source: seccompiler::Error,
    },
    /// Starting the app's thread failed.
    #[error("starting a thread for app {app}")]
    Spawn {
        app: String,
        #[source]
        source: std::io::Error,
    },
}

/// Converts wasmtime's error type into a boxed std error for `#[source]`.
pub(crate) fn boxed(error: wasmtime::Error) -> BoxedSource {
    error.into_boxed_dyn_error()
}
