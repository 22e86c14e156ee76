//! The one error type of the image builder. Each variant names the step that failed and
//! carries what it worked on; the underlying cause is kept as `#[source]`, never repeated in
//! the message.

use std::path::PathBuf;

use crate::builder::BuildStep;

/// Everything that can go wrong while building or booting an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A build step failed; `source` says how.
    #[error("build step `{step}` failed")]
    Step {
        step: BuildStep,
        #[source]
        source: Box<ImageError>,
    },
    /// A build step ran before the step that makes what it needs (the step table is out of
    /// order).
    #[error("{what} was not made by an earlier build step")]
    StepOrder { what: &'static str },
    /// An external tool is not installed.
    #[error("tool `{tool}` is not installed (Debian package `{package}`)")]
    ToolMissing { tool: String, package: &'static str },
    /// An external tool could not be started.
    #[error("could not start `{tool}`")]
    ToolStart {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    /// An external tool ran and failed.
    #[error("`{tool}` failed ({status}) while {step}: {stderr}")]
    ToolFailed {
        tool: String,
        step: String,
        status: String,
        stderr: String,
    },
    /// Reading an input file failed.
    #[error("could not read {path}")]
    ReadInput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing into the build or output directory failed.
    #[error("could not write {path}")]
    WriteOutput {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `SOURCE_DATE_EPOCH` is not a non-negative integer.
    #[error("SOURCE_DATE_EPOCH must be a non-negative integer number of seconds, got `{value}`")]
    SourceDateEpoch { value: String },
    /// A native binary named by the plan (or needed by the image) was not found.
    #[error("binary `{name}` (needed by {needed_by}) not found in {searched}; build it first (cargo build --workspace)")]
    BinaryMissing {
        name: String,
        needed_by: String,
        searched: String,
    },
    /// `ldd` output for a binary could not be understood or named a missing library.
    #[error("shared library closure of {binary}: {detail}")]
    SharedLibraries { binary: PathBuf, detail: String },
    /// A WebAssembly module named by the plan is missing or is not WebAssembly.
    #[error("WASM module `{module}` of component `{component}` at {path}: {detail}")]
    WasmModule {
        component: String,
        module: String,
        path: PathBuf,
        detail: String,
    },
    /// A WebAssembly module named by the plan could not be opened.
    #[error("WASM module `{module}` of component `{component}` at {path} could not be opened; build apps with `cargo xtask apps`")]
    WasmModuleOpen {
        component: String,
        module: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The WASM host could not precompile an app.
    #[error("precompiling WASM app `{module}` with {host}: {detail}")]
    Precompile {
        host: PathBuf,
        module: String,
        detail: String,
    },
    /// A layer appended to the rootfs has top-level names the rootfs already has (mksquashfs
    /// would append them renamed, where nothing looks for them).
    #[error("rootfs {layer}: top-level names {names} are already in the system layer (mksquashfs would rename them)")]
    LayerNameClash { layer: String, names: String },
    /// The kernel named by the board could not be used.
    #[error("kernel {path}: {detail}")]
    Kernel { path: PathBuf, detail: String },
    /// A kernel module the image needs could not be resolved.
    #[error("kernel module `{module}` for kernel {kernel_version}: {detail}")]
    KernelModule {
        module: String,
        kernel_version: String,
        detail: String,
    },
    /// A partition's content does not fit the size the board gives it.
    #[error("partition `{partition}` is {available} bytes but its content needs {needed} bytes (raise it in the board file)")]
    PartitionTooSmall {
        partition: String,
        needed: u64,
        available: u64,
    },
    /// The board describes something this builder cannot produce.
    #[error("board `{board}`: {detail}")]
    Board { board: String, detail: String },
    /// The config's `cloud.trust_anchors` holds no PEM certificate.
    #[error("trust anchors {path}: no PEM certificate in the file")]
    TrustAnchors { path: PathBuf },
    /// A signing key could not be read or created.
    #[error("signing key {path}")]
    Key {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Serialising a build artifact (plan copy, manifest) failed.
    #[error("could not serialise {what}")]
    Serialize {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// Verifying a manifest: the file is not a signed manifest.
    #[error("manifest {path} is not a signed manifest")]
    ManifestParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Verifying a manifest: it is signed with an algorithm other than Ed25519.
    #[error("manifest {path} is signed with the unsupported algorithm `{algorithm}`")]
    ManifestAlgorithm { path: PathBuf, algorithm: String },
    /// Verifying a manifest: its public key is not an Ed25519 key.
    #[error("manifest {path}: `public_key` is not an Ed25519 public key (32 hex bytes)")]
    ManifestPublicKey {
        path: PathBuf,
        #[source]
        source: Option<ed25519_dalek::SignatureError>,
    },
    /// Verifying a manifest: it is signed by a key other than the trusted one.
    #[error("manifest {path} is signed by an untrusted key")]
    ManifestUntrustedKey { path: PathBuf },
    /// Verifying a manifest: its signature value is not 64 hex bytes.
    #[error("manifest {path}: the signature value is not 64 hex bytes")]
    ManifestSignatureValue { path: PathBuf },
    /// Verifying a manifest: the signature does not verify.
    #[error("manifest {path}: the signature does not verify")]
    ManifestSignature {
        path: PathBuf,
        #[source]
        source: ed25519_dalek::SignatureError,
    },
    /// Verifying a manifest: the signed content is not a manifest of this format.
    #[error("manifest {path}: the signed content is not a valid manifest")]
    ManifestContent {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The update bundle could not be created.
    #[error("creating the update bundle {path}")]
    Bundle {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A built update bundle could not be read back.
    #[error("reading the update bundle {path}")]
    BundleRead {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Starting a VM: the disk image does not exist.
    #[error("VM disk image {disk} does not exist")]
    VmDiskMissing { disk: PathBuf },
    /// Starting a VM: its runtime directory (sockets, logs) could not be created.
    #[error("VM {disk}: could not create a runtime directory")]
    VmRuntimeDir {
        disk: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Starting a VM: a program it needs (QEMU, swtpm) could not be started.
    #[error("VM {disk}: could not start `{program}`")]
    VmStart {
        disk: PathBuf,
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// Starting a VM: swtpm did not create its control socket in time.
    #[error("VM {disk}: swtpm did not create its control socket {socket} within {seconds} s")]
    SwtpmSocketTimeout {
        disk: PathBuf,
        socket: PathBuf,
        seconds: u64,
    },
    /// Starting a VM: swtpm exited before creating its control socket.
    #[error("VM {disk}: swtpm exited early ({status}); its log {log} says: {said}")]
    SwtpmExited {
        disk: PathBuf,
        status: String,
        log: PathBuf,
        said: String,
    },
    /// Opening a VM's TPM on the host: swtpm exited before it listened.
    #[error("the TPM state in {state}: swtpm exited early ({status}): {said}")]
    HostTpmExited {
        state: PathBuf,
        status: String,
        said: String,
    },
    /// Opening a VM's TPM on the host: swtpm did not listen in time.
    #[error("the TPM state in {state}: swtpm did not listen within {seconds} s")]
    HostTpmTimeout { state: PathBuf, seconds: u64 },
    /// Running a VM: QEMU's console (its stdout) could not be captured.
    #[error("VM {disk}: QEMU has no stdout pipe for the console")]
    VmConsole { disk: PathBuf },
    /// The VM console did not match the expected pattern in time.
    #[error("VM {disk}: serial console did not match `{pattern}` within {seconds} s")]
    VmTimeout {
        disk: PathBuf,
        pattern: String,
        seconds: u64,
    },
    /// The VM stopped before the console matched the expected pattern.
    #[error("VM {disk}: QEMU exited ({status}) before the serial console matched `{pattern}`")]
    VmExited {
        disk: PathBuf,
        pattern: String,
        status: String,
    },
    /// A partition of a built disk image could not be found in its GPT.
    #[error("disk image {disk}: partition `{label}`: {detail}")]
    GptPartition {
        disk: PathBuf,
        label: String,
        detail: String,
    },
    /// A VM scenario step did not see what it expects (`detail` says what it saw).
    #[error("VM scenario {scenario}, step `{step}`: {detail}")]
    Scenario {
        scenario: &'static str,
        step: String,
        detail: String,
    },
    /// A `--expect` pattern is not a valid regular expression.
    #[error("invalid --expect pattern `{pattern}`")]
    ExpectPattern {
        pattern: String,
        #[source]
        source: regex::Error,
    },
}

/// Result alias for the image builder.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl ImageError {
    /// The build step that failed, if this error came out of one.
    pub fn step(&self) -> Option<BuildStep> {
        match self {
            ImageError::Step { step, .. } => Some(*step),
            _ => None,
        }
    }

    /// The error itself, without the build step it happened in.
    pub fn cause(&self) -> &ImageError {
        match self {
            ImageError::Step { source, .. } => source.cause(),
            other => other,
        }
    }

    /// Wraps an I/O error from reading `path`.
    pub(crate) fn read(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ImageError::ReadInput { path, source }
    }

    /// Wraps an I/O error from writing `path`.
    pub(crate) fn write(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ImageError::WriteOutput { path, source }
    }
}
