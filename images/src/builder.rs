//! `build`: plan in, `rootfs.img`, `disk.img`, `update.raucb` and `manifest.json` out.
//!
//! Every step's output is content-addressed in the [`Cache`]: the key covers exactly what
//! determines the output, so an unchanged step is a cache hit and a changed WASM app re-runs
//! only its `.cwasm` precompilation, the rootfs's app layer (appended to the cached system
//! layer, see `rootfs`), the bundle and the disk assembly. Inputs are
//! hashed through a stat-keyed [`DigestCache`], cache objects carry their own digests, and the
//! disk image is described by a map of its data ranges, so unchanged bytes are not re-read.
//! Nothing in the outputs depends on the host path, user, umask, time zone or clock (see
//! `reproducible`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use testudo_config::{Plan, Run};
use testudo_updater::keys::DevKeys;
use testudo_updater::{BundleFormat, BundleSpec};

use crate::binaries;
use crate::cache::{Cache, CacheKey, Reuse};
use crate::cwasm;
use crate::datafs;
use crate::digest::{bytes_digest, bytes_sha256, FileDigest};
use crate::digest_cache::{DigestCache, StatKey};
use crate::disk::{self, DiskLayout, DiskMap, DATA_LABEL, ESP_LABEL, ROOTFS_A_LABEL};
use crate::error::{ImageError, Result};
use crate::esp::{self, EspContent, BOOT_EFI_PATH, GRUBENV_PATH, GRUB_CFG_PATH};
use crate::initramfs;
use crate::kernel::{self, Kernel, KernelModule};
use crate::keys;
use crate::manifest::{Entry, ImageManifest, SystemInfo, MANIFEST_FORMAT};
use crate::progress::{Progress, ProgressMode};
use crate::reproducible::SourceDateEpoch;
use crate::rootfs::{self, RootfsTree, APPS_ROOT, BIN_DIR, INITRAMFS_PATH, KERNEL_PATH, PLAN_PATH};
use crate::system_conf;
use crate::tool::{ToolCall, ToolRunner};

/// Output file names in the output directory.
pub const ROOTFS_IMG: &str = "rootfs.img";
/// The disk image.
pub const DISK_IMG: &str = "disk.img";
/// The update bundle.
pub const BUNDLE: &str = "update.raucb";
/// The signed manifest.
pub const MANIFEST: &str = "manifest.json";
/// The init every image starts (named by the device contract).
pub const INIT_BINARY: &str = testudo_plan::layout::rootfs::INIT_BINARY;
/// The WASM host binary, included when the plan has WASM components or app slots.
pub const WASM_HOST_BINARY: &str = testudo_plan::layout::rootfs::WASM_HOST_BINARY;

/// Build-host files the builder reads besides the plan's own inputs. The defaults are where
/// Debian puts them; Nix passes its packages' paths (`testudo build --kernel ...`).
#[derive(Debug, Clone)]
pub struct HostPaths {
    /// The kernel image, instead of the board's `kernel` setting.
    pub kernel: Option<PathBuf>,
    /// Kernel modules: a root of release directories (`/lib/modules`) or one release's
    /// directory (see [`Kernel::at`]).
    pub kernel_modules: PathBuf,
    /// A static busybox for the initramfs (`/usr/bin/busybox`, Debian `busybox-static`).
    pub busybox: PathBuf,
    /// GRUB's x86_64 EFI modules (`/usr/lib/grub/x86_64-efi`, Debian `grub-efi-amd64-bin`).
    pub grub_modules: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            kernel: None,
            kernel_modules: PathBuf::from("/lib/modules"),
            busybox: PathBuf::from("/usr/bin/busybox"),
            grub_modules: PathBuf::from(esp::GRUB_EFI_MODULE_DIR),
        }
    }
}

/// Everything a build needs.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The plan to build.
    pub plan: Plan,
    /// The repository root: WASM module paths in the plan are relative to it, relative board
    /// kernel paths to its `images/boards/`.
    pub source_root: PathBuf,
    /// Where the four outputs go (created if missing).
    pub out_dir: PathBuf,
    /// The key directory (see `keys`).
    pub keys: DevKeys,
    /// Directories searched, in order, for native binaries.
    pub bin_dirs: Vec<PathBuf>,
    /// The build cache directory.
    pub cache_dir: PathBuf,
    /// `SOURCE_DATE_EPOCH` if set; otherwise git `HEAD` time of `source_root`, else the
    /// modification time of `config_file`, else 0.
    pub source_date_epoch: Option<String>,
    /// The config file the plan was made from, if any.
    pub config_file: Option<PathBuf>,
    /// How to show progress.
    pub progress: ProgressMode,
    /// Build-host inputs.
    pub host: HostPaths,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Step name.
    pub name: String,
    /// Whether it came from the cache (None: not a cached step).
    pub reuse: Option<Reuse>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The build clock used.
    pub epoch: SourceDateEpoch,
    /// Steps in table order (each with its own time; the two lanes' steps overlap).
    pub steps: Vec<StepReport>,
    /// The output files with their digests.
    pub outputs: Vec<Entry>,
    /// The whole build's wall time, in seconds (shown, never written into an output).
    pub seconds: f64,
}

/// `/usr/bin/ldd` in the image: what glibc's ldd prints for one binary, without bash.
pub const LDD_SCRIPT: &str = "#!/usr/bin/busybox sh\n\
# testudo image: list a binary's shared libraries (glibc's ldd needs bash).\n\
[ \"$#\" -eq 1 ] || { echo \"usage: ldd BINARY\" >&2; exit 2; }\n\
exec /lib64/ld-linux-x86-64.so.2 --list \"$1\"\n";

/// One file of the rootfs, before staging.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Staged {
    source: Source,
    mode: u32,
    digest: FileDigest,
}

#[derive(Debug, Default)]
struct RootfsSpec {
    files: BTreeMap<String, Staged>,
}

impl RootfsSpec {
    fn add_file(
        &mut self,
        digests: &DigestCache,
        image_path: &str,
        path: &Path,
        mode: u32,
    ) -> Result<FileDigest> {
        let digest = digests.file(path)?;
        self.add_file_with_digest(image_path, path, mode, digest.clone());
        Ok(digest)
    }

    fn add_file_with_digest(
        &mut self,
        image_path: &str,
        path: &Path,
        mode: u32,
        digest: FileDigest,
    ) {
        self.files.insert(
            image_path.trim_start_matches('/').to_owned(),
            Staged {
                source: Source::File(path.to_path_buf()),
                mode,
                digest,
            },
        );
    }

    fn add_bytes(&mut self, image_path: &str, bytes: Vec<u8>, mode: u32) {
        let digest = bytes_digest(&bytes);
        self.files.insert(
            image_path.trim_start_matches('/').to_owned(),
            Staged {
                source: Source::Bytes(bytes),
                mode,
                digest,
            },
        );
    }

    /// Key parts of the system layer: its fixed skeleton and its files.
    fn system_key_parts(&self) -> Vec<String> {
        let mut parts: Vec<String> = rootfs::MOUNT_POINTS
            .iter()
            .chain(rootfs::SKELETON_DIRS)
            .map(|m| format!("dir {m}"))
            .collect();
        parts.extend(self.key_parts());
        parts
    }

