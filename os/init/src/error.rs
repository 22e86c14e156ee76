//! Errors of testudo-init.

use std::path::PathBuf;

/// What can stop the supervisor from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The plan file could not be read or parsed.
    #[error("reading the plan {path}")]
    ReadPlan {
        /// The plan path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A component depends on a component the plan does not have.
    #[error("component {component} depends on unknown component {dependency}")]
    UnknownDependency {
        /// The dependent.
        component: String,
        /// The missing dependency.
        dependency: String,
    },
    /// The dependency graph has a cycle.
    #[error("dependency cycle among: {components}")]
    DependencyCycle {
        /// Components in or behind the cycle.
        components: String,
    },
    /// The data partition could not be found or mounted (PID 1 only).
    #[error("data partition `{label}`: {step}")]
    DataPartition {
        /// What was being done.
        step: &'static str,
        /// Its GPT partition name.
        label: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A `/dev/disk/by-partlabel` link could not be made (PID 1 only).
    #[error("linking partition {link}")]
    PartitionLink {
        /// The link.
        link: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A state directory could not be prepared.
    #[error("preparing {path}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A kernel call the supervisor itself makes failed.
    #[error("{step}")]
    Kernel {
        /// What was being done.
        step: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The status scheme could not be set up.
    #[error("starting the status scheme")]
    Status {
        /// The scheme error.
        #[source]
        source: testudo_scheme::SchemeError,
    },
    /// A private software TPM (swtpm) could not be started.
    #[error("software TPM in {dir}: {problem}")]
    SoftwareTpm {
        /// Its directory (state and socket).
        dir: PathBuf,
        /// What went wrong.
        problem: String,
        /// The OS error, when there is one.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The supervisor thread panicked instead of returning.
    #[error("the supervisor thread panicked: {message}")]
    SupervisorPanicked {
        /// The panic payload, when it was a string.
        message: String,
    },
}

/// Why one component could not be launched (reported as an event; the supervisor goes on).
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A plan section passed in the environment cannot be written as JSON.
    #[error("component {component}: {variable} cannot be written")]
    EnvironmentValue {
        /// The component.
        component: String,
        /// The variable.
        variable: &'static str,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The plan's binary name is not a plain file name.
    #[error("binary name {binary:?} is not a plain file name")]
    BinaryName {
        /// The name from the plan.
        binary: String,
    },
    /// The WASM host binary is not installed.
    #[error("wasm host missing")]
    WasmHostMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The component's binary is not installed.
    #[error("binary {} missing", path.display())]
    BinaryMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A device node the component needs does not exist.
    #[error("component {component}: device {} does not exist", path.display())]
    DeviceMissing {
        /// The component.
        component: String,
        /// The host path standing in for the device node.
        path: PathBuf,
    },
    /// The WASM module path is absolute or climbs out of the app root.
    #[error("component {component}: module path {module} must be relative without `..`")]
    ModulePath {
        /// The component.
        component: String,
        /// The module path from the plan.
        module: String,
    },
    /// The WASM module does not exist.
    #[error("component {component}: module {} does not exist", path.display())]
    ModuleMissing {
        /// The component.
        component: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A directory the component needs could not be created.
    #[error("component {component}: creating {}", path.display())]
    CreateDir {
        /// The component.
        component: String,
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A directory or device could not be handed to the component's host uid.
    #[error("component {component}: chown {}", path.display())]
    Chown {
        /// The component.
        component: String,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A routed handle could not be created.
    #[error("component {component}: creating handle {local}")]
    Handle {
        /// The consumer.
        component: String,
        /// The route's local name.
        local: String,
        /// The scheme error.
        #[source]
        source: Box<testudo_scheme::SchemeError>,
    },
    /// The provider of a route is not serving.
    #[error("component {component}: provider {provider} of {local} is not serving")]
    ProviderNotServing {
        /// The consumer.
        component: String,
        /// The route's local name.
        local: String,
        /// The provider.
        provider: String,
    },
    /// A routed handle could not be handed to its provider.
    #[error("component {component}: routing {local} to {provider}")]
    Route {
        /// The consumer.
        component: String,
        /// The route's local name.
        local: String,
        /// The provider.
        provider: String,
        /// The scheme error.
        #[source]
        source: Box<testudo_scheme::SchemeError>,
    },
    /// The provider control socket could not be created.
    #[error("component {component}: control socket")]
    ControlSocket {
        /// The component.
        component: String,
        /// The scheme error.
        #[source]
        source: Box<testudo_scheme::SchemeError>,
    },
    /// The output pipe could not be created.
    #[error("component {component}: output pipe")]
    OutputPipe {
        /// The component.
        component: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Standard input could not be opened.
    #[error("component {component}: opening {}", path.display())]
    Stdin {
        /// The component.
        component: String,
        /// The path opened.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The launch was already spawned.
    #[error("component {component}: launch already spawned")]
    AlreadySpawned {
        /// The component.
        component: String,
    },
    /// The sandbox could not be prepared.
    #[error("component {component}: preparing the sandbox")]
    Prepare {
        /// The component.
        component: String,
        /// The sandbox error.
        #[source]
        source: Box<testudo_sandbox::SandboxError>,
    },
    /// The sandboxed process could not be started.
    #[error("component {component}: spawning the sandbox")]
    Spawn {
        /// The component.
        component: String,
        /// The sandbox error.
        #[source]
        source: Box<testudo_sandbox::SandboxError>,
    },
}

/// Why the board's network link could not be brought up (PID 1; the boot goes on).
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The board's address is not `IPV4/PREFIX`.
    #[error("the board's address {value:?} is not IPV4/PREFIX")]
    Address {
        /// As written in the plan.
        value: String,
    },
    /// The board's gateway is not an IPv4 address.
    #[error("the board's gateway {value:?} is not an IPv4 address")]
    Gateway {
        /// As written in the plan.
        value: String,
    },
    /// The interface name cannot be a kernel interface name.
    #[error("{name:?} is not an interface name (1-15 bytes)")]
    InterfaceName {
        /// As written in the plan.
        name: String,
    },
    /// The interface did not appear (no driver for the NIC, or another name).
    #[error("interface {interface} did not appear within {waited:?}")]
    NoInterface {
        /// The interface.
        interface: String,
        /// How long init waited.
        waited: std::time::Duration,
    },
    /// A configuration step failed.
    #[error("{interface}: {step}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// The interface.
        interface: String,
        /// The kernel's error.
        #[source]
        source: std::io::Error,
    },
}

/// What went wrong keeping an app slot's deployments on the data partition
/// ([`crate::slots`]).
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// The slot's state file could not be read.
    #[error("reading the app slot state {path}")]
    ReadState {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The slot's state file is not a state this build reads.
    #[error("the app slot state {path} is damaged")]
    ParseState {
        /// The state file.
        path: PathBuf,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// The slot's state could not be encoded.
    #[error("encoding the state of app slot {slot}")]
    Encode {
        /// The slot.
        slot: String,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// The slot's state could not be written.
    #[error("writing the app slot state {path}")]
    WriteState {
        /// The state file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A token read back from the slot's state no longer verifies.
    #[error("the deployment installed in app slot {slot} does not verify")]
    Reverify {
        /// The slot.
        slot: String,
        /// Why.
        #[source]
        source: testudo_deployment::DeploymentError,
    },
    /// The module of the slot's deployment is missing or its bytes changed.
    #[error("the module of app slot {slot}'s deployment, {path}, is missing or changed")]
    ModuleMissing {
        /// The slot.
        slot: String,
        /// Where the module should be.
        path: PathBuf,
    },
    /// The device restarted while the slot's new app was under its health check; it is
    /// rolled back, as it never proved healthy.
    #[error("app slot {slot}'s new app was still under its health check when the device restarted; rolled back")]
    TrialInterrupted {
        /// The slot.
        slot: String,
    },
    /// The deploy public key could not be read.
    #[error("reading the deploy public key {path}")]
    DeployKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: testudo_deployment::DeploymentError,
    },
}
