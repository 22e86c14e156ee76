//! The persistent data partition: as PID 1, testudo-init finds it by its GPT partition name
//! and mounts it (ext4, read-write, `nosuid,nodev`) at the data directory before any
//! component starts. The name comes from the kernel command line the image's GRUB script
//! writes (`testudo.data=PARTLABEL=<name>`); the image builder names it `data`.
//!
//! There is no udev in the image: partitions are found by scanning
//! `/sys/class/block/*/uevent` for `PARTNAME=<name>`, waiting a little for slow disks. The
//! OS calls sit behind [`BlockDevices`], so the logic is tested without root or disks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::InitError;

/// The kernel command line word that names the data partition.
pub const CMDLINE_KEY: &str = testudo_plan::layout::cmdline::DATA_PARTITION;

/// How long to wait for the partition to appear, and how often to look.
pub const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// What mounting the data partition needs from the OS.
pub trait BlockDevices {
    /// The kernel command line (`/proc/cmdline`).
    fn cmdline(&self) -> std::io::Result<String>;
    /// Every block device's `uevent` text (`/sys/class/block/*/uevent`).
    fn uevents(&self) -> std::io::Result<Vec<String>>;
    /// Mounts the ext4 file system on `device` at `target`, read-write, nosuid, nodev.
    fn mount_ext4(&self, device: &Path, target: &Path) -> std::io::Result<()>;
    /// Waits `duration` before looking again.
    fn sleep(&self, duration: Duration);
}

/// The data partition's GPT name from the kernel command line, if the image names one.
pub fn data_label(cmdline: &str) -> Option<&str> {
    cmdline
        .split_whitespace()
        .find_map(|word| word.strip_prefix(CMDLINE_KEY))
        .filter(|label| !label.is_empty())
}

/// `/dev/<DEVNAME>` of the partition whose uevent says `PARTNAME=<label>`.
pub fn find_partition(uevents: &[String], label: &str) -> Option<PathBuf> {
    uevents.iter().find_map(|text| {
        let mut lines = text.lines();
        let named = lines
            .clone()
            .any(|l| l.strip_prefix("PARTNAME=") == Some(label));
        let device = lines.find_map(|l| l.strip_prefix("DEVNAME="))?;
        (named && !device.is_empty() && !device.contains(".."))
            .then(|| Path::new("/dev").join(device))
    })
}

/// Mounts the data partition named on the kernel command line at `target`. Returns the
/// label and device mounted, or None when the command line names no data partition.
pub fn mount_data(
    os: &dyn BlockDevices,
    target: &Path,
) -> Result<Option<(String, PathBuf)>, InitError> {
    let cmdline = os.cmdline().map_err(|source| InitError::DataPartition {
        step: "reading /proc/cmdline",
        label: String::new(),
        source,
    })?;
    let Some(label) = data_label(&cmdline) else {
        return Ok(None);
    };
    let mut waited = Duration::ZERO;
    let device = loop {
        let uevents = os.uevents().map_err(|source| InitError::DataPartition {
            step: "listing block devices",
            label: label.to_owned(),
            source,
        })?;
        if let Some(device) = find_partition(&uevents, label) {
            break device;
        }
        if waited >= WAIT {
            return Err(InitError::DataPartition {
                step: "finding the partition",
                label: label.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no block device with PARTNAME={label} after {WAIT:?}"),
                ),
            });
        }
        os.sleep(POLL);
        waited += POLL;
    };
    std::fs::create_dir_all(target).map_err(|source| InitError::DataPartition {
        step: "creating the mount point",
        label: label.to_owned(),
        source,
    })?;
    os.mount_ext4(&device, target)
        .map_err(|source| InitError::DataPartition {
            step: "mounting",
            label: label.to_owned(),
            source,
        })?;
    Ok(Some((label.to_owned(), device)))
}

/// The running kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostBlockDevices;

impl BlockDevices for HostBlockDevices {
    fn cmdline(&self) -> std::io::Result<String> {
        std::fs::read_to_string("/proc/cmdline")
    }