    fn key_parts(&self) -> Vec<String> {
        let mut parts = Vec::new();
        for (path, staged) in &self.files {
            parts.push(format!(
                "{path} {:o} {} {}",
                staged.mode, staged.digest.sha256, staged.digest.size
            ));
        }
        parts
    }

    /// Stages the system layer (skeleton and files) at `root`.
    fn stage_system(&self, root: &Path) -> Result<RootfsTree> {
        self.fill(RootfsTree::create(root)?)
    }

    /// Stages a layer to append (the files only) at `root`.
    fn stage_layer(&self, root: &Path) -> Result<RootfsTree> {
        self.fill(RootfsTree::create_layer(root)?)
    }

    fn top_level_names(&self) -> std::collections::BTreeSet<String> {
        rootfs::top_level_names(self.files.keys().map(String::as_str))
    }

    fn fill(&self, tree: RootfsTree) -> Result<RootfsTree> {
        for (path, staged) in &self.files {
            match &staged.source {
                Source::File(file) => tree.add_file(path, file, staged.mode)?,
                Source::Bytes(bytes) => tree.add_bytes(path, bytes, staged.mode)?,
            }
        }
        Ok(tree)
    }
}

fn tool_version(tools: &dyn ToolRunner, program: &str, flag: &str) -> String {
    tools
        .run(&ToolCall::new(program, "reading the tool version").arg(flag))
        .map(|out| {
            String::from_utf8_lossy(&out)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default()
}

/// What the host's dynamic loader resolves libraries with (`/etc/ld.so.cache`), as a cache
/// key part: `ldconfig` rewriting it invalidates the cached `ldd` results.
fn loader_cache_state() -> String {
    match StatKey::of(Path::new("/etc/ld.so.cache")) {
        Ok(key) => format!(
            "ld.so.cache {} {} {} {}",
            key.dev, key.ino, key.size, key.mtime_ns
        ),
        Err(_) => "no ld.so.cache".to_owned(),
    }
}

/// Puts the cache object `from` at the output path `to`: a hard link when both are on one
/// filesystem (no bytes copied), else a copy. The cache notices an object written to
/// through such a link and rebuilds it (see `cache`), so a changed output is never reused.
fn link_out(from: &Path, to: &Path) -> Result<()> {
    if to.symlink_metadata().is_ok() {
        fs::remove_file(to).map_err(ImageError::write(to))?;
    }
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).map_err(ImageError::write(to))?;
    }
    Ok(())
}

/// The cache memo of a bundle's payload digest.
const PAYLOAD_DIGEST: &str = "payload-sha256";

/// The native binaries the plan needs, by name, with who needs them.
pub fn needed_binaries(plan: &Plan) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    names.insert(INIT_BINARY.to_owned(), "every image".to_owned());
    for (component, spec) in &plan.components {
        match &spec.run {
            Run::Binary { name } => {
                names
                    .entry(name.clone())
                    .or_insert_with(|| format!("component `{component}`"));
            }
            Run::Wasm { .. } => {
                names
                    .entry(WASM_HOST_BINARY.to_owned())
                    .or_insert_with(|| format!("WASM component `{component}`"));
            }
        }
    }
    if !plan.app_slots.is_empty() {
        names
            .entry(WASM_HOST_BINARY.to_owned())
            .or_insert_with(|| "the plan's app slots".to_owned());
    }
    names
}

/// A step of a build. [`STEPS`] lists them in the order they run; a failing step's error
/// names it ([`ImageError::Step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuildStep {
    /// Fixing the build clock, opening the cache, creating the output and scratch directories.
    Prepare,
    /// Staging the plan, byte for byte as the device reads it.
    Plan,
    /// Locating the kernel and staging it with the modules the plan needs.
    KernelAndModules,
    /// Building the initramfs (busybox and the early modules).
    Initramfs,
    /// Stripping the native binaries and staging them with their shared libraries.
    Binaries,
    /// Staging the WASM apps with their precompiled `.cwasm` files.
    WasmApps,
    /// Staging busybox, `ldd`, the updater configuration, public keys and `os-release`.
    SystemFiles,
    /// Packing the rootfs's system layer.
    RootfsSystemLayer,
    /// Appending the app layer to the system layer: `rootfs.img`.
    Rootfs,
    /// Building GRUB and the EFI system partition.
    Esp,
    /// Formatting the data partition.
    DataPartition,
    /// Assembling `disk.img`.
    DiskImage,
    /// Creating and signing `update.raucb`.
    UpdateBundle,
    /// Writing the signed `manifest.json`.
    Manifest,
}

impl BuildStep {
    /// The step's name in progress output, reports and errors.
    pub fn name(self) -> &'static str {
        match self {
            BuildStep::Prepare => "prepare",
            BuildStep::Plan => "plan",
            BuildStep::KernelAndModules => "kernel and modules",
            BuildStep::Initramfs => "initramfs",
            BuildStep::Binaries => "binaries",
            BuildStep::WasmApps => "wasm apps",
            BuildStep::SystemFiles => "system files",
            BuildStep::RootfsSystemLayer => "rootfs system layer",
            BuildStep::Rootfs => "rootfs",
            BuildStep::Esp => "esp",
            BuildStep::DataPartition => "data partition",
            BuildStep::DiskImage => "disk image",
            BuildStep::UpdateBundle => "update bundle",
            BuildStep::Manifest => "manifest",
        }
    }
}

impl std::fmt::Display for BuildStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A step's work: reads the context, adds its results to it, and says whether its output
/// came from the cache (`None`: not a cached step).
type StepFn = fn(&mut BuildContext<'_>) -> Result<Option<Reuse>>;

/// Which thread of the build runs a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The build's own thread, in table order: the step sees what every step before it made.
    InOrder,
    /// A second thread, started with the build: the step reads only the request (the plan,
    /// the host paths), the build clock, the tools and the caches, never what another step
    /// made, so it runs beside the in-order steps. What it makes joins the build before
    /// [`JOINS_BEFORE`].
    Beside,
}

/// The first in-order step that needs what the [`Lane::Beside`] steps make: the build waits
/// for them there.
pub const JOINS_BEFORE: BuildStep = BuildStep::DiskImage;

/// One entry of the step table.
pub struct StepDef {
    /// Which step.
    pub step: BuildStep,
    /// Whether it is shown in the progress output and listed in the [`BuildReport`] (the
    /// quick staging steps are not).
    pub shown: bool,
    /// Which thread runs it.
    pub lane: Lane,
    run: StepFn,
}

impl std::fmt::Debug for StepDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepDef")
            .field("step", &self.step)
            .field("shown", &self.shown)
            .field("lane", &self.lane)
            .finish()
    }
}

