//! The board's kernel and the kernel modules the image needs: located by the kernel's
//! version (`vmlinuz-<version>` -> `/lib/modules/<version>`, or a module directory given
//! with the kernel as Nix lays one out), dependencies resolved from
//! `modules.dep` into load order, built-in modules (`modules.builtin`) skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use testudo_plan::Plan;

use crate::error::{ImageError, Result};

/// The kernel an image boots.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The kernel image file on the build host.
    pub image: PathBuf,
    /// Its release string, e.g. `6.1.0-56-cloud-amd64`.
    pub version: String,
    /// `/lib/modules/<version>` on the build host.
    pub modules_dir: PathBuf,
}

/// The only subdirectory of `root` that holds a `modules.dep`.
fn only_release(root: &Path) -> Option<PathBuf> {
    let mut releases = fs::read_dir(root)
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|dir| dir.join("modules.dep").is_file());
    let release = releases.next()?;
    releases.next().is_none().then_some(release)
}

/// One loadable module, ready to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelModule {
    /// Module name with underscores, e.g. `virtio_net`.
    pub name: String,
    /// Path relative to the modules directory, e.g. `kernel/drivers/net/virtio_net.ko`.
    pub relative: String,
}

impl Kernel {
    /// Locates the kernel `board_kernel` (absolute, or relative to `boards_dir`) and its
    /// modules; see [`Kernel::at`].
    pub fn locate(board_kernel: &str, boards_dir: &Path, modules: &Path) -> Result<Kernel> {
        let image = if Path::new(board_kernel).is_absolute() {
            PathBuf::from(board_kernel)
        } else {
            boards_dir.join(board_kernel)
        };
        Kernel::at(&image, modules)
    }

    /// The kernel `image` and its modules. `modules` is one release's module directory (it
    /// holds `modules.dep`: Nix's `${kernel}/lib/modules/<release>`), or a root of such
    /// directories (`/lib/modules`), in which the release is the one the kernel's file name
    /// names (`vmlinuz-<release>`, after following symlinks as Debian's `/vmlinuz`), or else
    /// the root's only release (Nix's `${kernel}/bzImage` with `${kernel}/lib/modules`).
    pub fn at(image: &Path, modules: &Path) -> Result<Kernel> {
        if !image.is_file() {
            return Err(ImageError::Kernel {
                path: image.to_owned(),
                detail: "not found (Debian: apt-get install linux-image-cloud-amd64)".into(),
            });
        }
        let image = fs::canonicalize(image).map_err(|e| ImageError::Kernel {
            path: image.to_owned(),
            detail: format!("cannot resolve: {e}"),
        })?;
        let named_release = image
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        let modules_dir = if modules.join("modules.dep").is_file() {
            modules.to_owned()
        } else if let Some(release) = &named_release {
            modules.join(release)
        } else {
            only_release(modules).ok_or_else(|| ImageError::Kernel {
                path: image.clone(),
                detail: format!(
                    "name the kernel file vmlinuz-<release>, or give the one release's module \
                     directory (none, or several, in {})",
                    modules.display()
                ),
            })?
        };
        if !modules_dir.join("modules.dep").is_file() {
            return Err(ImageError::Kernel {
                path: image,
                detail: format!("no modules.dep in {}", modules_dir.display()),
            });
        }
        let version = modules_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Kernel {
            image,
            version,
            modules_dir,
        })
    }

    /// Resolves `names` and their dependencies into load order. Built-in modules are skipped;
    /// an unknown module is an error.
    pub fn resolve(&self, names: &[String]) -> Result<Vec<KernelModule>> {
        let dep_path = self.modules_dir.join("modules.dep");
        let dep_text = fs::read_to_string(&dep_path).map_err(ImageError::read(&dep_path))?;
        let builtin_path = self.modules_dir.join("modules.builtin");
        let builtin_text = fs::read_to_string(&builtin_path).unwrap_or_default();
        resolve_from(&dep_text, &builtin_text, names, &self.version)
    }
}