    fn uevents(&self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/sys/class/block")? {
            if let Ok(text) = std::fs::read_to_string(entry?.path().join("uevent")) {
                out.push(text);
            }
        }
        Ok(out)
    }

    fn mount_ext4(&self, device: &Path, target: &Path) -> std::io::Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let cstr = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        };
        let (source, target) = (cstr(device)?, cstr(target)?);
        // SAFETY: valid NUL-terminated strings that outlive the call; no data argument.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                c"ext4".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                std::ptr::null(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    struct FakeDevices {
        cmdline: String,
        /// uevents returned on the n-th look (the last one repeats).
        looks: Vec<Vec<String>>,
        calls: RefCell<usize>,
        mounted: RefCell<Vec<(PathBuf, PathBuf)>>,
        slept: RefCell<Duration>,
    }

    impl BlockDevices for FakeDevices {
        fn cmdline(&self) -> std::io::Result<String> {
            Ok(self.cmdline.clone())
        }
        fn uevents(&self) -> std::io::Result<Vec<String>> {
            let n = *self.calls.borrow();
            *self.calls.borrow_mut() += 1;
            Ok(self.looks[n.min(self.looks.len() - 1)].clone())
        }
        fn mount_ext4(&self, device: &Path, target: &Path) -> std::io::Result<()> {
            self.mounted
                .borrow_mut()
                .push((device.to_path_buf(), target.to_path_buf()));
            Ok(())
        }
        fn sleep(&self, duration: Duration) {
            *self.slept.borrow_mut() += duration;
        }
    }

    fn uevent(devname: &str, partname: Option<&str>) -> String {
        let mut text = format!("MAJOR=259\nMINOR=4\nDEVNAME={devname}\nDEVTYPE=partition\n");
        if let Some(name) = partname {
            text.push_str(&format!("PARTN=4\nPARTNAME={name}\n"));
        }
        text
    }

    fn fake(cmdline: &str, looks: Vec<Vec<String>>) -> FakeDevices {
        FakeDevices {
            cmdline: cmdline.into(),
            looks,
            calls: RefCell::new(0),
            mounted: RefCell::new(Vec::new()),
            slept: RefCell::new(Duration::ZERO),
        }
    }

    /// A fresh scratch directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "testudo-init-data-partition-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const CMDLINE: &str = "root=PARTLABEL=rootfs-a testudo.data=PARTLABEL=data console=ttyS0";

    #[test]
    fn the_label_comes_from_the_command_line() {
        assert_eq!(data_label(CMDLINE), Some("data"));
        assert_eq!(data_label("root=/dev/sda1 testudo.data=PARTLABEL="), None);
        assert_eq!(data_label("quiet"), None);
    }

    #[test]
    fn the_partition_is_found_by_gpt_name_even_when_it_appears_late() {
        let dir = scratch("late");
        let target = dir.join("data");
        let os = fake(
            CMDLINE,
            vec![
                vec![uevent("nvme0n1", None)],
                vec![
                    uevent("nvme0n1p1", Some("esp")),
                    uevent("nvme0n1p4", Some("data")),
                    uevent("nvme0n1p5", Some("database")),
                ],
            ],
        );
        let mounted = mount_data(&os, &target).unwrap();
        assert_eq!(
            mounted,
            Some(("data".to_owned(), PathBuf::from("/dev/nvme0n1p4")))
        );
        assert_eq!(
            *os.mounted.borrow(),
            [(PathBuf::from("/dev/nvme0n1p4"), target.clone())]
        );
        assert!(target.is_dir());
        assert_eq!(*os.slept.borrow(), POLL);
    }

    #[test]
    fn a_missing_partition_is_an_error_naming_it_after_waiting() {
        let dir = scratch("missing");
        let os = fake(CMDLINE, vec![vec![uevent("nvme0n1p1", Some("esp"))]]);
        let err = mount_data(&os, &dir.join("data")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`data`") && text.contains("finding"),
            "{text}"
        );
        assert!(*os.slept.borrow() >= WAIT);
        assert!(os.mounted.borrow().is_empty());
    }

    #[test]
    fn no_data_partition_on_the_command_line_mounts_nothing() {
        let dir = scratch("none");
        let os = fake("root=PARTLABEL=rootfs-a", vec![vec![]]);
        assert_eq!(mount_data(&os, &dir.join("data")).unwrap(), None);
        assert!(os.mounted.borrow().is_empty());
    }
}
