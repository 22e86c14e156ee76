//! The read-only root filesystem: a staging tree with a fixed layout, packed into an
//! uncompressed squashfs with `mksquashfs -reproducible`, fixed times, root ownership and no
//! extended attributes (uncompressed so that delta updates stay small: docs/decisions/0094).
//!
//! One squashfs, built in two layers so that changing an app does not repack the system and
//! an app's bytes sit after every system byte (docs/decisions/0073):
//! 1. the *system layer*: everything that does not depend on the WASM apps, packed with
//!    [`squashfs_call`] (cached as its own object);
//! 2. the *app layer*: a copy of the system layer with the top-level directory [`APPS_ROOT`]
//!    appended by `mksquashfs` in append mode ([`append_call`]): only the apps are written.
//!
//! `mksquashfs` appends a layer's entries to the root directory and silently renames one whose
//! name the image already has (`apps` -> `apps_1`), so [`check_layer_names`] refuses a layer
//! whose top-level names collide with the system layer's before appending.
//!
//! Layout (paths other components rely on):
//! - `/usr/lib/testudo/<name>`: native binaries (`testudo-init`, drivers, services, the WASM host);
//!   their shared libraries at the paths the build host's `ldd` names (`/lib/...`, `/lib64/...`)
//! - `/etc/testudo/plan.json`: the plan, byte for byte as given
//! - `/apps/<module path from the plan>` (app layer; testudo-init's default `--app-root`):
//!   WASM modules (`.wasm`), with the precompiled `.cwasm` next to each when the WASM host can
//!   precompile
//! - `/etc/rauc/system.conf`, `/etc/rauc/keyring.pem`: the updater's configuration and the
//!   bundle verification keyring; `/etc/testudo/keys/`: public keys (deployment signatures)
//! - `/lib/modules/<release>/...` and `/lib/modules/<release>/testudo.load`: kernel modules
//!   the plan needs, the latter listing them in load order
//! - `/boot/vmlinuz`, `/boot/initrd.img`: this slot's kernel and initramfs (read by GRUB)
//! - `/etc/os-release`; empty mount points `/dev /proc /sys /run /tmp /data`

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use testudo_plan::layout::{in_image, rootfs};

use crate::error::{ImageError, Result};
use crate::reproducible::{normalize_tree, SourceDateEpoch};
use crate::tool::{path_arg, ToolCall, ToolRunner};

// Paths inside the staged tree: the device paths of `testudo_plan::layout::rootfs`, relative.

/// Directory of native binaries in the image.
pub const BIN_DIR: &str = in_image(rootfs::BIN_DIR);
/// The plan inside the image.
pub const PLAN_PATH: &str = in_image(rootfs::PLAN);
/// Root under which WASM modules keep their plan paths: the app layer's one top-level
/// directory, which the system layer must not have, and testudo-init's default `--app-root`.
pub const APPS_ROOT: &str = in_image(rootfs::APPS);
/// The updater's configuration.
pub const SYSTEM_CONF_PATH: &str = in_image(rootfs::RAUC_SYSTEM_CONF);
/// Directory of public keys and keyrings.
pub const KEYS_DIR: &str = in_image(rootfs::KEYS_DIR);
/// The root keys of OS update manifests (JWK set), inside the image.
pub const UPDATE_ROOT_KEYS_PATH: &str = in_image(rootfs::UPDATE_ROOT_KEYS);
/// The CA certificates the cloud agent trusts.
pub const TRUST_ANCHORS_PATH: &str = in_image(rootfs::TRUST_ANCHORS);
/// Kernel image inside the rootfs.
pub const KERNEL_PATH: &str = in_image(rootfs::KERNEL);
/// Initramfs inside the rootfs.
pub const INITRAMFS_PATH: &str = in_image(rootfs::INITRAMFS);
/// Empty directories every image has (mount points).
pub const MOUNT_POINTS: [&str; rootfs::MOUNT_POINTS.len()] = {
    let mut relative = rootfs::MOUNT_POINTS;
    let mut i = 0;
    while i < relative.len() {
        relative[i] = in_image(relative[i]);
        i += 1;
    }
    relative
};
/// Directories the system layer always has besides the mount points: the binaries, the
/// configuration, the kernel's directory and the ESP's mount point.
pub const SKELETON_DIRS: &[&str] = &[
    BIN_DIR,
    in_image(rootfs::CONFIG_DIR),
    "boot",
    in_image(rootfs::ESP_MOUNT),
];

/// A rootfs being staged in a directory.
#[derive(Debug)]
pub struct RootfsTree {
    root: PathBuf,
}