fn module_name(relative: &str) -> String {
    let base = relative.rsplit('/').next().unwrap_or(relative);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

/// Pure resolution over the text of `modules.dep` and `modules.builtin`.
pub fn resolve_from(
    modules_dep: &str,
    modules_builtin: &str,
    names: &[String],
    kernel_version: &str,
) -> Result<Vec<KernelModule>> {
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in modules_dep.lines() {
        let Some((module, rest)) = line.split_once(':') else {
            continue;
        };
        let module = module.trim();
        let list = rest.split_whitespace().map(module_name).collect();
        deps.insert(module_name(module), (module.to_owned(), list));
    }
    let builtin: BTreeSet<String> = modules_builtin
        .lines()
        .map(module_name)
        .filter(|n| !n.is_empty())
        .collect();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for name in names {
        visit(
            &name.replace('-', "_"),
            &deps,
            &builtin,
            &mut seen,
            &mut order,
            kernel_version,
            0,
        )?;
    }
    Ok(order)
}

fn visit(
    name: &str,
    deps: &BTreeMap<String, (String, Vec<String>)>,
    builtin: &BTreeSet<String>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<KernelModule>,
    kernel_version: &str,
    depth: usize,
) -> Result<()> {
    if seen.contains(name) {
        return Ok(());
    }
    if depth > 64 {
        return Err(ImageError::KernelModule {
            module: name.to_owned(),
            kernel_version: kernel_version.to_owned(),
            detail: "dependency chain too deep (cycle in modules.dep?)".into(),
        });
    }
    let Some((relative, needs)) = deps.get(name) else {
        if builtin.contains(name) {
            seen.insert(name.to_owned());
            return Ok(());
        }
        return Err(ImageError::KernelModule {
            module: name.to_owned(),
            kernel_version: kernel_version.to_owned(),
            detail: "neither in modules.dep nor built in".into(),
        });
    };
    for need in needs {
        visit(need, deps, builtin, seen, order, kernel_version, depth + 1)?;
    }
    seen.insert(name.to_owned());
    order.push(KernelModule {
        name: name.to_owned(),
        relative: relative.clone(),
    });
    Ok(())
}

/// Modules the initramfs carries and loads before it looks for the root partition: the
/// board's `always` group (its disk controller's drivers when they are modules: virtio-blk
/// on QEMU) and what the root filesystem is read with. Built-ins are dropped by
/// [`Kernel::resolve`].
pub fn initramfs_modules(plan: &Plan) -> Vec<String> {
    let mut wanted = plan.board.modules.always.clone();
    wanted.push("squashfs".to_owned());
    wanted
}

/// Modules the plan's components need at run time (loaded from the rootfs, after it is
/// mounted), from the board's module groups (`board.modules`): the NIC drivers when a
/// component owns the network, the TPM interface drivers when one owns a `/dev/tpm*` node.
/// Built-ins are dropped by [`Kernel::resolve`].
pub fn plan_modules(plan: &Plan) -> Vec<String> {
    let groups = &plan.board.modules;
    let mut wanted: BTreeSet<&str> = BTreeSet::new();
    for component in plan.components.values() {
        if component.devices.network {
            wanted.extend(groups.network.iter().map(String::as_str));
        }
        if component
            .devices
            .nodes
            .iter()
            .any(|n| n.starts_with("/dev/tpm"))
        {
            wanted.extend(groups.tpm.iter().map(String::as_str));
        }
    }
    wanted.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/fs/squashfs/squashfs.ko:\n\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
kernel/net/core/failover.ko:\n";
    const BUILTIN: &str = "kernel/drivers/char/tpm/tpm_tis.ko\n";

    fn gateway_plan() -> Plan {
        Plan::from_bytes(include_bytes!(
            "../../system-config/tests/golden/gateway.plan.json"
        ))
        .unwrap()
    }

    #[test]
    fn plan_modules_come_from_the_board_groups_the_plan_needs() {
        let mut plan = gateway_plan();
        assert_eq!(
            plan_modules(&plan),
            ["tpm_crb", "tpm_tis", "virtio_net", "virtio_pci"]
        );

        plan.board.modules.always = vec!["virtio_blk".to_owned()];
        for component in plan.components.values_mut() {
            component.devices.network = false;
        }
        assert_eq!(plan_modules(&plan), ["tpm_crb", "tpm_tis"]);
        assert_eq!(initramfs_modules(&plan), ["virtio_blk", "squashfs"]);

        plan.board.modules = Default::default();
        assert!(plan_modules(&plan).is_empty());
    }

    #[test]
    fn dependencies_come_first_and_builtins_are_skipped() {
        let names = vec![
            "virtio-net".to_owned(),
            "tpm_tis".to_owned(),
            "squashfs".to_owned(),
        ];
        let order = resolve_from(DEP, BUILTIN, &names, "6.1").unwrap();
        let names: Vec<_> = order.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["failover", "net_failover", "virtio_net", "squashfs"]
        );
        assert_eq!(order[2].relative, "kernel/drivers/net/virtio_net.ko");
    }

    #[test]
    fn unknown_module_is_an_error_naming_it() {
        let err = resolve_from(DEP, BUILTIN, &["nope".to_owned()], "6.1").err();
        match err {
            Some(ImageError::KernelModule { module, .. }) => assert_eq!(module, "nope"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn kernel_must_exist_and_be_named_by_release() {
        let dir = tempfile::tempdir().unwrap();
        let err = Kernel::locate("vmlinuz-9.9", dir.path(), dir.path()).err();
        assert!(matches!(err, Some(ImageError::Kernel { .. })));
        fs::write(dir.path().join("bzImage"), "k").unwrap();
        let err = Kernel::locate("bzImage", dir.path(), dir.path()).err();
        assert!(
            matches!(err, Some(ImageError::Kernel { detail, .. }) if detail.contains("vmlinuz-"))
        );
    }

    /// Nix lays a kernel out as `bzImage` and `lib/modules/<release>`: the release is the
    /// modules root's only one, or the directory given; `vmlinuz-<release>` picks among several.
    #[test]
    fn release_comes_from_the_file_name_or_the_modules_directory() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("bzImage");
        fs::write(&kernel, "k").unwrap();
        let root = dir.path().join("lib/modules");
        for release in ["6.1.0-1-test", "6.1.0-2-test"] {
            fs::create_dir_all(root.join(release)).unwrap();
            fs::write(root.join(release).join("modules.dep"), "").unwrap();
        }
        let one = Kernel::at(&kernel, &root.join("6.1.0-2-test")).unwrap();
        assert_eq!(one.version, "6.1.0-2-test");
        let err = Kernel::at(&kernel, &root).err();
        assert!(
            matches!(err, Some(ImageError::Kernel { detail, .. }) if detail.contains("several"))
        );
        fs::remove_dir_all(root.join("6.1.0-1-test")).unwrap();
        let only = Kernel::at(&kernel, &root).unwrap();
        assert_eq!(only.version, "6.1.0-2-test");
        assert_eq!(only.modules_dir, root.join("6.1.0-2-test"));
        let named = dir.path().join("vmlinuz-6.1.0-1-test");
        fs::write(&named, "k").unwrap();
        let err = Kernel::at(&named, &root).err();
        assert!(
            matches!(err, Some(ImageError::Kernel { detail, .. }) if detail.contains("no modules.dep"))
        );
    }
}
