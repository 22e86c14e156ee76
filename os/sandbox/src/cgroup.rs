//! cgroup v2 for component limits: one tree per supervisor (`<cgroup2 mount>/<name>/`) with
//! the memory, pids and (where present) cpu controllers enabled for its children, and one
//! child cgroup per component holding its `memory.max`, `pids.max` and `cpu.max`.
//!
//! The setup follows the kernel's rules: a controller can be enabled in a cgroup's
//! `cgroup.subtree_control` only if its parent enabled it, and a non-root cgroup that holds
//! processes cannot enable controllers for its children ("no internal processes"). So the
//! tree is a fresh cgroup that never holds a process itself, directly below the cgroup2
//! mount, whose `subtree_control` must offer (or accept) memory and pids. When anything
//! prevents that (cgroup v1 host, read-only or undelegated cgroupfs, an unprivileged caller,
//! a container whose root cgroup holds processes) components get rlimits only, and the
//! reason is reported. Every filesystem operation goes through [`CgroupFs`], so the setup
//! logic is unit-tested against a model of those rules.

use std::io;
use std::path::{Path, PathBuf};

use crate::CgroupError;

/// Controllers the tree must have; without them, rlimits only.
const REQUIRED: [&str; 2] = ["memory", "pids"];

/// The cgroupfs operations the setup needs.
pub trait CgroupFs {
    /// Reads an interface file.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// Writes an interface file.
    fn write(&self, path: &Path, content: &str) -> io::Result<()>;
    /// Creates a cgroup (an existing one is fine).
    fn mkdir(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty cgroup.
    fn rmdir(&self, path: &Path) -> io::Result<()>;
}

/// The real cgroupfs.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealCgroupFs;

impl CgroupFs for RealCgroupFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, content: &str) -> io::Result<()> {
        std::fs::write(path, content)
    }

    fn mkdir(&self, path: &Path) -> io::Result<()> {
        match std::fs::create_dir(path) {
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }

    fn rmdir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
}

/// Which limit files a component cgroup supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Controllers {
    /// `memory.max`.
    pub memory: bool,
    /// `memory.swap.max` (swap accounting compiled in).
    pub swap: bool,
    /// `pids.max`.
    pub pids: bool,
    /// `cpu.max`.
    pub cpu: bool,
}

/// Where one component's process goes and which limit files its cgroup has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPlacement {
    /// The component's cgroup directory (created by [`spawn`](crate::spawn)).
    pub dir: PathBuf,
    /// Controllers enabled for it.
    pub controllers: Controllers,
}

/// The supervisor's cgroup tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupTree {
    dir: PathBuf,
    controllers: Controllers,
}

fn words(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

/// The mount point of the cgroup2 filesystem in `/proc/self/mountinfo` text, if any.
pub fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        if fs.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        mount.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// This process's view of the cgroup2 mount, if one is mounted.
pub fn cgroup2_mount() -> Option<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .as_deref()
        .and_then(parse_cgroup2_mount)
}

impl CgroupTree {
    /// Creates `<mount>/<name>` with memory, pids and (if available) cpu enabled for its
    /// children. The error is the reason components get rlimits only.
    pub fn create(fs: &dyn CgroupFs, mount: &Path, name: &str) -> Result<CgroupTree, CgroupError> {
        let available = fs
            .read(&mount.join("cgroup.controllers"))
            .map_err(|source| CgroupError::ReadControllers {
                mount: mount.to_owned(),
                source,
            })?;
        let available = words(&available);
        if let Some(missing) = REQUIRED.iter().find(|c| !available.contains(c)) {
            return Err(CgroupError::ControllerMissing {
                controller: missing,
                mount: mount.to_owned(),
            });
        }
        let parent_control = mount.join("cgroup.subtree_control");
        let enabled =
            fs.read(&parent_control)
                .map_err(|source| CgroupError::ReadSubtreeControl {
                    path: parent_control.clone(),
                    source,
                })?;
        let enabled = words(&enabled);
        let mut wanted: Vec<&str> = REQUIRED.to_vec();
        if available.contains(&"cpu") {
            wanted.push("cpu");
        }
        let mut parent_has = Vec::new();
        for controller in wanted {
            if enabled.contains(&controller) {
                parent_has.push(controller);
                continue;
            }
            match fs.write(&parent_control, &format!("+{controller}")) {
                Ok(()) => parent_has.push(controller),
                Err(source) if REQUIRED.contains(&controller) => {
                    return Err(CgroupError::EnableController {
                        controller,
                        path: parent_control,
                        source,
                    })
                }
                Err(_) => {}
            }
        }
        let dir = mount.join(name);
        fs.mkdir(&dir).map_err(|source| CgroupError::CreateTree {
            path: dir.clone(),
            source,
        })?;
        let control = dir.join("cgroup.subtree_control");
        let mut controllers = Controllers::default();
        for controller in parent_has {
            match fs.write(&control, &format!("+{controller}")) {
                Ok(()) => match controller {
                    "memory" => controllers.memory = true,
                    "pids" => controllers.pids = true,
                    _ => controllers.cpu = true,
                },
                Err(source) if REQUIRED.contains(&controller) => {
                    let _ = fs.rmdir(&dir);
                    return Err(CgroupError::EnableController {
                        controller,
                        path: control,
                        source,
                    });
                }
                Err(_) => {}
            }
        }
        controllers.swap = fs.read(&dir.join("memory.swap.max")).is_ok();
        Ok(CgroupTree { dir, controllers })
    }