impl RootfsTree {
    /// Starts a fresh system-layer staging tree at `root` (removing anything there): mount
    /// points and [`SKELETON_DIRS`].
    pub fn create(root: &Path) -> Result<Self> {
        let tree = Self::create_layer(root)?;
        for dir in MOUNT_POINTS.iter().chain(SKELETON_DIRS) {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(ImageError::write(&path))?;
        }
        Ok(tree)
    }

    /// Starts a fresh, empty staging tree at `root` (removing anything there), for a layer
    /// to append to an image.
    pub fn create_layer(root: &Path) -> Result<Self> {
        if root.exists() {
            fs::remove_dir_all(root).map_err(ImageError::write(root))?;
        }
        fs::create_dir_all(root).map_err(ImageError::write(root))?;
        Ok(RootfsTree {
            root: root.to_path_buf(),
        })
    }

    /// The staging directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host path for an image path (`usr/bin/x` or `/usr/bin/x`).
    pub fn host_path(&self, image_path: &str) -> PathBuf {
        self.root.join(image_path.trim_start_matches('/'))
    }

    fn prepare(&self, image_path: &str) -> Result<PathBuf> {
        let target = self.host_path(image_path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(ImageError::write(parent))?;
        }
        Ok(target)
    }

    /// Copies `source` to `image_path` with `mode` (0644 or 0755).
    pub fn add_file(&self, image_path: &str, source: &Path, mode: u32) -> Result<()> {
        let target = self.prepare(image_path)?;
        fs::copy(source, &target).map_err(ImageError::write(&target))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(mode))
            .map_err(ImageError::write(&target))
    }

    /// Writes `bytes` to `image_path` with `mode`.
    pub fn add_bytes(&self, image_path: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let target = self.prepare(image_path)?;
        fs::write(&target, bytes).map_err(ImageError::write(&target))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(mode))
            .map_err(ImageError::write(&target))
    }

    /// Packs the tree into the squashfs `out`.
    pub fn pack(&self, tools: &dyn ToolRunner, epoch: SourceDateEpoch, out: &Path) -> Result<()> {
        normalize_tree(&self.root, epoch)?;
        if out.exists() {
            fs::remove_file(out).map_err(ImageError::write(out))?;
        }
        tools.run(&squashfs_call(&self.root, out, epoch))?;
        Ok(())
    }

    /// Appends the tree's entries to the root directory of the existing squashfs `image`
    /// (compression and block size are the image's). The caller checks the names first
    /// ([`check_layer_names`]).
    pub fn append_to(
        &self,
        tools: &dyn ToolRunner,
        epoch: SourceDateEpoch,
        image: &Path,
    ) -> Result<()> {
        normalize_tree(&self.root, epoch)?;
        tools.run(&append_call(&self.root, image, epoch))?;
        Ok(())
    }
}

/// The top-level names of image paths (`usr/lib/x` -> `usr`).
pub fn top_level_names<'a>(paths: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    paths
        .into_iter()
        .filter_map(|p| p.trim_start_matches('/').split('/').next())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The top-level names of a system layer holding `files` (with its mount points and
/// skeleton).
pub fn system_top_level_names<'a>(files: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    top_level_names(
        MOUNT_POINTS
            .iter()
            .chain(SKELETON_DIRS)
            .copied()
            .chain(files),
    )
}

/// Refuses a layer whose top-level names (`layer`) the image (`system`) already has:
/// `mksquashfs` would append it renamed (`apps_1`), where nothing looks for it.
pub fn check_layer_names(system: &BTreeSet<String>, layer: &BTreeSet<String>) -> Result<()> {
    let clashes: Vec<String> = layer.intersection(system).cloned().collect();
    if clashes.is_empty() {
        Ok(())
    } else {
        Err(ImageError::LayerNameClash {
            layer: "app layer".to_owned(),
            names: clashes.join(", "),
        })
    }
}

/// The `mksquashfs` invocation for a reproducible image. Stored, not compressed (data,
/// inodes, fragments and xattr tables: `-noD -noI -noF -noX`), so that a small change in the
/// tree moves or changes only its own bytes instead of every later compressed block: binary
/// deltas between two images then stay about as small as the change
/// (docs/decisions/0094). The bundle compresses the whole image once for the download.
/// GRUB 2.06's `squash4` and the kernel read stored blocks.
pub fn squashfs_call(source: &Path, out: &Path, epoch: SourceDateEpoch) -> ToolCall {
    let time = epoch.seconds.to_string();
    ToolCall::new("mksquashfs", "packing the rootfs")
        .arg(path_arg(source))
        .arg(path_arg(out))
        .args(["-noappend", "-reproducible", "-no-progress", "-quiet"])
        .args([
            "-all-root",
            "-no-xattrs",
            "-noD",
            "-noI",
            "-noF",
            "-noX",
            "-b",
            "131072",
        ])
        .arg("-mkfs-time")
        .arg(time.clone())
        .arg("-all-time")
        .arg(time)
}