/// The steps of a build, in the order of its report (after [`BuildStep::Prepare`], which
/// makes the context). The in-order steps run in this order; the [`Lane::Beside`] ones in
/// this order among themselves, beside them.
pub const STEPS: &[StepDef] = &[
    StepDef {
        step: BuildStep::Plan,
        shown: false,
        lane: Lane::InOrder,
        run: stage_plan,
    },
    StepDef {
        step: BuildStep::KernelAndModules,
        shown: true,
        lane: Lane::InOrder,
        run: stage_kernel_and_modules,
    },
    StepDef {
        step: BuildStep::Initramfs,
        shown: true,
        lane: Lane::InOrder,
        run: build_initramfs,
    },
    StepDef {
        step: BuildStep::Binaries,
        shown: true,
        lane: Lane::InOrder,
        run: stage_binaries,
    },
    StepDef {
        step: BuildStep::WasmApps,
        shown: true,
        lane: Lane::InOrder,
        run: stage_wasm_apps,
    },
    StepDef {
        step: BuildStep::SystemFiles,
        shown: false,
        lane: Lane::InOrder,
        run: stage_system_files,
    },
    StepDef {
        step: BuildStep::RootfsSystemLayer,
        shown: true,
        lane: Lane::InOrder,
        run: pack_rootfs_system_layer,
    },
    StepDef {
        step: BuildStep::Rootfs,
        shown: true,
        lane: Lane::InOrder,
        run: append_rootfs_app_layer,
    },
    StepDef {
        step: BuildStep::Esp,
        shown: true,
        lane: Lane::Beside,
        run: build_esp,
    },
    StepDef {
        step: BuildStep::DataPartition,
        shown: true,
        lane: Lane::Beside,
        run: build_data_partition,
    },
    StepDef {
        step: BuildStep::DiskImage,
        shown: true,
        lane: Lane::InOrder,
        run: assemble_disk_image,
    },
    StepDef {
        step: BuildStep::UpdateBundle,
        shown: true,
        lane: Lane::InOrder,
        run: create_update_bundle,
    },
    StepDef {
        step: BuildStep::Manifest,
        shown: true,
        lane: Lane::InOrder,
        run: write_signed_manifest,
    },
];

/// What the steps made so far, for the steps after them.
#[derive(Debug, Default)]
struct Made {
    /// The kernel (kernel and modules).
    kernel: Option<Kernel>,
    /// The modules the initramfs loads (kernel and modules).
    initramfs_modules: Vec<KernelModule>,
    /// The WASM host binary and its digest, if the image has one (binaries).
    wasm_host: Option<(PathBuf, FileDigest)>,
    /// `mksquashfs -version`, part of both rootfs cache keys (rootfs system layer).
    mksquashfs_version: String,
    /// The system layer's cache object and key (rootfs system layer).
    system_layer: Option<(PathBuf, CacheKey)>,
    /// `rootfs.img`'s cache object and digest (rootfs).
    rootfs: Option<(PathBuf, FileDigest)>,
    /// The EFI system partition (esp).
    esp: Option<EspMade>,
    /// The data partition's cache object and digest (data partition).
    data: Option<(PathBuf, FileDigest)>,
    /// `disk.img`'s map of data ranges (disk image).
    disk_map: Option<DiskMap>,
    /// The digest of the bundle's payload (update bundle).
    bundle_payload: Option<FileDigest>,
    /// The output files with their digests (manifest).
    outputs: Vec<Entry>,
}

/// What the ESP step made.
#[derive(Debug)]
struct EspMade {
    /// The partition's cache object.
    object: PathBuf,
    /// Its digest.
    digest: FileDigest,
    /// The digest of the GRUB EFI binary on it.
    grub_efi: FileDigest,
    /// Its `grub.cfg`.
    grub_cfg: String,
    /// Its initial `grubenv`.
    grubenv: Vec<u8>,
}

/// What every step of one build reads and none changes: the request, the tools, the build
/// clock, the caches and the scratch directory. The steps of both lanes share it.
struct BuildEnvironment<'a> {
    request: &'a BuildRequest,
    tools: &'a dyn ToolRunner,
    epoch: SourceDateEpoch,
    cache: Cache,
    digests: DigestCache,
    /// Scratch space for staging, removed when the build ends.
    scratch: tempfile::TempDir,
}

impl<'a> BuildEnvironment<'a> {
    /// The [`BuildStep::Prepare`] step: the build clock, cache and directories.
    fn prepare(request: &'a BuildRequest, tools: &'a dyn ToolRunner) -> Result<Self> {
        let epoch = SourceDateEpoch::determine(
            request.source_date_epoch.as_deref(),
            &request.source_root,
            request.config_file.as_deref(),
            tools,
        )?;
        let cache = Cache::open(&request.cache_dir)?;
        let digests = DigestCache::open(&request.cache_dir.join("digests"))?;
        fs::create_dir_all(&request.out_dir).map_err(ImageError::write(&request.out_dir))?;
        let scratch = tempfile_in(&request.cache_dir.join("tmp"))?;
        Ok(BuildEnvironment {
            request,
            tools,
            epoch,
            cache,
            digests,
            scratch,
        })
    }
}

/// One lane of a build in progress: what it reads, where it works, and what its steps made
/// so far.
struct BuildContext<'a> {
    request: &'a BuildRequest,
    plan: &'a Plan,
    tools: &'a dyn ToolRunner,
    epoch: SourceDateEpoch,
    cache: &'a Cache,
    digests: &'a DigestCache,
    /// The scratch directory (each step works in its own subdirectory of it).
    work: &'a Path,
    /// The build's inputs with their digests, for the manifest.
    inputs: Vec<Entry>,
    /// The rootfs's system layer (see `rootfs`).
    system: RootfsSpec,
    /// The rootfs's app layer, appended to the system layer.
    apps: RootfsSpec,
    made: Made,
}

impl<'a> BuildContext<'a> {
    /// A lane's context, nothing made yet.
    fn new(environment: &'a BuildEnvironment<'a>) -> Self {
        BuildContext {
            request: environment.request,
            plan: &environment.request.plan,
            tools: environment.tools,
            epoch: environment.epoch,
            cache: &environment.cache,
            digests: &environment.digests,
            work: environment.scratch.path(),
            inputs: Vec::new(),
            system: RootfsSpec::default(),
            apps: RootfsSpec::default(),
            made: Made::default(),
        }
    }

    /// The scratch directory.
    fn work(&self) -> &Path {
        self.work
    }

    /// The build clock as a cache key part.
    fn epoch_text(&self) -> String {
        self.epoch.seconds.to_string()
    }

    /// What disk and partition identities derive from: the plan's `compatible`.
    fn seed(&self) -> &str {
        &self.plan.compatible
    }

    /// Takes what the [`Lane::Beside`] steps made (today the ESP and the data partition),
    /// with any inputs they recorded after the in-order steps' so far. Every field of [`Made`]
    /// is named here, so a field added later is carried over too, or refused on purpose.
    fn join_beside(&mut self, beside: BuildContext<'_>) {
        let Made {
            kernel,
            initramfs_modules,
            wasm_host,
            mksquashfs_version,
            system_layer,
            rootfs,
            esp,
            data,
            disk_map,
            bundle_payload,
            outputs,
        } = beside.made;
        let made = &mut self.made;
        made.kernel = made.kernel.take().or(kernel);
        made.initramfs_modules.extend(initramfs_modules);
        made.wasm_host = made.wasm_host.take().or(wasm_host);
        if made.mksquashfs_version.is_empty() {
            made.mksquashfs_version = mksquashfs_version;
        }
        made.system_layer = made.system_layer.take().or(system_layer);
        made.rootfs = made.rootfs.take().or(rootfs);
        made.esp = made.esp.take().or(esp);
        made.data = made.data.take().or(data);
        made.disk_map = made.disk_map.take().or(disk_map);
        made.bundle_payload = made.bundle_payload.take().or(bundle_payload);
        made.outputs.extend(outputs);
        self.inputs.extend(beside.inputs);
    }
}

