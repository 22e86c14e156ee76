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
use crate::digest::{bytes_sha256, FileDigest};
use crate::digest_cache::{DigestCache, StatKey};
use crate::disk::{self, DiskLayout, DATA_LABEL, ESP_LABEL, ROOTFS_A_LABEL};
use crate::error::{ImageError, Result};
use crate::esp::{self, EspContent, BOOT_EFI_PATH, GRUBENV_PATH, GRUB_CFG_PATH};
use crate::initramfs;
use crate::kernel::{self, Kernel};
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

/// Build-host files the builder reads besides the plan's own inputs.
#[derive(Debug, Clone)]
pub struct HostPaths {
    /// Root of kernel module trees (`/lib/modules`).
    pub modules_root: PathBuf,
    /// A static busybox for the initramfs (`/usr/bin/busybox`, Debian `busybox-static`).
    pub busybox: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            modules_root: PathBuf::from("/lib/modules"),
            busybox: PathBuf::from("/usr/bin/busybox"),
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
    /// `SOURCE_DATE_EPOCH` if set; otherwise git `HEAD` time of `source_root`, else 0.
    pub source_date_epoch: Option<String>,
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
    /// Steps in order.
    pub steps: Vec<StepReport>,
    /// The output files with their digests.
    pub outputs: Vec<Entry>,
}

const STEPS: u64 = 11;

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
        let digest = FileDigest {
            sha256: bytes_sha256(&bytes),
            size: bytes.len() as u64,
        };
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

struct Steps {
    progress: Progress,
    reports: Vec<StepReport>,
}

