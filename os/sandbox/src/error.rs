//! Errors of the sandbox.

use std::path::PathBuf;

/// Everything that can go wrong preparing or starting a sandboxed process.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A rule of a seccomp policy asks for what the compiler does not do.
    #[error("seccomp policy {policy} has {problem}")]
    PolicyRule {
        /// The policy (a role's name, or a WASM host's run-phase filter).
        policy: &'static str,
        /// What the rule asks for.
        problem: &'static str,
    },
    /// A rule of a seccomp policy names no x86_64 syscall.
    #[error("seccomp policy {policy} names `{syscall}`, which is not an x86_64 syscall")]
    PolicyUnknownSyscall {
        /// The policy.
        policy: &'static str,
        /// The name.
        syscall: String,
    },
    /// A seccomp policy file is not JSON, or a rule in it is not of the policy format.
    #[error("seccomp policy {policy} is not a valid policy document")]
    PolicyParse {
        /// The policy.
        policy: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A policy has no `main` filter.
    #[error("seccomp policy {policy} has no `main` filter (see os/sandbox/policies)")]
    PolicyWithoutMainFilter {
        /// The policy.
        policy: &'static str,
    },
    /// A path handed to the sandbox is unusable.
    #[error("sandbox path {path}: {problem}")]
    Path {
        /// The path.
        path: PathBuf,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Finding the shared libraries of a binary failed.
    #[error("listing shared libraries of {binary} with ldd")]
    Libraries {
        /// The binary.
        binary: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Building the landlock ruleset failed.
    #[error("building the landlock ruleset for {component}")]
    Landlock {
        /// The component.
        component: String,
        /// What landlock said.
        #[source]
        source: landlock::RulesetError,
    },
    /// A kernel call in the parent failed.
    #[error("{step} for {component}")]
    Kernel {
        /// The operation.
        step: &'static str,
        /// The component.
        component: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The child failed during setup, before `execve` completed.
    #[error("sandbox setup step {step} failed for {component} (errno {errno})")]
    ChildSetup {
        /// The component.
        component: String,
        /// Description of the step that failed.
        step: String,
        /// The errno the child saw.
        errno: i32,
    },
}

/// Why a cgroup v2 tree could not be set up (components then get rlimits only).
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup2 filesystem is mounted.
    #[error("no cgroup2 filesystem is mounted")]
    NoMount,
    /// The mount's `cgroup.controllers` could not be read.
    #[error("no cgroup v2 controllers at {}", mount.display())]
    ReadControllers {
        /// The cgroup2 mount.
        mount: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A required controller is not offered.
    #[error("the {controller} controller is not available in cgroup v2 at {}", mount.display())]
    ControllerMissing {
        /// The controller.
        controller: &'static str,
        /// The cgroup2 mount.
        mount: PathBuf,
    },
    /// A `cgroup.subtree_control` could not be read.
    #[error("reading {}", path.display())]
    ReadSubtreeControl {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A required controller could not be enabled.
    #[error("enabling {controller} in {}", path.display())]
    EnableController {
        /// The controller.
        controller: &'static str,
        /// The `cgroup.subtree_control` written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The tree's directory could not be created.
    #[error("creating {}", path.display())]
    CreateTree {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
