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
}