/// A result an earlier step should have made; its absence means the step table is out of
/// order.
fn made<'v, T>(value: &'v Option<T>, what: &'static str) -> Result<&'v T> {
    value.as_ref().ok_or(ImageError::StepOrder { what })
}

/// A shown step's report, with its place in [`STEPS`] (the report lists them in table order
/// whichever lane finished first).
type PlacedReport = (usize, StepReport);

/// The progress of a build, shared by its two lanes.
type SharedProgress = std::sync::Mutex<Progress>;

/// Builds the image described by `request`: [`BuildStep::Prepare`], then each of [`STEPS`]:
/// the [`Lane::InOrder`] steps on this thread, the [`Lane::Beside`] ones on a second thread
/// joined before [`JOINS_BEFORE`]. When both lanes fail, the in-order lane's error is
/// returned.
pub fn build(request: &BuildRequest, tools: &dyn ToolRunner) -> Result<BuildReport> {
    let started = Instant::now();
    let environment =
        BuildEnvironment::prepare(request, tools).map_err(in_step(BuildStep::Prepare))?;
    let shown = STEPS.iter().filter(|def| def.shown).count() as u64;
    let progress = SharedProgress::new(Progress::new(shown, request.progress));
    let (mut reports, outputs) = std::thread::scope(|scope| -> Result<_> {
        let beside =
            scope.spawn(|| run_lane(BuildContext::new(&environment), Lane::Beside, &progress));
        let mut beside = Some(beside);
        let mut ctx = BuildContext::new(&environment);
        let mut reports = Vec::new();
        for (place, def) in STEPS.iter().enumerate() {
            if def.lane != Lane::InOrder {
                continue;
            }
            if def.step == JOINS_BEFORE {
                if let Some(beside) = beside.take() {
                    let (beside_ctx, beside_reports) = match beside.join() {
                        Ok(lane) => lane?,
                        Err(panic) => std::panic::resume_unwind(panic),
                    };
                    ctx.join_beside(beside_ctx);
                    reports.extend(beside_reports);
                }
            }
            reports.extend(run_step(place, def, &mut ctx, &progress)?);
        }
        Ok((reports, std::mem::take(&mut ctx.made.outputs)))
    })?;
    lock(&progress).close();
    reports.sort_by_key(|(place, _)| *place);
    Ok(BuildReport {
        epoch: environment.epoch,
        steps: reports.into_iter().map(|(_, report)| report).collect(),
        outputs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs the steps of `lane` in table order on `ctx`; returns the context with what they
/// made, and their reports.
fn run_lane<'a>(
    mut ctx: BuildContext<'a>,
    lane: Lane,
    progress: &SharedProgress,
) -> Result<(BuildContext<'a>, Vec<PlacedReport>)> {
    let mut reports = Vec::new();
    for (place, def) in STEPS.iter().enumerate() {
        if def.lane == lane {
            reports.extend(run_step(place, def, &mut ctx, progress)?);
        }
    }
    Ok((ctx, reports))
}

/// Runs one step (the `place`-th of [`STEPS`]), showing its progress; its report when shown.
fn run_step(
    place: usize,
    def: &StepDef,
    ctx: &mut BuildContext<'_>,
    progress: &SharedProgress,
) -> Result<Option<PlacedReport>> {
    let name = def.step.name();
    if def.shown {
        lock(progress).start(name);
    }
    let started = Instant::now();
    let reuse = (def.run)(ctx).map_err(in_step(def.step))?;
    if !def.shown {
        return Ok(None);
    }
    let elapsed = started.elapsed();
    lock(progress).finish(name, reuse, elapsed);
    let report = StepReport {
        name: name.to_owned(),
        reuse,
        seconds: elapsed.as_secs_f64(),
    };
    Ok(Some((place, report)))
}

/// The shared progress, even when a lane panicked while holding it (it only counts and
/// prints).
fn lock(progress: &SharedProgress) -> std::sync::MutexGuard<'_, Progress> {
    progress
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wraps a step's error so that it names the step.
fn in_step(step: BuildStep) -> impl FnOnce(ImageError) -> ImageError {
    move |source| ImageError::Step {
        step,
        source: Box::new(source),
    }
}

/// Whether a step that ran several cached parts built any of them.
fn reuse_of(any_built: bool) -> Option<Reuse> {
    Some(if any_built { Reuse::Built } else { Reuse::Hit })
}

/// [`BuildStep::Plan`].
fn stage_plan(ctx: &mut BuildContext<'_>) -> Result<Option<Reuse>> {
    let plan_bytes = ctx
        .plan
        .to_canonical_json()
        .map_err(|source| ImageError::Serialize {
            what: "plan".into(),
            source,
        })?
        .into_bytes();
    ctx.inputs.push(entry("plan", &bytes_digest(&plan_bytes)));
    ctx.system.add_bytes(PLAN_PATH, plan_bytes, 0o644);
    Ok(None)
}

/// [`BuildStep::KernelAndModules`].
fn stage_kernel_and_modules(ctx: &mut BuildContext<'_>) -> Result<Option<Reuse>> {
    let host = &ctx.request.host;
    let kernel = match &host.kernel {
        Some(image) => Kernel::at(image, &host.kernel_modules)?,
        None => Kernel::locate(
            &ctx.plan.board.kernel,
            &ctx.request.source_root.join("images/boards"),
            &host.kernel_modules,
        )?,
    };
    let digest = ctx
        .system
        .add_file(ctx.digests, KERNEL_PATH, &kernel.image, 0o644)?;
    ctx.inputs.push(entry(
        &format!("kernel:vmlinuz-{}", kernel.version),
        &digest,
    ));
    let initramfs_modules = kernel.resolve(&kernel::initramfs_modules(ctx.plan))?;
    // What the initramfs already loaded (a dependency both lists share, such as virtio's
    // PCI transport) is not loaded a second time from the rootfs.
    let needed: Vec<_> = kernel
        .resolve(&kernel::plan_modules(ctx.plan))?
        .into_iter()
        .filter(|module| !initramfs_modules.iter().any(|m| m.name == module.name))
        .collect();
    let mut load_order = String::new();
    for module in &needed {
        let path = kernel.modules_dir.join(&module.relative);
        let image_path = format!("lib/modules/{}/{}", kernel.version, module.relative);
        let digest = ctx
            .system
            .add_file(ctx.digests, &image_path, &path, 0o644)?;
        ctx.inputs
            .push(entry(&format!("kernel-module:{}", module.name), &digest));
        load_order.push_str(&module.relative);
        load_order.push('\n');
    }
    ctx.system.add_bytes(
        &format!("lib/modules/{}/testudo.load", kernel.version),
        load_order.into_bytes(),
        0o644,
    );
    ctx.made.initramfs_modules = initramfs_modules;
    ctx.made.kernel = Some(kernel);
    Ok(None)
}

/// [`BuildStep::Initramfs`].
fn build_initramfs(ctx: &mut BuildContext<'_>) -> Result<Option<Reuse>> {
    let kernel = made(&ctx.made.kernel, "the kernel")?;
    let busybox = &ctx.request.host.busybox;
    let busybox_digest = ctx.digests.file(busybox)?;
    ctx.inputs.push(entry("busybox", &busybox_digest));
    let mut module_files = Vec::new();
    let mut parts = vec![busybox_digest.sha256.clone(), initramfs::init_script(&[])];
    for module in &ctx.made.initramfs_modules {
        let path = kernel.modules_dir.join(&module.relative);
        let bytes = fs::read(&path).map_err(ImageError::read(&path))?;
        parts.push(format!("{} {}", module.name, bytes_sha256(&bytes)));
        module_files.push((module.name.clone(), bytes));
    }
    let key = CacheKey::new("initramfs", &parts);
    let (object, reuse) = ctx.cache.get_or_build(&key, |out| {
        let busybox = fs::read(busybox).map_err(ImageError::read(busybox))?;
        let archive = initramfs::build(&busybox, &module_files);
        fs::write(out, archive).map_err(ImageError::write(out))
    })?;
    let digest = ctx.cache.object_sha256(&key)?;
    ctx.system
        .add_file_with_digest(INITRAMFS_PATH, &object, 0o644, digest);
    Ok(Some(reuse))
}

/// [`BuildStep::Binaries`]: each native binary the plan needs, stripped, and the shared
/// libraries they load. Finding and digesting, then stripping, run on every core (on an
/// empty cache this is the build's longest step); binaries with the same content are stripped
/// once (one cache object), and the image does not depend on the order the work finishes in.
fn stage_binaries(ctx: &mut BuildContext<'_>) -> Result<Option<Reuse>> {
    let wanted: Vec<(String, String)> = needed_binaries(ctx.plan).into_iter().collect();
    let loader_cache = loader_cache_state();
    let shared: &BuildContext<'_> = ctx;
    let found = map_concurrently(&wanted, |(name, needed_by)| {
        let path = binaries::find_binary(name, &shared.request.bin_dirs, needed_by)?;
        let digest = shared.digests.file(&path)?;
        Ok((path, digest))
    })?;
    let distinct: Vec<(PathBuf, FileDigest)> = found
        .iter()
        .map(|(path, digest)| (digest.sha256.as_str(), (path.clone(), digest.clone())))
        .collect::<BTreeMap<_, _>>()
        .into_values()
        .collect();
    let stripped = map_concurrently(&distinct, |(path, digest)| {
        strip_binary(shared, path, digest, &loader_cache)
    })?;
    let stripped: BTreeMap<&str, StrippedBinary> = distinct
        .iter()
        .map(|(_, digest)| digest.sha256.as_str())
        .zip(stripped)
        .collect();
    let mut any_built = false;
    let mut libraries = std::collections::BTreeSet::new();
    for ((name, _), (path, digest)) in wanted.iter().zip(&found) {
        let binary = stripped
            .get(digest.sha256.as_str())
            .ok_or(ImageError::StepOrder {
                what: "a stripped binary",
            })?;
        ctx.inputs.push(entry(&format!("binary:{name}"), digest));
        ctx.system.add_file_with_digest(
            &format!("{BIN_DIR}/{name}"),
            &binary.stripped,
            0o755,
            binary.stripped_digest.clone(),
        );
        any_built |= binary.reuse == Reuse::Built;
        libraries.extend(binary.libraries.iter().cloned());
        if name == WASM_HOST_BINARY {
            ctx.made.wasm_host = Some((path.clone(), digest.clone()));
        }
    }
    for library in libraries {
        let digest =
            ctx.system
                .add_file(ctx.digests, &library.to_string_lossy(), &library, 0o755)?;
        ctx.inputs
            .push(entry(&format!("library:{}", library.display()), &digest));
    }
    Ok(reuse_of(any_built))
}

/// A native binary's stripped copy in the cache and the shared libraries it loads.
struct StrippedBinary {
    stripped: PathBuf,
    stripped_digest: FileDigest,
    reuse: Reuse,
    libraries: Vec<PathBuf>,
}

/// Strips the binary at `path` (with `digest`) into the cache and lists its libraries.
fn strip_binary(
    ctx: &BuildContext<'_>,
    path: &Path,
    digest: &FileDigest,
    loader_cache: &str,
) -> Result<StrippedBinary> {
    let tools = ctx.tools;
    let key = CacheKey::new("strip", [digest.sha256.as_str()]);
    let (stripped, reuse) = ctx
        .cache
        .get_or_build(&key, |out| binaries::strip(tools, path, out))?;
    let stripped_digest = ctx.cache.object_sha256(&key)?;
    let libraries = shared_libraries(ctx, path, digest, loader_cache)?;
    Ok(StrippedBinary {
        stripped,
        stripped_digest,
        reuse,
        libraries,
    })
}

/// `work` applied to every item, on as many threads as there are cores (at most one per
/// item); the results in the items' order, or the first item's error in that order.
fn map_concurrently<T: Sync, R: Send>(
    items: &[T],
    work: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(items.len())
        .max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, Result<R>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(index) else {
                            return done;
                        };
                        done.push((index, work(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(done) => done,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

/// The shared libraries the binary at `path` (with `digest`) loads. The result depends on
/// the binary and on the host's loader cache (`loader_cache`).
fn shared_libraries(
    ctx: &BuildContext<'_>,
    path: &Path,
    digest: &FileDigest,
    loader_cache: &str,
) -> Result<Vec<PathBuf>> {
    let key = CacheKey::new("ldd", [digest.sha256.as_str(), loader_cache]);
    let (list, _) = ctx.cache.get_or_build(&key, |out| {
        let libs = binaries::shared_libraries(ctx.tools, path)?;
        let text: String = libs.iter().map(|l| format!("{}\n", l.display())).collect();
        fs::write(out, text).map_err(ImageError::write(out))
    })?;
    let text = fs::read_to_string(&list).map_err(ImageError::read(&list))?;
    Ok(text.lines().map(PathBuf::from).collect())
}

/// [`BuildStep::WasmApps`]: each WASM app in the app layer, with its `.cwasm` precompiled by
/// the image's own WASM host.
fn stage_wasm_apps(ctx: &mut BuildContext<'_>) -> Result<Option<Reuse>> {
    let mut any_built = false;
    let cpu_features = ctx.plan.board.cpu_features.join(",");
    for (owner, module) in wasm_modules(ctx.plan) {
        let path = ctx.request.source_root.join(&module);
        check_wasm(&owner, &module, &path)?;
        let image_path = format!("{APPS_ROOT}/{module}");
        let digest = ctx.apps.add_file(ctx.digests, &image_path, &path, 0o644)?;
        ctx.inputs.push(entry(&format!("app:{module}"), &digest));
        let Some((host, host_digest)) = &ctx.made.wasm_host else {
            continue;
        };
        let key = CacheKey::new(
            "cwasm",
            [
                digest.sha256.as_str(),
                &host_digest.sha256,
                &format!("cpu-features {cpu_features}"),
            ],
        );
        let tools = ctx.tools;
        let (compiled, reuse) = ctx.cache.get_or_build(&key, |out| {
            cwasm::precompile(tools, host, &module, &path, &cpu_features, out)
        })?;
        any_built |= reuse == Reuse::Built;
        let compiled_digest = ctx.cache.object_sha256(&key)?;
        ctx.apps.add_file_with_digest(
            &cwasm::sidecar_path(&image_path),
            &compiled,
            0o644,
            compiled_digest,
        );
    }
    Ok(reuse_of(any_built))
}

/// [`BuildStep::SystemFiles`].
fn stage_system_files(ctx: &mut BuildContext<'_>) -> Result<Option<Reuse>> {
    // `ldd` for testudo-init's sandbox library discovery (glibc's own `ldd` is a bash script):
    // the dynamic loader's `--list`, run by the image's static busybox.
    ctx.system.add_file(
        ctx.digests,
        "usr/bin/busybox",
        &ctx.request.host.busybox,
        0o755,
    )?;
    ctx.system
        .add_bytes("usr/bin/ldd", LDD_SCRIPT.as_bytes().to_vec(), 0o755);
    // Updater configuration and public keys.
    ctx.system.add_bytes(
        rootfs::SYSTEM_CONF_PATH,
        system_conf::render(ctx.plan).into_bytes(),
        0o644,
    );
    let keys = &ctx.request.keys;
    let ca = ctx
        .system
        .add_file(ctx.digests, system_conf::KEYRING_PATH, &keys.ca_cert, 0o644)?;
    ctx.inputs.push(entry("key:ca.pem", &ca));
    let deploy_pub = ctx.system.add_file(
        ctx.digests,
        &format!("{}/deploy.ed25519.pub", rootfs::KEYS_DIR),
        &keys.deploy_pub,
        0o644,
    )?;
    ctx.inputs
        .push(entry("key:deploy.ed25519.pub", &deploy_pub));
    let roots = ctx.system.add_file(
        ctx.digests,
        rootfs::UPDATE_ROOT_KEYS_PATH,
        &keys::update_root_keys_of(keys),
        0o644,
    )?;
    ctx.inputs.push(entry("key:update-roots.jwks", &roots));
    // The CAs the cloud agent trusts for the hub and DPS, named by the config.
    if let Some(anchors) = &ctx.plan.cloud.trust_anchors {
        let path = ctx.request.source_root.join(anchors);
        let text = fs::read_to_string(&path).map_err(ImageError::read(&path))?;
        if !text.contains("-----BEGIN CERTIFICATE-----") {
            return Err(ImageError::TrustAnchors { path });
        }
        let digest = ctx
            .system
            .add_file(ctx.digests, rootfs::TRUST_ANCHORS_PATH, &path, 0o644)?;
        ctx.inputs.push(entry("trust-anchors.pem", &digest));
    }
    ctx.system
        .add_bytes("etc/os-release", os_release(ctx.plan).into_bytes(), 0o644);
    Ok(None)
}

/// [`BuildStep::RootfsSystemLayer`]: everything that does not depend on the apps. A full and
/// an incremental build both go through it, so their outputs are identical.
fn pack_rootfs_system_layer(ctx: &mut BuildContext<'_>) -> Result<Option<Reuse>> {
    let tools = ctx.tools;
    let epoch = ctx.epoch;
    ctx.made.mksquashfs_version = tool_version(tools, "mksquashfs", "-version");
    let mut parts = ctx.system.system_key_parts();
    parts.push(format!("epoch {}", ctx.epoch_text()));
    parts.push(ctx.made.mksquashfs_version.clone());
    parts.push(rootfs::packing_key_part());
    let key = CacheKey::new("rootfs-system", &parts);
    let root = ctx.work().join("rootfs");
    let (object, reuse) = ctx.cache.get_or_build(&key, |out| {
        let tree = ctx.system.stage_system(&root)?;
        tree.pack(tools, epoch, out)?;
        fs::remove_dir_all(tree.root()).map_err(ImageError::write(tree.root()))
    })?;
    ctx.made.system_layer = Some((object, key));
    Ok(Some(reuse))
}

/// [`BuildStep::Rootfs`]: a copy of the system layer with the app layer appended (only the
/// apps are written), linked out as `rootfs.img`.
fn append_rootfs_app_layer(ctx: &mut BuildContext<'_>) -> Result<Option<Reuse>> {
    let (system_object, system_key) = made(&ctx.made.system_layer, "the rootfs system layer")?;
    rootfs::check_layer_names(
        &rootfs::system_top_level_names(ctx.system.files.keys().map(String::as_str)),
        &ctx.apps.top_level_names(),
    )?;
    let mut parts = vec![system_key.as_str().to_owned()];
    parts.extend(ctx.apps.key_parts());
    parts.push(format!("epoch {}", ctx.epoch_text()));
    parts.push(ctx.made.mksquashfs_version.clone());
    let key = CacheKey::new("rootfs", &parts);
    let root = ctx.work().join("app-layer");
    let (tools, epoch) = (ctx.tools, ctx.epoch);
    let (object, reuse) = ctx.cache.get_or_build(&key, |out| {
        fs::copy(system_object, out).map_err(ImageError::write(out))?;
        let tree = ctx.apps.stage_layer(&root)?;
        tree.append_to(tools, epoch, out)?;
        fs::remove_dir_all(tree.root()).map_err(ImageError::write(tree.root()))
    })?;
    let digest = ctx.cache.object_sha256(&key)?;
    link_out(&object, &ctx.request.out_dir.join(ROOTFS_IMG))?;
    ctx.made.rootfs = Some((object, digest));
    Ok(Some(reuse))
}

/// [`BuildStep::Esp`]: GRUB's EFI binary, its configuration and environment on a FAT volume.
fn build_esp(ctx: &mut BuildContext<'_>) -> Result<Option<Reuse>> {
    let tools = ctx.tools;
    let grub_cfg = esp::grub_cfg(&ctx.plan.board.console, ctx.plan.update.boot_tries);
    let grubenv = esp::initial_grubenv();
    let grub_key = CacheKey::new(
        "grub-efi",
        [
            esp::early_cfg(),
            esp::GRUB_MODULES.join(" "),
            tool_version(tools, "grub-mkimage", "--version"),
            ctx.request.host.grub_modules.display().to_string(),
        ],
    );
    let grub_dir = ctx.work().join("grub");
    let grub_modules = &ctx.request.host.grub_modules;
    let (grub_efi, _) = ctx.cache.get_or_build(&grub_key, |out| {
        esp::build_grub_efi(tools, grub_modules, &grub_dir, out)
    })?;
    let grub_digest = ctx.cache.object_sha256(&grub_key)?;
    let volume_id = bytes_sha256(ctx.seed().as_bytes())[..8].to_uppercase();
    let size = ctx.plan.board.partitions.esp_bytes;
    let key = CacheKey::new(
        "esp",
        [
            grub_digest.sha256.clone(),
            grub_cfg.clone(),
            bytes_sha256(&grubenv),
            size.to_string(),
            volume_id.clone(),
            ctx.epoch_text(),
            tool_version(tools, "mkfs.vfat", "--help"),
        ],
    );
    let (object, reuse) = ctx.cache.get_or_build(&key, |out| {
        let content = EspContent {
            grub_efi: &grub_efi,
            grub_cfg: &grub_cfg,
            grubenv: &grubenv,
            size,
            volume_id: &volume_id,
        };
        esp::build_esp(tools, &content, ctx.epoch, ctx.work(), out)
    })?;
    let digest = ctx.cache.object_sha256(&key)?;
    ctx.made.esp = Some(EspMade {
        object,
        digest,
        grub_efi: grub_digest,
        grub_cfg,
        grubenv,
    });
    Ok(Some(reuse))
}

/// [`BuildStep::DataPartition`]: an empty data filesystem of the board's size, aligned.
fn build_data_partition(ctx: &mut BuildContext<'_>) -> Result<Option<Reuse>> {
    let size = ctx.plan.board.partitions.data_bytes.max(disk::ALIGN);
    let size = size.div_ceil(disk::ALIGN) * disk::ALIGN;
    let seed = ctx.seed();
    let key = CacheKey::new(
        "data-fs",
        [seed.to_owned(), size.to_string(), ctx.epoch_text()],
    );
    let dir = ctx.work().join("data");
    let (object, reuse) = ctx.cache.get_or_build(&key, |out| {
        datafs::build_data_fs(ctx.tools, seed, size, ctx.epoch, &dir, out)
    })?;
    let digest = ctx.cache.object_sha256(&key)?;
    ctx.made.data = Some((object, digest));
    Ok(Some(reuse))
}

/// [`BuildStep::DiskImage`]: the partitions placed in `disk.img`.
fn assemble_disk_image(ctx: &mut BuildContext<'_>) -> Result<Option<Reuse>> {
    let (rootfs_object, rootfs_digest) = made(&ctx.made.rootfs, "the rootfs")?;
    let esp = made(&ctx.made.esp, "the ESP")?;
    let (data_object, data_digest) = made(&ctx.made.data, "the data partition")?;
    let layout = DiskLayout::for_board(ctx.seed(), &ctx.plan.board.partitions);
    let map = disk::assemble(
        &ctx.request.out_dir.join(DISK_IMG),
        &layout,
        &[
            (ESP_LABEL, &esp.object, &esp.digest),
            (ROOTFS_A_LABEL, rootfs_object, rootfs_digest),
            (DATA_LABEL, data_object, data_digest),
        ],
    )?;
    ctx.made.disk_map = Some(map);
    Ok(None)
}

/// [`BuildStep::UpdateBundle`]: `update.raucb` with the rootfs as its one image, and the
/// digest of its payload (reported by the writer when built, read back on a cache hit).
fn create_update_bundle(ctx: &mut BuildContext<'_>) -> Result<Option<Reuse>> {
    let (_, rootfs_digest) = made(&ctx.made.rootfs, "the rootfs")?;
    let plan = ctx.plan;
    let format = match plan.update.bundle_format.as_str() {
        "plain" => BundleFormat::Plain,
        _ => BundleFormat::Verity,
    };
    let cert = ctx.digests.file(&ctx.request.keys.signing_cert)?;
    let key_file = ctx.digests.file(&ctx.request.keys.signing_key)?;
    let key = CacheKey::new(
        "bundle",
        [
            rootfs_digest.sha256.clone(),
            cert.sha256,
            key_file.sha256,
            plan.compatible.clone(),
            plan.version.clone(),
            format.as_str().to_owned(),
            BUNDLE_COMPRESSION.join(" "),
            "adaptive block-hash-index".to_owned(),
        ],
    );
    let mut payload = None;
    let (object, reuse) = ctx.cache.get_or_build(&key, |out| {
        payload = Some(write_bundle(ctx, format, out)?);
        Ok(())
    })?;
    let payload = match payload {
        // Just built: the writer reported it; kept for the next build's hit.
        Some(payload) => {
            ctx.cache.store_digest(&key, PAYLOAD_DIGEST, &payload)?;
            payload
        }
        None => ctx
            .cache
            .object_digest(&key, PAYLOAD_DIGEST, bundle_payload_digest)?,
    };
    link_out(&object, &ctx.request.out_dir.join(BUNDLE))?;
    ctx.made.bundle_payload = Some(payload);
    Ok(Some(reuse))
}

/// Writes the bundle of the rootfs in `format` to `out` (compressed with
/// [`BUNDLE_COMPRESSION`], with the rootfs' block hash index; file modes pinned by the
/// updater) and returns its payload digest.
fn write_bundle(ctx: &BuildContext<'_>, format: BundleFormat, out: &Path) -> Result<FileDigest> {
    let (rootfs_object, rootfs_digest) = made(&ctx.made.rootfs, "the rootfs")?;
    let plan = ctx.plan;
    let dir = ctx.work().join("bundle");
    fs::create_dir_all(&dir).map_err(ImageError::write(&dir))?;
    let image = dir.join(ROOTFS_IMG);
    if fs::hard_link(rootfs_object, &image).is_err() {
        fs::copy(rootfs_object, &image).map_err(ImageError::write(&image))?;
    }
    let mut spec = BundleSpec::new(
        &plan.compatible,
        &plan.version,
        vec![("rootfs".to_owned(), image.clone())],
    );
    // The rootfs object's digest is already known: the bundle writer need not re-read it.
    if let Some(sha256) = rootfs_digest.sha256_bytes() {
        spec.known_digests
            .insert(image, (sha256, rootfs_digest.size));
    }
    spec.format = format;
    spec.description = Some(format!("{} {}", plan.name, plan.version));
    // The rootfs is stored uncompressed (small deltas); the download compresses it once
    // (docs/decisions/0094).
    spec.mksquashfs_args = BUNDLE_COMPRESSION.iter().map(|a| (*a).to_owned()).collect();
    // RAUC's block hash index, for a streaming-capable rauc's adaptive install.
    spec.adaptive = true;
    let made = dir.join(BUNDLE);
    let created = testudo_updater::bundle::create(&spec, &ctx.request.keys.signer(), &made)
        .map_err(|source| ImageError::Bundle {
            path: made.clone(),
            source: Box::new(source),
        })?;
    fs::rename(&made, out).map_err(ImageError::write(out))?;
    Ok(FileDigest {
        sha256: hex::encode(created.payload_sha256),
        size: created.payload_size,
    })
}

/// mksquashfs arguments of the update bundle's payload: zstd at level 3, which the device's
/// in-process reader, the kernel (for `rauc`) and squashfs-tools read. On the gateway's
/// uncompressed rootfs it packs 2% tighter than gzip at level 1 in 40% of its time, and
/// decompresses several times faster on the device.
pub const BUNDLE_COMPRESSION: &[&str] = &["-comp", "zstd", "-Xcompression-level", "3"];

/// [`BuildStep::Manifest`]: every input, output and rootfs file with its digest, signed
/// with the deploy key, as `manifest.json`.
fn write_signed_manifest(ctx: &mut BuildContext<'_>) -> Result<Option<Reuse>> {
    let mut outputs = output_entries(ctx)?;
    let plan = ctx.plan;
    let mut manifest = ImageManifest {
        format: MANIFEST_FORMAT,
        builder: format!("testudo-images {}", env!("CARGO_PKG_VERSION")),
        system: SystemInfo {
            name: plan.name.clone(),
            version: plan.version.clone(),
            compatible: plan.compatible.clone(),
            board: plan.board.name.clone(),
        },
        source_date_epoch: ctx.epoch.seconds,
        inputs: ctx.inputs.clone(),
        disk: made(&ctx.made.disk_map, "the disk map")?.clone(),
        outputs: outputs.clone(),
        rootfs: ctx
            .system
            .files
            .iter()
            .chain(&ctx.apps.files)
            .map(|(path, staged)| entry(&format!("/{path}"), &staged.digest))
            .collect(),
    };
    manifest.sort();
    let key = keys::load_deploy_key(&ctx.request.keys)?;
    let bytes = manifest.sign(&key)?;
    let path = ctx.request.out_dir.join(MANIFEST);
    fs::write(&path, &bytes).map_err(ImageError::write(&path))?;
    outputs.push(entry(MANIFEST, &bytes_digest(&bytes)));
    ctx.made.outputs = outputs;
    Ok(None)
}

/// The outputs the manifest lists (all but itself).
fn output_entries(ctx: &BuildContext<'_>) -> Result<Vec<Entry>> {
    let (_, rootfs_digest) = made(&ctx.made.rootfs, "the rootfs")?;
    let esp = made(&ctx.made.esp, "the ESP")?;
    let disk_map = made(&ctx.made.disk_map, "the disk map")?;
    let bundle_payload = made(&ctx.made.bundle_payload, "the bundle")?;
    Ok(vec![
        entry(ROOTFS_IMG, rootfs_digest),
        Entry {
            note: Some(
                "sha256 of the disk map (`disk`): each data range's hash; the rest is zeros".into(),
            ),
            ..entry(DISK_IMG, &disk_map.digest())
        },
        entry(&format!("esp:{BOOT_EFI_PATH}"), &esp.grub_efi),
        entry(
            &format!("esp:{GRUB_CFG_PATH}"),
            &bytes_digest(esp.grub_cfg.as_bytes()),
        ),
        entry(&format!("esp:{GRUBENV_PATH}"), &bytes_digest(&esp.grubenv)),
        Entry {
            name: BUNDLE.to_owned(),
            sha256: bundle_payload.sha256.clone(),
            size: bundle_payload.size,
            note: Some(
                "covers the payload (squashfs and hash tree), not the CMS signature after it"
                    .into(),
            ),
        },
    ])
}

/// Every WASM module the image carries: (who runs it, module path), sorted and deduplicated.
/// Components' modules and app slots' initial apps.
pub fn wasm_modules(plan: &Plan) -> Vec<(String, String)> {
    let mut modules = BTreeMap::new();
    for (component, spec) in &plan.components {
        if let Run::Wasm { module } = &spec.run {
            modules
                .entry(module.clone())
                .or_insert_with(|| format!("component {component}"));
        }
    }
    for (slot, app_slot) in &plan.app_slots {
        if let Some(initial) = &app_slot.initial {
            modules
                .entry(initial.module.clone())
                .or_insert_with(|| format!("app slot {slot}"));
        }
    }
    modules
        .into_iter()
        .map(|(module, owner)| (owner, module))
        .collect()
}

fn entry(name: &str, digest: &FileDigest) -> Entry {
    Entry {
        name: name.to_owned(),
        sha256: digest.sha256.clone(),
        size: digest.size,
        note: None,
    }
}

fn tempfile_in(dir: &Path) -> Result<tempfile::TempDir> {
    fs::create_dir_all(dir).map_err(ImageError::write(dir))?;
    tempfile::Builder::new()
        .prefix("work-")
        .tempdir_in(dir)
        .map_err(ImageError::write(dir))
}

/// Checks that the module `module` of `component`, at `path`, is a WebAssembly binary.
fn check_wasm(component: &str, module: &str, path: &Path) -> Result<()> {
    let fail = |detail: String| ImageError::WasmModule {
        component: component.to_owned(),
        module: module.to_owned(),
        path: path.to_path_buf(),
        detail,
    };
    let mut head = [0u8; 4];
    let mut file = fs::File::open(path).map_err(|source| ImageError::WasmModuleOpen {
        component: component.to_owned(),
        module: module.to_owned(),
        path: path.to_path_buf(),
        source,
    })?;
    std::io::Read::read_exact(&mut file, &mut head)
        .map_err(|_| fail("shorter than a WASM header".into()))?;
    if &head != b"\0asm" {
        return Err(fail("not a WebAssembly binary (no \\0asm magic)".into()));
    }
    Ok(())
}

fn os_release(plan: &Plan) -> String {
    format!(
        "NAME=testudo\nID=testudo\nVERSION_ID={}\nVARIANT_ID={}\nIMAGE_ID={}\nIMAGE_VERSION={}\n",
        plan.version, plan.board.name, plan.name, plan.version
    )
}

/// The SHA-256 and size of a bundle's payload (everything before the CMS signature), read
/// by the updater's [`testudo_updater::bundle::payload_sha256`].
pub fn bundle_payload_digest(path: &Path) -> Result<FileDigest> {
    let (sha256, size) =
        testudo_updater::bundle::payload_sha256(path).map_err(|source| ImageError::BundleRead {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
    Ok(FileDigest {
        sha256: hex::encode(sha256),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_work_keeps_the_items_order_and_reports_the_first_error_in_it() {
        let items: Vec<u64> = (0..40).collect();
        let doubled = map_concurrently(&items, |n| {
            // Later items finish first, so completion order differs from item order.
            std::thread::sleep(std::time::Duration::from_micros(40 - n));
            Ok(n * 2)
        })
        .unwrap();
        assert_eq!(doubled, items.iter().map(|n| n * 2).collect::<Vec<_>>());
        let failed = map_concurrently(&items, |n| match n {
            7 => Err(ImageError::StepOrder { what: "seven" }),
            30 => Err(ImageError::StepOrder { what: "thirty" }),
            n => Ok(*n),
        });
        assert!(
            matches!(failed, Err(ImageError::StepOrder { what: "seven" })),
            "{failed:?}"
        );
        assert!(map_concurrently(&[] as &[u64], |n| Ok(*n))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_step_table_runs_each_step_once_and_shows_the_timed_ones() {
        let steps: Vec<BuildStep> = STEPS.iter().map(|def| def.step).collect();
        let unique: std::collections::HashSet<_> = steps.iter().collect();
        assert_eq!(unique.len(), steps.len(), "{steps:?}");
        assert!(
            !steps.contains(&BuildStep::Prepare),
            "prepare makes the context"
        );
        let shown: Vec<&str> = STEPS
            .iter()
            .filter(|def| def.shown)
            .map(|def| def.step.name())
            .collect();
        assert_eq!(
            shown,
            [
                "kernel and modules",
                "initramfs",
                "binaries",
                "wasm apps",
                "rootfs system layer",
                "rootfs",
                "esp",
                "data partition",
                "disk image",
                "update bundle",
                "manifest",
            ]
        );
    }

    #[test]
    fn the_steps_beside_the_rootfs_come_before_the_step_that_joins_them() {
        let beside: Vec<BuildStep> = STEPS
            .iter()
            .filter(|def| def.lane == Lane::Beside)
            .map(|def| def.step)
            .collect();
        assert_eq!(beside, [BuildStep::Esp, BuildStep::DataPartition]);
        let place = |step| STEPS.iter().position(|def| def.step == step);
        let join = place(JOINS_BEFORE).expect("the joining step is in the table");
        assert_eq!(STEPS[join].lane, Lane::InOrder);
        for step in beside {
            assert!(
                place(step) < Some(join),
                "{step} is listed after {JOINS_BEFORE}"
            );
        }
    }

    #[test]
    fn a_step_error_names_the_step_and_keeps_the_cause_as_source() {
        let cause = ImageError::StepOrder { what: "the rootfs" };
        let err = in_step(BuildStep::UpdateBundle)(cause);
        assert_eq!(err.to_string(), "build step `update bundle` failed");
        assert_eq!(err.step(), Some(BuildStep::UpdateBundle));
        assert!(matches!(err.cause(), ImageError::StepOrder { .. }));
        let source = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(
            source.as_deref(),
            Some("the rootfs was not made by an earlier build step")
        );
    }
}