    /// The tree's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Controllers its children get.
    pub fn controllers(&self) -> Controllers {
        self.controllers
    }

    /// Short description for reports: `cgroup v2 at DIR (memory pids cpu)`.
    pub fn describe(&self) -> String {
        let c = self.controllers;
        let names: Vec<&str> = [
            (c.memory, "memory"),
            (c.swap, "memory.swap"),
            (c.pids, "pids"),
            (c.cpu, "cpu"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
        format!("cgroup v2 at {} ({})", self.dir.display(), names.join(" "))
    }

    /// Where component `name` goes.
    pub fn placement(&self, name: &str) -> CgroupPlacement {
        CgroupPlacement {
            dir: self.dir.join(name),
            controllers: self.controllers,
        }
    }

    /// Removes the components' cgroups (after their processes were reaped) and the tree.
    /// A cgroup the kernel still reports busy is retried briefly.
    pub fn remove<'a>(
        &self,
        fs: &dyn CgroupFs,
        components: impl IntoIterator<Item = &'a str>,
    ) -> io::Result<()> {
        let mut dirs: Vec<PathBuf> = components.into_iter().map(|c| self.dir.join(c)).collect();
        dirs.push(self.dir.clone());
        let mut last = Ok(());
        for dir in dirs {
            for attempt in 0..50 {
                match fs.rmdir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 49 => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(e) => {
                        last = Err(e);
                        break;
                    }
                }
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::{BTreeMap, BTreeSet};

    /// A model of cgroupfs's rules: `subtree_control` accepts `+c` only if the parent enabled
    /// `c` (or it is the root and `c` is in `cgroup.controllers`), and refuses (EBUSY) in a
    /// non-root cgroup that holds processes.
    #[derive(Default)]
    struct ModelFs {
        root: PathBuf,
        root_controllers: Vec<&'static str>,
        enabled: RefCell<BTreeMap<PathBuf, BTreeSet<String>>>,
        populated: BTreeSet<PathBuf>,
        read_only: bool,
        swap: bool,
        writes: RefCell<Vec<String>>,
    }

    impl ModelFs {
        fn new(root_controllers: &[&'static str], root_enabled: &[&str]) -> ModelFs {
            let root = PathBuf::from("/sys/fs/cgroup");
            let mut enabled = BTreeMap::new();
            enabled.insert(
                root.clone(),
                root_enabled.iter().map(|s| s.to_string()).collect(),
            );
            ModelFs {
                root,
                root_controllers: root_controllers.to_vec(),
                enabled: RefCell::new(enabled),
                swap: true,
                ..ModelFs::default()
            }
        }
        fn available(&self, dir: &Path) -> Vec<String> {
            if dir == self.root {
                self.root_controllers
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                let parent = dir.parent().unwrap_or(&self.root);
                self.enabled
                    .borrow()
                    .get(parent)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default()
            }
        }
    }

    /// The error and its sources, as the supervisor reports them.
    fn chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }

    fn err(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    impl CgroupFs for ModelFs {
        fn read(&self, path: &Path) -> io::Result<String> {
            let dir = path.parent().ok_or_else(|| err(libc::ENOENT))?;
            if !self.enabled.borrow().contains_key(dir) {
                return Err(err(libc::ENOENT));
            }
            match path.file_name().and_then(|n| n.to_str()) {
                Some("cgroup.controllers") => Ok(self.available(dir).join(" ")),
                Some("cgroup.subtree_control") => Ok(self.enabled.borrow()[dir]
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")),
                Some("memory.swap.max")
                    if self.swap && self.available(dir).iter().any(|c| c == "memory") =>
                {
                    Ok("max".into())
                }
                _ => Err(err(libc::ENOENT)),
            }
        }
        fn write(&self, path: &Path, content: &str) -> io::Result<()> {
            self.writes
                .borrow_mut()
                .push(format!("{} {content}", path.display()));
            if self.read_only {
                return Err(err(libc::EROFS));
            }
            let dir = path.parent().ok_or_else(|| err(libc::ENOENT))?;
            if path.file_name().and_then(|n| n.to_str()) != Some("cgroup.subtree_control") {
                return Err(err(libc::EINVAL));
            }
            let controller = content.strip_prefix('+').ok_or_else(|| err(libc::EINVAL))?;
            if !self.available(dir).iter().any(|c| c == controller) {
                return Err(err(libc::ENOENT));
            }
            if dir != self.root && self.populated.contains(dir) {
                return Err(err(libc::EBUSY));
            }
            self.enabled
                .borrow_mut()
                .entry(dir.to_owned())
                .or_default()
                .insert(controller.to_owned());
            Ok(())
        }
        fn mkdir(&self, path: &Path) -> io::Result<()> {
            if self.read_only {
                return Err(err(libc::EROFS));
            }
            self.enabled
                .borrow_mut()
                .entry(path.to_owned())
                .or_default();
            Ok(())
        }
        fn rmdir(&self, path: &Path) -> io::Result<()> {
            self.enabled
                .borrow_mut()
                .remove(path)
                .map(|_| ())
                .ok_or_else(|| err(libc::ENOENT))
        }
    }

    #[test]
    fn pid1_root_gets_every_controller_enabled_down_to_the_components() {
        // As PID 1 on a freshly mounted cgroup2: nothing enabled yet, root may enable.
        let fs = ModelFs::new(&["cpuset", "cpu", "io", "memory", "pids"], &[]);
        let tree = CgroupTree::create(&fs, &fs.root, "testudo-1").expect("tree");
        assert_eq!(
            tree.controllers(),
            Controllers {
                memory: true,
                swap: true,
                pids: true,
                cpu: true
            }
        );
        assert_eq!(
            tree.describe(),
            "cgroup v2 at /sys/fs/cgroup/testudo-1 (memory memory.swap pids cpu)"
        );
        let placement = tree.placement("log");
        assert_eq!(placement.dir, Path::new("/sys/fs/cgroup/testudo-1/log"));
        fs.mkdir(&placement.dir).expect("component cgroup");
        // The component cgroup now offers the controllers its limit files belong to.
        assert_eq!(
            fs.read(&placement.dir.join("cgroup.controllers"))
                .expect("controllers"),
            "cpu memory pids"
        );
        tree.remove(&fs, ["log"]).expect("removed");
        assert!(fs.read(&tree.dir().join("cgroup.controllers")).is_err());
    }

    #[test]
    fn missing_cpu_is_tolerated_missing_memory_is_not() {
        let fs = ModelFs::new(&["memory", "pids"], &["memory", "pids"]);
        let tree = CgroupTree::create(&fs, &fs.root, "t").expect("tree");
        assert!(tree.controllers().memory && tree.controllers().pids);
        assert!(!tree.controllers().cpu);

        let fs = ModelFs::new(&["cpu", "pids"], &[]);
        let reason = CgroupTree::create(&fs, &fs.root, "t").expect_err("no memory");
        let reason = chain(&reason);
        assert!(
            reason.contains("memory controller is not available"),
            "{reason}"
        );
    }

    #[test]
    fn a_root_with_processes_that_cannot_enable_controllers_means_rlimits() {
        // A container's namespaced root: not the real root, holds processes, nothing enabled.
        let mut fs = ModelFs::new(&["memory", "pids", "cpu"], &[]);
        fs.root = PathBuf::from("/sys/fs/cgroup");
        let container_root = PathBuf::from("/sys/fs/cgroup/ctr");
        fs.enabled
            .borrow_mut()
            .insert(container_root.clone(), BTreeSet::new());
        if let Some(root) = fs.enabled.borrow_mut().get_mut(&fs.root) {
            root.extend(["memory".to_string(), "pids".to_string()]);
        }
        fs.populated.insert(container_root.clone());
        let reason = CgroupTree::create(&fs, &container_root, "t").expect_err("EBUSY");
        let reason = chain(&reason);
        assert!(
            reason.contains("enabling memory in /sys/fs/cgroup/ctr/cgroup.subtree_control"),
            "{reason}"
        );
    }

    #[test]
    fn a_read_only_cgroupfs_means_rlimits_with_the_reason() {
        let mut fs = ModelFs::new(&["memory", "pids"], &["memory", "pids"]);
        fs.read_only = true;
        let reason = CgroupTree::create(&fs, &fs.root, "t").expect_err("read-only");
        let reason = chain(&reason);
        assert!(reason.starts_with("creating /sys/fs/cgroup/t"), "{reason}");
    }

    #[test]
    fn no_cgroup2_mount_is_reported() {
        let fs = ModelFs::new(&[], &[]);
        let reason = CgroupTree::create(&fs, Path::new("/nowhere"), "t").expect_err("no mount");
        let reason = chain(&reason);
        assert!(
            reason.starts_with("no cgroup v2 controllers at /nowhere"),
            "{reason}"
        );
    }

    #[test]
    fn mountinfo_parsing_finds_cgroup2_and_ignores_v1() {
        let text = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(text),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(parse_cgroup2_mount("garbage\n - \n"), None);
    }
}
