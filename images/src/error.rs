//! The one error type of the image builder. Each variant names the step that failed and
//! carries what it worked on; the underlying cause is kept as `#[source]`, never repeated in
//! the message.

use std::path::PathBuf;

/// Everything that can go wrong while building or booting an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
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
    /// A signed manifest is malformed or its signature does not verify.
    #[error("manifest {path}: {detail}")]
    ManifestVerify { path: PathBuf, detail: String },
    /// The update bundle could not be created.
    #[error("creating the update bundle {path}")]
    Bundle {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The VM could not be started or driven.
    #[error("VM {disk}: {detail}")]
    Vm { disk: PathBuf, detail: String },
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