impl Steps {
    fn run<T>(
        &mut self,
        name: &str,
        step: impl FnOnce() -> Result<(T, Option<Reuse>)>,
    ) -> Result<T> {
        self.progress.start(name);
        let started = Instant::now();
        let (value, reuse) = step()?;
        let elapsed = started.elapsed();
        self.progress.finish(name, reuse, elapsed);
        self.reports.push(StepReport {
            name: name.to_owned(),
            reuse,
            seconds: elapsed.as_secs_f64(),
        });
        Ok(value)
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

/// Builds the image described by `request`.
pub fn build(request: &BuildRequest, tools: &dyn ToolRunner) -> Result<BuildReport> {
    let plan = &request.plan;
    let epoch = SourceDateEpoch::determine(
        request.source_date_epoch.as_deref(),
        &request.source_root,
        tools,
    )?;
    let cache = Cache::open(&request.cache_dir)?;
    let digests = DigestCache::open(&request.cache_dir.join("digests"))?;
    fs::create_dir_all(&request.out_dir).map_err(ImageError::write(&request.out_dir))?;
    let scratch = tempfile_in(&request.cache_dir.join("tmp"))?;
    let work = scratch.path();
    let epoch_text = epoch.seconds.to_string();
    let seed = plan.compatible.clone();
    let mut inputs: Vec<Entry> = Vec::new();
    let mut steps = Steps {
        progress: Progress::new(STEPS, request.progress),
        reports: Vec::new(),
    };
    // The rootfs in two layers (see `rootfs`): the system, and the apps appended to it.
    let mut spec = RootfsSpec::default();
    let mut app_layer = RootfsSpec::default();

    // The plan, byte for byte as the device will read it.
    let plan_bytes = plan
        .to_canonical_json()
        .map_err(|source| ImageError::Serialize {
            what: "plan".into(),
            source,
        })?
        .into_bytes();
    inputs.push(entry(
        "plan",
        &FileDigest {
            sha256: bytes_sha256(&plan_bytes),
            size: plan_bytes.len() as u64,
        },
    ));
    spec.add_bytes(PLAN_PATH, plan_bytes, 0o644);

    // Kernel and modules.
    let (kernel, initramfs_modules) = steps.run("kernel and modules", || {
        let boards_dir = request.source_root.join("images/boards");
        let kernel = Kernel::locate(&plan.board.kernel, &boards_dir, &request.host.modules_root)?;
        let digest = spec.add_file(&digests, KERNEL_PATH, &kernel.image, 0o644)?;
        inputs.push(entry(
            &format!("kernel:vmlinuz-{}", kernel.version),
            &digest,
        ));
        let needed = kernel.resolve(&kernel::plan_modules(plan))?;
        let mut load_order = String::new();
        for module in &needed {
            let path = kernel.modules_dir.join(&module.relative);
            let image_path = format!("lib/modules/{}/{}", kernel.version, module.relative);
            let digest = spec.add_file(&digests, &image_path, &path, 0o644)?;
            inputs.push(entry(&format!("kernel-module:{}", module.name), &digest));
            load_order.push_str(&module.relative);
            load_order.push('\n');
        }
        spec.add_bytes(
            &format!("lib/modules/{}/testudo.load", kernel.version),
            load_order.into_bytes(),
            0o644,
        );
        let initramfs_modules = kernel.resolve(&kernel::initramfs_modules())?;
        Ok(((kernel, initramfs_modules), None))
    })?;

    // Initramfs.
    steps.run("initramfs", || {
        let busybox_digest = digests.file(&request.host.busybox)?;
        inputs.push(entry("busybox", &busybox_digest));
        let mut module_files = Vec::new();
        let mut parts = vec![busybox_digest.sha256.clone(), initramfs::init_script(&[])];
        for module in &initramfs_modules {
            let path = kernel.modules_dir.join(&module.relative);
            let bytes = fs::read(&path).map_err(ImageError::read(&path))?;
            parts.push(format!("{} {}", module.name, bytes_sha256(&bytes)));
            module_files.push((module.name.clone(), bytes));
        }
        let key = CacheKey::new("initramfs", &parts);
        let (object, reuse) = cache.get_or_build(&key, |out| {
            let busybox =
                fs::read(&request.host.busybox).map_err(ImageError::read(&request.host.busybox))?;
            let archive = initramfs::build(&busybox, &module_files);
            fs::write(out, archive).map_err(ImageError::write(out))
        })?;
        let digest = cache.object_sha256(&key)?;
        spec.add_file_with_digest(INITRAMFS_PATH, &object, 0o644, digest);
        Ok(((), Some(reuse)))
    })?;

    // Native binaries, stripped, with their shared libraries.
    let wasm_host = steps.run("binaries", || {
        let mut any_built = false;
        let mut wasm_host = None;
        let mut libraries = std::collections::BTreeSet::new();
        let loader_cache = loader_cache_state();
        for (name, needed_by) in needed_binaries(plan) {
            let path = binaries::find_binary(&name, &request.bin_dirs, &needed_by)?;
            let digest = digests.file(&path)?;
            inputs.push(entry(&format!("binary:{name}"), &digest));
            let key = CacheKey::new("strip", [digest.sha256.as_str()]);
            let (stripped, reuse) =
                cache.get_or_build(&key, |out| binaries::strip(tools, &path, out))?;
            any_built |= reuse == Reuse::Built;
            let stripped_digest = cache.object_sha256(&key)?;
            spec.add_file_with_digest(
                &format!("{BIN_DIR}/{name}"),
                &stripped,
                0o755,
                stripped_digest,
            );
            // The library closure depends on the binary and on the host's loader cache.
            let key = CacheKey::new("ldd", [digest.sha256.as_str(), loader_cache.as_str()]);
            let (list, _) = cache.get_or_build(&key, |out| {
                let libs = binaries::shared_libraries(tools, &path)?;
                let text: String = libs.iter().map(|l| format!("{}\n", l.display())).collect();
                fs::write(out, text).map_err(ImageError::write(out))
            })?;
            let text = fs::read_to_string(&list).map_err(ImageError::read(&list))?;
            libraries.extend(text.lines().map(PathBuf::from));
            if name == WASM_HOST_BINARY {
                wasm_host = Some((path, digest));
            }
        }
        for library in libraries {
            let digest = spec.add_file(&digests, &library.to_string_lossy(), &library, 0o755)?;
            inputs.push(entry(&format!("library:{}", library.display()), &digest));
        }
        Ok((
            wasm_host,
            Some(if any_built { Reuse::Built } else { Reuse::Hit }),
        ))
    })?;

    // WASM apps, each with its precompiled `.cwasm` made by the image's own WASM host.
    steps.run("wasm apps", || {
        let mut any_built = false;
        let cpu_features = plan.board.cpu_features.join(",");
        for (owner, module) in wasm_modules(plan) {
            let path = request.source_root.join(&module);
            check_wasm(&owner, &module, &path)?;
            let image_path = format!("{APPS_ROOT}/{module}");
            let digest = app_layer.add_file(&digests, &image_path, &path, 0o644)?;
            inputs.push(entry(&format!("app:{module}"), &digest));
            let Some((host, host_digest)) = &wasm_host else {
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
            let (compiled, reuse) = cache.get_or_build(&key, |out| {
                cwasm::precompile(tools, host, &module, &path, &cpu_features, out)
            })?;
            any_built |= reuse == Reuse::Built;
            let compiled_digest = cache.object_sha256(&key)?;
            app_layer.add_file_with_digest(
                &cwasm::sidecar_path(&image_path),
                &compiled,
                0o644,
                compiled_digest,
            );
        }
        Ok(((), Some(if any_built { Reuse::Built } else { Reuse::Hit })))
    })?;

    // `ldd` for testudo-init's sandbox library discovery (glibc's own `ldd` is a bash script):
    // the dynamic loader's `--list`, run by the image's static busybox.
    spec.add_file(&digests, "usr/bin/busybox", &request.host.busybox, 0o755)?;
    spec.add_bytes("usr/bin/ldd", LDD_SCRIPT.as_bytes().to_vec(), 0o755);

    // Updater configuration and public keys.
    spec.add_bytes(
        rootfs::SYSTEM_CONF_PATH,
        system_conf::render(plan).into_bytes(),
        0o644,
    );
    let ca = spec.add_file(
        &digests,
        system_conf::KEYRING_PATH,
        &request.keys.ca_cert,
        0o644,
    )?;
    inputs.push(entry("key:ca.pem", &ca));
    let deploy_pub = spec.add_file(
        &digests,
        &format!("{}/deploy.ed25519.pub", rootfs::KEYS_DIR),
        &request.keys.deploy_pub,
        0o644,
    )?;
    inputs.push(entry("key:deploy.ed25519.pub", &deploy_pub));
    spec.add_bytes("etc/os-release", os_release(plan).into_bytes(), 0o644);

    // Rootfs, stage 1: the system layer, everything that does not depend on the apps. A full
    // and an incremental build both go through it, so their outputs are identical.
    let mksquashfs_version = tool_version(tools, "mksquashfs", "-version");
    let (system_object, system_key) = steps.run("rootfs system layer", || {
        let mut parts = spec.system_key_parts();
        parts.push(format!("epoch {epoch_text}"));
        parts.push(mksquashfs_version.clone());
        let key = CacheKey::new("rootfs-system", &parts);
        let (object, reuse) = cache.get_or_build(&key, |out| {
            let tree = spec.stage_system(&work.join("rootfs"))?;
            tree.pack(tools, epoch, out)?;
            fs::remove_dir_all(tree.root()).map_err(ImageError::write(tree.root()))
        })?;
        Ok(((object, key), Some(reuse)))
    })?;

    // Rootfs, stage 2: a copy of the system layer with the app layer appended (only the apps
    // are compressed).
    let (rootfs_object, rootfs_digest) = steps.run("rootfs", || {
        rootfs::check_layer_names(
            &rootfs::system_top_level_names(spec.files.keys().map(String::as_str)),
            &app_layer.top_level_names(),
        )?;
        let mut parts = vec![system_key.as_str().to_owned()];
        parts.extend(app_layer.key_parts());
        parts.push(format!("epoch {epoch_text}"));
        parts.push(mksquashfs_version.clone());
        let key = CacheKey::new("rootfs", &parts);
        let (object, reuse) = cache.get_or_build(&key, |out| {
            fs::copy(&system_object, out).map_err(ImageError::write(out))?;
            let tree = app_layer.stage_layer(&work.join("app-layer"))?;
            tree.append_to(tools, epoch, out)?;
            fs::remove_dir_all(tree.root()).map_err(ImageError::write(tree.root()))
        })?;
        let digest = cache.object_sha256(&key)?;
        Ok(((object, digest), Some(reuse)))
    })?;
    let rootfs_out = request.out_dir.join(ROOTFS_IMG);
    link_out(&rootfs_object, &rootfs_out)?;

    // ESP.
    let grub_cfg = esp::grub_cfg(&plan.board.console);
    let grubenv = esp::initial_grubenv();
    let (esp_object, esp_digest, grub_efi) = steps.run("esp", || {
        let grub_key = CacheKey::new(
            "grub-efi",
            [
                esp::early_cfg(),
                esp::GRUB_MODULES.join(" "),
                tool_version(tools, "grub-mkimage", "--version"),
            ],
        );
        let (grub_efi, _) = cache.get_or_build(&grub_key, |out| {
            esp::build_grub_efi(tools, &work.join("grub"), out)
        })?;
        let grub_digest = cache.object_sha256(&grub_key)?;
        let volume_id = bytes_sha256(seed.as_bytes())[..8].to_uppercase();
        let size = plan.board.partitions.esp_bytes;
        let key = CacheKey::new(
            "esp",
            [
                grub_digest.sha256.clone(),
                grub_cfg.clone(),
                bytes_sha256(&grubenv),
                size.to_string(),
                volume_id.clone(),
                epoch_text.clone(),
                tool_version(tools, "mkfs.vfat", "--help"),
            ],
        );
        let (object, reuse) = cache.get_or_build(&key, |out| {
            let content = EspContent {
                grub_efi: &grub_efi,
                grub_cfg: &grub_cfg,
                grubenv: &grubenv,
                size,
                volume_id: &volume_id,
            };
            esp::build_esp(tools, &content, epoch, work, out)
        })?;
        let digest = cache.object_sha256(&key)?;
        Ok(((object, digest, grub_digest), Some(reuse)))
    })?;

    // Data partition.
    let (data_object, data_digest) = steps.run("data partition", || {
        let size = plan.board.partitions.data_bytes.max(disk::ALIGN);
        let size = size.div_ceil(disk::ALIGN) * disk::ALIGN;
        let key = CacheKey::new(
            "data-fs",
            [seed.clone(), size.to_string(), epoch_text.clone()],
        );
        let (object, reuse) = cache.get_or_build(&key, |out| {
            datafs::build_data_fs(tools, &seed, size, epoch, &work.join("data"), out)
        })?;
        let digest = cache.object_sha256(&key)?;
        Ok(((object, digest), Some(reuse)))
    })?;

    // Disk image.
    let disk_out = request.out_dir.join(DISK_IMG);
    let disk_map = steps.run("disk image", || {
        let layout = DiskLayout::for_board(&seed, &plan.board.partitions);
        let map = disk::assemble(
            &disk_out,
            &layout,
            &[
                (ESP_LABEL, &esp_object, &esp_digest),
                (ROOTFS_A_LABEL, &rootfs_object, &rootfs_digest),
                (DATA_LABEL, &data_object, &data_digest),
            ],
        )?;
        Ok((map, None))
    })?;

    // Update bundle.
    let bundle_out = request.out_dir.join(BUNDLE);
    let bundle_payload = steps.run("update bundle", || {
        let format = match plan.update.bundle_format.as_str() {
            "plain" => BundleFormat::Plain,
            _ => BundleFormat::Verity,
        };
        let cert = digests.file(&request.keys.signing_cert)?;
        let key_file = digests.file(&request.keys.signing_key)?;
        let key = CacheKey::new(
            "bundle",
            [
                rootfs_digest.sha256.clone(),
                cert.sha256,
                key_file.sha256,
                plan.compatible.clone(),
                plan.version.clone(),
                format.as_str().to_owned(),
            ],
        );
        let mut payload = None;
        let (object, reuse) = cache.get_or_build(&key, |out| {
            let dir = work.join("bundle");
            fs::create_dir_all(&dir).map_err(ImageError::write(&dir))?;
            let image = dir.join(ROOTFS_IMG);
            if fs::hard_link(&rootfs_object, &image).is_err() {
                fs::copy(&rootfs_object, &image).map_err(ImageError::write(&image))?;
            }
            let mut bundle_spec = BundleSpec::new(
                &plan.compatible,
                &plan.version,
                vec![("rootfs".to_owned(), image.clone())],
            );
            // The rootfs object's digest is already known: the bundle writer need not re-read it.
            if let Some(sha256) = rootfs_digest.sha256_bytes() {
                bundle_spec
                    .known_digests
                    .insert(image, (sha256, rootfs_digest.size));
            }
            bundle_spec.format = format;
            bundle_spec.description = Some(format!("{} {}", plan.name, plan.version));
            // Uncompressed (the rootfs already is), and modes pinned so the payload does not
            // depend on the umask the bundle writer's files were created under.
            let manifest_mode =
                format!("{} m 644 0 0", testudo_updater::manifest::MANIFEST_FILENAME);
            let image_mode = format!("{ROOTFS_IMG} m 644 0 0");
            bundle_spec.mksquashfs_args =
                ["-noI", "-noD", "-noF", "-noX", "-root-mode", "755", "-p"]
                    .into_iter()
                    .map(str::to_owned)
                    .chain([image_mode, "-p".to_owned(), manifest_mode])
                    .collect();
            let made = dir.join(BUNDLE);
            let created =
                testudo_updater::bundle::create(&bundle_spec, &request.keys.signer(), &made)
                    .map_err(|source| ImageError::Bundle {
                        path: made.clone(),
                        source: Box::new(source),
                    })?;
            payload = Some(FileDigest {
                sha256: hex::encode(created.payload_sha256),
                size: created.payload_size,
            });
            fs::rename(&made, out).map_err(ImageError::write(out))
        })?;
        let payload = match payload {
            // Just built: the writer reported it; kept for the next build's hit.
            Some(payload) => {
                cache.store_digest(&key, PAYLOAD_DIGEST, &payload)?;
                payload
            }
            None => cache.object_digest(&key, PAYLOAD_DIGEST, bundle_payload_digest)?,
        };
        link_out(&object, &bundle_out)?;
        Ok((payload, Some(reuse)))
    })?;

    // Manifest.
    let outputs = steps.run("manifest", || {
        let mut outputs = vec![
            entry(ROOTFS_IMG, &rootfs_digest),
            Entry {
                note: Some(
                    "sha256 of the disk map (`disk`): each data range's hash; the rest is zeros"
                        .into(),
                ),
                ..entry(DISK_IMG, &disk_map.digest())
            },
            entry(&format!("esp:{BOOT_EFI_PATH}"), &grub_efi),
            entry(
                &format!("esp:{GRUB_CFG_PATH}"),
                &FileDigest {
                    sha256: bytes_sha256(grub_cfg.as_bytes()),
                    size: grub_cfg.len() as u64,
                },
            ),
            entry(
                &format!("esp:{GRUBENV_PATH}"),
                &FileDigest {
                    sha256: bytes_sha256(&grubenv),
                    size: grubenv.len() as u64,
                },
            ),
        ];
        outputs.push(Entry {
            name: BUNDLE.to_owned(),
            sha256: bundle_payload.sha256.clone(),
            size: bundle_payload.size,
            note: Some(
                "covers the payload (squashfs and hash tree), not the CMS signature after it"
                    .into(),
            ),
        });
        let mut manifest = ImageManifest {
            format: MANIFEST_FORMAT,
            builder: format!("testudo-images {}", env!("CARGO_PKG_VERSION")),
            system: SystemInfo {
                name: plan.name.clone(),
                version: plan.version.clone(),
                compatible: plan.compatible.clone(),
                board: plan.board.name.clone(),
            },
            source_date_epoch: epoch.seconds,
            inputs: inputs.clone(),
            disk: disk_map.clone(),
            outputs: outputs.clone(),
            rootfs: spec
                .files
                .iter()
                .chain(&app_layer.files)
                .map(|(path, staged)| entry(&format!("/{path}"), &staged.digest))
                .collect(),
        };
        manifest.sort();
        let key = keys::load_deploy_key(&request.keys)?;
        let bytes = manifest.sign(&key)?;
        let path = request.out_dir.join(MANIFEST);
        fs::write(&path, &bytes).map_err(ImageError::write(&path))?;
        outputs.push(entry(
            MANIFEST,
            &FileDigest {
                sha256: bytes_sha256(&bytes),
                size: bytes.len() as u64,
            },
        ));
        Ok((outputs, None))
    })?;
    steps.progress.close();
    Ok(BuildReport {
        epoch,
        steps: steps.reports,
        outputs,
    })
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

fn check_wasm(component: &str, module: &str, path: &Path) -> Result<()> {
    let fail = |detail: String| ImageError::WasmModule {
        component: component.to_owned(),
        module: module.to_owned(),
        path: path.to_path_buf(),
        detail,
    };
    let mut head = [0u8; 4];
    let mut file = fs::File::open(path).map_err(|e| {
        fail(format!(
            "cannot open ({e}); build apps with `cargo xtask apps`"
        ))
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

/// SHA-256 of a bundle's payload: everything before the CMS signature, whose length is the
/// file's last 8 bytes (big-endian).
pub fn bundle_payload_digest(path: &Path) -> Result<FileDigest> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = fs::File::open(path).map_err(ImageError::read(path))?;
    let total = file.metadata().map_err(ImageError::read(path))?.len();
    let bad = || ImageError::ReadInput {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a bundle: bad signature length",
        ),
    };
    if total < 8 {
        return Err(bad());
    }
    file.seek(SeekFrom::Start(total - 8))
        .map_err(ImageError::read(path))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(ImageError::read(path))?;
    let cms = u64::from_be_bytes(len);
    let payload = total
        .checked_sub(8)
        .and_then(|t| t.checked_sub(cms))
        .ok_or_else(bad)?;
    file.seek(SeekFrom::Start(0))
        .map_err(ImageError::read(path))?;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut remaining = payload;
    let mut buf = vec![0u8; 1 << 20];
    while remaining > 0 {
        let want = remaining.min(buf.len() as u64) as usize;
        file.read_exact(&mut buf[..want])
            .map_err(ImageError::read(path))?;
        sha2::Digest::update(&mut hasher, &buf[..want]);
        remaining -= want as u64;
    }
    Ok(FileDigest {
        sha256: hex::encode(sha2::Digest::finalize(hasher)),
        size: payload,
    })
}
