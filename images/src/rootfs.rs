//! The read-only root filesystem: a staging tree with a fixed layout, packed into a squashfs
//! with `mksquashfs -reproducible`, fixed times, root ownership and no extended attributes.
//!
//! Layout (paths other components rely on):
//! - `/usr/lib/testudo/<name>`: native binaries (`testudo-init`, drivers, services, the WASM host);
//!   their shared libraries at the paths the build host's `ldd` names (`/lib/...`, `/lib64/...`)
//! - `/etc/testudo/plan.json`: the plan, byte for byte as given
//! - `/usr/share/testudo/apps/<module path from the plan>`: WASM modules (`.wasm`), with the
//!   precompiled `.cwasm` next to each when the WASM host can precompile
//! - `/etc/rauc/system.conf`, `/etc/rauc/keyring.pem`: the updater's configuration and the
//!   bundle verification keyring; `/etc/testudo/keys/`: public keys (deployment signatures)
//! - `/lib/modules/<release>/...` and `/lib/modules/<release>/testudo.load`: kernel modules
//!   the plan needs, the latter listing them in load order
//! - `/boot/vmlinuz`, `/boot/initrd.img`: this slot's kernel and initramfs (read by GRUB)
//! - `/etc/os-release`; empty mount points `/dev /proc /sys /run /tmp /data`

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{ImageError, Result};
use crate::reproducible::{normalize_tree, SourceDateEpoch};
use crate::tool::{path_arg, ToolCall, ToolRunner};

/// Directory of native binaries in the image.
pub const BIN_DIR: &str = "usr/lib/testudo";
/// The plan inside the image.
pub const PLAN_PATH: &str = "etc/testudo/plan.json";
/// Root under which WASM modules keep their plan paths.
pub const APPS_ROOT: &str = "usr/share/testudo/apps";
/// The updater's configuration.
pub const SYSTEM_CONF_PATH: &str = "etc/rauc/system.conf";
/// Directory of public keys and keyrings.
pub const KEYS_DIR: &str = "etc/testudo/keys";
/// Kernel image inside the rootfs.
pub const KERNEL_PATH: &str = "boot/vmlinuz";
/// Initramfs inside the rootfs.
pub const INITRAMFS_PATH: &str = "boot/initrd.img";
/// Empty directories every image has (mount points).
pub const MOUNT_POINTS: &[&str] = &["dev", "proc", "sys", "run", "tmp", "data"];

/// A rootfs being staged in a directory.
#[derive(Debug)]
pub struct RootfsTree {
    root: PathBuf,
}

impl RootfsTree {
    /// Starts a fresh staging tree at `root` (removing anything there).
    pub fn create(root: &Path) -> Result<Self> {
        if root.exists() {
            fs::remove_dir_all(root).map_err(ImageError::write(root))?;
        }
        for dir in MOUNT_POINTS
            .iter()
            .chain([&BIN_DIR, &"etc/testudo", &"boot"])
        {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(ImageError::write(&path))?;
        }
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
}

/// The `mksquashfs` invocation for a reproducible image. LZO (`lzo1x_1`) because GRUB 2.06's
/// `squash4` reads gzip, xz and lzo only (not zstd or lz4) and lzo1x_1 packs about 4x faster
/// than gzip level 1 for about 25% more bytes; the kernel reads it too
/// (`CONFIG_SQUASHFS_LZO`). See docs/decisions/0073.
pub fn squashfs_call(source: &Path, out: &Path, epoch: SourceDateEpoch) -> ToolCall {
    let time = epoch.seconds.to_string();
    ToolCall::new("mksquashfs", "packing the rootfs")
        .arg(path_arg(source))
        .arg(path_arg(out))
        .args(["-noappend", "-reproducible", "-no-progress", "-quiet"])
        .args([
            "-all-root",
            "-no-xattrs",
            "-comp",
            "lzo",
            "-Xalgorithm",
            "lzo1x_1",
            "-b",
            "131072",
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
}
