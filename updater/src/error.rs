//! The one error type of the updater library. Each variant names the step that failed and
//! carries what it worked on; the underlying cause is in `source()`, never repeated in the text.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in `testudo-updater`.
#[derive(Debug, thiserror::Error)]
pub enum UpdaterError {
    /// Reading a file or device failed.
    #[error("reading {path}")]
    Read {
        /// What was read.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Writing a file or device failed.
    #[error("writing {path}")]
    Write {
        /// What was written.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An INI-style text (manifest, system.conf, status file) is malformed.
    #[error("parsing {what}: line {line}: {message}")]
    ParseIni {
        /// Which document (e.g. `manifest.raucm`).
        what: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A manifest is well-formed INI but misses or misuses a field.
    #[error("manifest: {message}")]
    Manifest {
        /// What is wrong.
        message: String,
    },
    /// A system.conf is well-formed INI but misses or misuses a field.
    #[error("system.conf: {message}")]
    SystemConf {
        /// What is wrong.
        message: String,
    },
    /// The bundle file's framing (size trailer, signature size, payload size) is invalid.
    #[error("bundle {path}: {message}")]
    BundleFormat {
        /// The bundle.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Loading a certificate, key or keyring failed.
    #[error("loading {what} from {path}")]
    LoadCrypto {
        /// What was loaded (e.g. `keyring`, `signing key`).
        what: &'static str,
        /// Where from.
        path: PathBuf,
        /// The OpenSSL error.
        #[source]
        source: openssl::error::ErrorStack,
    },
    /// Creating the CMS signature failed.
    #[error("signing the bundle")]
    Sign(#[source] openssl::error::ErrorStack),
    /// Making OpenSSL's ECDSA signature deterministic failed (unexpected CMS structure).
    #[error("making the bundle signature deterministic: {detail}")]
    DeterministicSignature {
        /// What was not as expected.
        detail: String,
    },
    /// The CMS signature did not verify (bad signature, untrusted chain, expired signer...).
    #[error("verifying the bundle signature of {path}")]
    VerifySignature {
        /// The bundle.
        path: PathBuf,
        /// The OpenSSL error with the reason.
        #[source]
        source: openssl::error::ErrorStack,
    },
    /// The signer certificate is valid but not allowed by the configured signer rule.
    #[error("signer {subject} is not an allowed signer")]
    SignerNotAllowed {
        /// The signer's subject.
        subject: String,
    },
    /// Generating keys or certificates failed.
    #[error("generating {what}")]
    GenerateKey {
        /// What was generated.
        what: &'static str,
        /// The OpenSSL error.
        #[source]
        source: openssl::error::ErrorStack,
    },
    /// The payload does not match the dm-verity hash tree or root hash in the manifest.
    #[error("verifying payload of {path}: {message}")]
    VerifyPayload {
        /// The bundle.
        path: PathBuf,
        /// Which block or hash failed.
        message: String,
    },
    /// An image extracted from the bundle does not match the manifest's size or sha256.
    #[error("verifying image {filename}: {message}")]
    VerifyImage {
        /// The image file name in the bundle.
        filename: String,
        /// What did not match.
        message: String,
    },
    /// The squashfs payload of `path` is compressed with a compressor the in-process reader
    /// lacks (it reads gzip, squashfs-tools' and RAUC's default, zstd and stored data).
    #[error("the payload of {path} is compressed with {compressor}; only gzip, zstd or no compression can be read")]
    PayloadCompressor {
        /// The bundle (or squashfs).
        path: PathBuf,
        /// The compressor the superblock names.
        compressor: String,
    },
    /// Reading file `name` of the squashfs payload of `path` failed (a corrupt table or
    /// block).
    #[error("reading {name} from the payload of {path}")]
    ReadPayload {
        /// The bundle (or squashfs).
        path: PathBuf,
        /// The file of the payload.
        name: String,
        /// What the squashfs reader said.
        #[source]
        source: backhand::BackhandError,
    },
    /// An entry of the squashfs payload of `path` cannot be extracted as it is: a name that
    /// would leave the extraction directory, a device node, a fifo or a socket.
    #[error("extracting {name} from the payload of {path}: {message}")]
    PayloadEntry {
        /// The bundle (or squashfs).
        path: PathBuf,
        /// The entry, as the payload names it.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// The bundle's signature is enveloped for its recipients (`rauc encrypt`) and no
    /// decryption key was given.
    #[error("bundle {path} is encrypted for its recipients; give a decryption key (system.conf [encryption] key=, or --decrypt-key)")]
    EncryptedBundle {
        /// The bundle.
        path: PathBuf,
    },
    /// The signature's envelope could not be opened step by step with a TPM-held key (no
    /// entry for the key, a malformed envelope, the TPM refusing).
    #[error("decrypting the signature of {path} with the TPM-held key {key}")]
    DecryptEnvelope {
        /// The bundle.
        path: PathBuf,
        /// The key file (the TPM-wrapped blob).
        key: PathBuf,
        /// Which step failed.
        source: crate::crypt::EnvelopeError,
    },
    /// The bundle's enveloped signature could not be opened with the device's key: the bundle
    /// is not encrypted for it (or the envelope is corrupt).
    #[error(
        "decrypting the signature of {path} with {key}: the bundle is not encrypted for this key"
    )]
    DecryptSignature {
        /// The bundle.
        path: PathBuf,
        /// The private key tried.
        key: PathBuf,
        /// What OpenSSL said.
        #[source]
        source: openssl::error::ErrorStack,
    },
    /// AES of a payload sector, or making a CMS envelope, failed in OpenSSL.
    #[error("encrypting or decrypting the payload")]
    Crypt(#[source] openssl::error::ErrorStack),
    /// The bundle carries programs RAUC would run while installing (install hooks, a custom
    /// handler); this installer runs none, and skipping them could install something else than
    /// the bundle means, so the bundle is refused before anything is written.
    #[error("checking the bundle's programs: it carries {} and this installer runs none here ([bundle-programs] run=sandboxed in system.conf lets `testudo update install` run them, sandboxed)", scripts.join(", "))]
    BundlePrograms {
        /// What RAUC would run, e.g. `pre-install hook of [image.rootfs]`.
        scripts: Vec<String>,
    },
    /// The bundle's install-check hook rejected it (exit code 10 or more, RAUC's protocol).
    #[error("bundle rejected by its {program}: {reason}")]
    BundleRejected {
        /// `install-check hook`.
        program: String,
        /// Its last line on stderr (or its exit code when it wrote none).
        reason: String,
    },
    /// A bundle program (hook, handler) failed, was killed or timed out.
    #[error("running {program}: {exit}{}", last_line(stderr))]
    BundleProgram {
        /// Which program (`post-install hook of [image.rootfs]`).
        program: String,
        /// How it ended.
        exit: crate::programs::ProgramExit,
        /// Its last line on stderr.
        stderr: String,
    },
    /// A bundle program's sandbox could not be set up or started.
    #[error("starting {program} in its sandbox")]
    ProgramSandbox {
        /// Which program.
        program: String,
        /// What failed.
        source: testudo_sandbox::SandboxError,
    },
    /// The bundle's image is a casync index (`rauc convert`): its bytes are in a chunk store,
    /// which this installer does not read; a plain or verity bundle (or a delta bundle)
    /// carries them.
    #[error("checking image {filename}: a casync index of a chunk store; install the bundle before `rauc convert` (or a delta bundle) instead")]
    CasyncBundle {
        /// The index file named by the manifest.
        filename: String,
    },
    /// An external tool (mksquashfs, custom bootloader backend) failed.
    #[error("running {tool}: {message}")]
    Tool {
        /// The program.
        tool: String,
        /// Exit status and stderr excerpt.
        message: String,
    },
    /// Starting an external tool failed (usually: not installed).
    #[error("starting {tool} (is it installed?)")]
    ToolMissing {
        /// The program.
        tool: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Waiting for a started external tool to exit failed.
    #[error("waiting for {tool}")]
    WaitForTool {
        /// The program.
        tool: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Computing the patch of a delta bundle failed.
    #[error("computing the patch for image {filename}")]
    CreatePatch {
        /// The new image's file name.
        filename: String,
        /// What went wrong.
        #[source]
        source: crate::patch::PatchError,
    },
    /// Applying the patch of a delta bundle failed (malformed patch, or the old slot could not
    /// be read); the target slot is not marked bootable.
    #[error("applying patch {filename}")]
    ApplyPatch {
        /// The patch's file name in the bundle.
        filename: String,
        /// What went wrong.
        #[source]
        source: crate::patch::PatchError,
    },
    /// A delta bundle's base is not what the active slot holds; nothing was written.
    #[error("delta base: slot {slot} {message}")]
    DeltaBase {
        /// The active slot the patch would read.
        slot: String,
        /// What differs.
        message: String,
    },
    /// What a patch produced differs from the target the signed manifest names; the target
    /// slot is not marked bootable.
    #[error("delta result of {filename}: {message}")]
    DeltaResult {
        /// The patch's file name in the bundle.
        filename: String,
        /// What differs.
        message: String,
    },
    /// The bundle is not for this system.
    #[error("bundle is for compatible {bundle:?}, this system is {system:?}")]
    Incompatible {
        /// The bundle's `compatible`.
        bundle: String,
        /// The system's `compatible`.
        system: String,
    },
    /// The bundle's version is lower than the installed one.
    #[error("bundle version {bundle} is lower than installed version {installed} (downgrade refused; allow it explicitly)")]
    Downgrade {
        /// The bundle version.
        bundle: String,
        /// The installed version.
        installed: String,
    },
    /// A bundle image does not fit or match a slot, or no target slot exists.
    #[error("selecting target slot: {message}")]
    TargetSlot {
        /// What is wrong.
        message: String,
    },
    /// A slot name given by the user does not exist.
    #[error("unknown slot {name:?}")]
    UnknownSlot {
        /// The name given.
        name: String,
    },
    /// The bootloader state (grubenv, custom backend, state file) is invalid or unreadable.
    #[error("bootloader {backend}: {message}")]
    Bootloader {
        /// The backend name.
        backend: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The file backend's JSON state file is not valid.
    #[error("parsing the boot state file {path}")]
    ParseBootState {
        /// The state file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The file backend's state could not be rendered as JSON.
    #[error("rendering the boot state for {path}")]
    RenderBootState {
        /// The state file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A crash point injected by a test was hit: the install stopped there, as if power was cut.
    #[error("install interrupted at step {step}")]
    Interrupted {
        /// The step number that was not performed.
        step: usize,
    },
}

/// Result alias for the updater.
pub type Result<T, E = UpdaterError> = std::result::Result<T, E>;

/// Maps an `io::Error` to [`UpdaterError::Read`] for `path`.
pub(crate) fn read_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> UpdaterError {
    let path = path.into();
    move |source| UpdaterError::Read { path, source }
}

/// `; last line on stderr: ...` when a program wrote one.
fn last_line(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; last line on stderr: {stderr}")
    }
}

/// Maps an `io::Error` to [`UpdaterError::Write`] for `path`.
pub(crate) fn write_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> UpdaterError {
    let path = path.into();
    move |source| UpdaterError::Write { path, source }
}

/// [`UpdaterError::Tool`] for `tool` that exited with `status`: the message is the status and
/// the first 600 characters of its stderr.
pub(crate) fn tool_failed(
    tool: impl Into<String>,
    status: std::process::ExitStatus,
    stderr: &[u8],
) -> UpdaterError {
    let stderr = String::from_utf8_lossy(stderr);
    let excerpt: String = stderr.trim().chars().take(600).collect();
    UpdaterError::Tool {
        tool: tool.into(),
        message: format!("{status}: {excerpt}"),
    }
}