/// The packing options of [`squashfs_call`] as one cache-key part: a rootfs packed with other
/// options is never taken from the cache.
pub fn packing_key_part() -> String {
    let call = squashfs_call(
        Path::new("SOURCE"),
        Path::new("OUT"),
        SourceDateEpoch {
            seconds: 0,
            source: crate::reproducible::EpochSource::Environment,
        },
    );
    let args: Vec<String> = call
        .args
        .iter()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    format!("mksquashfs {}", args.join(" "))
}

/// The `mksquashfs` invocation appending `layer`'s entries to the root of the squashfs
/// `image`. Compression, block size and the other filesystem options are the image's own
/// (mksquashfs ignores them when appending); ownership, times and xattrs are pinned as in
/// [`squashfs_call`], so the result is as reproducible as the image it extends. No recovery
/// file: a failed append leaves a cache temporary that is thrown away.
pub fn append_call(layer: &Path, image: &Path, epoch: SourceDateEpoch) -> ToolCall {
    let time = epoch.seconds.to_string();
    ToolCall::new("mksquashfs", "appending the app layer to the rootfs")
        .arg(path_arg(layer))
        .arg(path_arg(image))
        .args([
            "-reproducible",
            "-no-progress",
            "-quiet",
            "-no-recovery",
            "-all-root",
            "-no-xattrs",
        ])
        .arg("-mkfs-time")
        .arg(time.clone())
        .arg("-all-time")
        .arg(time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproducible::EpochSource;
    use crate::tool::fake::RecordingTools;

    #[test]
    fn staging_creates_layout_and_packs_reproducibly() {
        let dir = tempfile::tempdir().unwrap();
        let tree = RootfsTree::create(&dir.path().join("root")).unwrap();
        tree.add_bytes(PLAN_PATH, b"{}", 0o644).unwrap();
        tree.add_bytes("usr/lib/testudo/testudo-init", b"\x7fELF", 0o755)
            .unwrap();
        for m in MOUNT_POINTS {
            assert!(tree.host_path(m).is_dir(), "{m}");
        }
        let tools = RecordingTools::new(|_| Ok(Vec::new()));
        let epoch = SourceDateEpoch {
            seconds: 42,
            source: EpochSource::Environment,
        };
        tree.pack(&tools, epoch, &dir.path().join("rootfs.img"))
            .unwrap();
        let call = &tools.calls()[0];
        let args: Vec<String> = call
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for flag in ["-reproducible", "-all-root", "-no-xattrs", "-noappend"] {
            assert!(args.contains(&flag.to_owned()), "{flag}");
        }
        let pos = args.iter().position(|a| a == "-all-time").unwrap();
        assert_eq!(args[pos + 1], "42");
    }

    #[test]
    fn an_app_layer_clashing_with_the_system_layer_is_refused() {
        let system = system_top_level_names(["lib64/ld.so", "/etc/os-release"]);
        for name in ["usr", "lib64", "etc", "boot", "data"] {
            assert!(system.contains(name), "{name}");
        }
        assert!(!system.contains(APPS_ROOT));
        let apps = top_level_names(["apps/a.wasm", "apps/b/c.cwasm"]);
        assert_eq!(apps.iter().collect::<Vec<_>>(), ["apps"]);
        check_layer_names(&system, &apps).unwrap();
        let bad = top_level_names(["apps/a.wasm", "lib64/x"]);
        let err = check_layer_names(&system, &bad).unwrap_err().to_string();
        assert!(err.contains("lib64"), "{err}");
    }

    #[test]
    fn appending_pins_times_ownership_and_never_recovers() {
        let epoch = SourceDateEpoch {
            seconds: 7,
            source: EpochSource::Environment,
        };
        let call = append_call(Path::new("layer"), Path::new("img"), epoch);
        let args: Vec<String> = call
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for flag in ["-all-root", "-no-xattrs", "-no-recovery", "-reproducible"] {
            assert!(args.contains(&flag.to_owned()), "{flag}");
        }
        assert!(!args.contains(&"-noappend".to_owned()));
        for flag in ["-all-time", "-mkfs-time"] {
            let pos = args.iter().position(|a| a == flag).unwrap();
            assert_eq!(args[pos + 1], "7");
        }
    }
}
