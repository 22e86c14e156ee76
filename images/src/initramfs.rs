//! The initramfs: a busybox `/init` script that loads the modules needed to read the root
//! filesystem, finds the partition the kernel command line names (`root=PARTLABEL=rootfs-a`,
//! chosen by GRUB per slot), mounts it read-only, loads the kernel modules the plan needs
//! (listed by the builder in the rootfs' `lib/modules/<release>/testudo.load`) and
//! `switch_root`s into `testudo-init`, which mounts the data partition
//! (`testudo.data=PARTLABEL=data`) itself.
//!
//! Written as a cpio "newc" archive by this module directly: entries sorted by path, owner
//! 0:0, mtime 0, inode numbers assigned in order, so the archive depends only on its content.
//! It is left uncompressed: it is stored inside the compressed rootfs anyway.

use std::collections::BTreeMap;

use testudo_plan::layout::{cmdline, rootfs};

/// The program the initramfs hands over to, inside the mounted rootfs.
pub const INIT_PATH: &str = rootfs::INIT;

/// One entry of a cpio archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpioEntry {
    /// A directory (mode 0755).
    Dir,
    /// A regular file with its permission bits and content.
    File { mode: u32, data: Vec<u8> },
    /// A symbolic link to `target`.
    Symlink { target: String },
    /// A character device node (mode 0600).
    CharDevice { major: u32, minor: u32 },
}

/// A cpio archive being assembled: paths (without leading `/`) to entries, kept sorted.
#[derive(Debug, Clone, Default)]
pub struct Cpio {
    entries: BTreeMap<String, CpioEntry>,
}

impl Cpio {
    /// An empty archive.
    pub fn new() -> Self {
        Cpio::default()
    }

    /// Adds (or replaces) an entry, creating its parent directories.
    pub fn add(&mut self, path: &str, entry: CpioEntry) {
        let path = path.trim_start_matches('/').to_owned();
        let mut parent = String::new();
        for part in path
            .split('/')
            .take(path.split('/').count().saturating_sub(1))
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            self.entries.entry(parent.clone()).or_insert(CpioEntry::Dir);
        }
        self.entries.insert(path, entry);
    }

    /// Serialises the archive in the "newc" format with its trailer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (index, (path, entry)) in self.entries.iter().enumerate() {
            let (mode, data): (u32, &[u8]) = match entry {
                CpioEntry::Dir => (0o040_755, &[]),
                CpioEntry::File { mode, data } => (0o100_000 | (mode & 0o7777), data),
                CpioEntry::Symlink { target } => (0o120_777, target.as_bytes()),
                CpioEntry::CharDevice { .. } => (0o020_600, &[]),
            };
            let (rmajor, rminor) = match entry {
                CpioEntry::CharDevice { major, minor } => (*major, *minor),
                _ => (0, 0),
            };
            let nlink = if matches!(entry, CpioEntry::Dir) {
                2
            } else {
                1
            };
            write_header(
                &mut out,
                index as u32 + 1,
                mode,
                nlink,
                data.len() as u32,
                (rmajor, rminor),
                path,
            );
            out.extend_from_slice(data);
            pad4(&mut out);
        }
        write_header(&mut out, 0, 0, 1, 0, (0, 0), "TRAILER!!!");
        out
    }
}

fn write_header(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
    name: &str,
) {
    let namesize = name.len() as u32 + 1;
    let fields = [
        ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// A busybox `sh` function (busybox at `$bb`): `find_part NAME` prints `/dev/<name>` of the
/// partition whose GPT name is NAME, waiting up to 10 s for it (no udev in an initramfs).
pub const FIND_PART: &str = r#"# Prints /dev/<name> of the partition whose GPT name is $1, waiting up to 10 s for it.
find_part() {
  i=0
  while [ "$i" -lt 200 ]; do
    for u in /sys/class/block/*/uevent; do
      if $bb grep -qx "PARTNAME=$1" "$u"; then
        echo "/dev/$($bb sed -n 's/^DEVNAME=//p' "$u")"
        return 0
      fi
    done
    $bb sleep 0.05
    i=$((i + 1))
  done
  return 1
}
"#;

/// The `/init` script. `modules` are loaded in order from `/lib/modules/<name>.ko`.
pub fn init_script(modules: &[String]) -> String {
    let module_list = modules.join(" ");
    let slot_word = cmdline::SLOT;
    let modules_dir = rootfs::MODULES;
    let load_list = rootfs::MODULE_LOAD_LIST;
    let data_word = cmdline::DATA_PARTITION;
    format!(
        r#"#!/bin/busybox sh
# testudo initramfs: mount the rootfs of the slot GRUB chose (root=PARTLABEL=...) read-only
# and hand over to {INIT_PATH}. Generated by testudo-images.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
fail() {{ echo "testudo-initramfs: $*"; $bb sleep 5; $bb reboot -f; }}
for m in {module_list}; do
  $bb insmod "/lib/modules/$m.ko" || fail "cannot load kernel module $m"
done
root=""
slot=""
for w in $($bb cat /proc/cmdline); do
  case "$w" in
    root=PARTLABEL=*) root="${{w#root=PARTLABEL=}}" ;;
    {slot_word}*) slot="${{w#{slot_word}}}" ;;
  esac
done
[ -n "$root" ] || fail "no root=PARTLABEL=... on the kernel command line"
{FIND_PART}dev="$(find_part "$root")" || fail "no partition labelled $root"
$bb mkdir -p /newroot
$bb mount -t squashfs -o ro "$dev" /newroot || fail "cannot mount $dev ($root)"
echo "testudo-initramfs: slot $slot, rootfs $root on $dev"
# Kernel modules the plan needs, listed by the image builder in load order; loaded here so
# no component ever needs the right to load modules.
load="/newroot{modules_dir}/$($bb uname -r)/{load_list}"
if [ -f "$load" ]; then
  for m in $($bb cat "$load"); do
    $bb insmod "/newroot{modules_dir}/$($bb uname -r)/$m" || echo "testudo-initramfs: cannot load $m"
  done
fi
# The data partition ({data_word}...) is mounted by testudo-init itself.
for d in dev proc sys; do $bb mount --move "/$d" "/newroot/$d"; done
exec $bb switch_root /newroot {INIT_PATH}
"#
    )
}

/// Builds the initramfs archive from busybox (static) and the module files, in load order.
pub fn build(busybox: &[u8], modules: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut cpio = Cpio::new();
    for dir in ["dev", "proc", "sys", "newroot", "lib/modules"] {
        cpio.add(dir, CpioEntry::Dir);
    }
    cpio.add("dev/console", CpioEntry::CharDevice { major: 5, minor: 1 });
    cpio.add(
        "bin/busybox",
        CpioEntry::File {
            mode: 0o755,
            data: busybox.to_vec(),
        },
    );
    cpio.add(
        "bin/sh",
        CpioEntry::Symlink {
            target: "busybox".into(),
        },
    );
    let names: Vec<String> = modules.iter().map(|(name, _)| name.clone()).collect();
    for (name, data) in modules {
        cpio.add(
            &format!("lib/modules/{name}.ko"),
            CpioEntry::File {
                mode: 0o644,
                data: data.clone(),
            },
        );
    }
    cpio.add(
        "init",
        CpioEntry::File {
            mode: 0o755,
            data: init_script(&names).into_bytes(),
        },
    );
    cpio.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_is_sorted_with_parents_and_trailer() {
        let mut cpio = Cpio::new();
        cpio.add(
            "z",
            CpioEntry::File {
                mode: 0o644,
                data: b"hello".to_vec(),
            },
        );
        cpio.add(
            "a/b/c",
            CpioEntry::Symlink {
                target: "../z".into(),
            },
        );
        let bytes = cpio.to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        let a = text.find("a\0").unwrap();
        let ab = text.find("a/b\0").unwrap();
        let abc = text.find("a/b/c\0").unwrap();
        let z = text.find("z\0").unwrap();
        assert!(a < ab && ab < abc && abc < z);
        assert!(text.ends_with("TRAILER!!!\0\0\0\0") || text.contains("TRAILER!!!"));
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.starts_with(b"070701"));
    }

    #[test]
    fn same_content_gives_same_bytes_whatever_the_insertion_order() {
        let mut one = Cpio::new();
        one.add("x", CpioEntry::Dir);
        one.add(
            "y",
            CpioEntry::File {
                mode: 0o600,
                data: vec![1, 2, 3],
            },
        );
        let mut two = Cpio::new();
        two.add(
            "y",
            CpioEntry::File {
                mode: 0o600,
                data: vec![1, 2, 3],
            },
        );
        two.add("x", CpioEntry::Dir);
        assert_eq!(one.to_bytes(), two.to_bytes());
    }

    #[test]
    fn init_script_loads_modules_and_hands_over_to_testudo_init() {
        let script = init_script(&["squashfs".into()]);
        assert!(script.contains("for m in squashfs; do"));
        assert!(script.contains("switch_root /newroot /usr/lib/testudo/testudo-init"));
        // The data partition is testudo-init's to mount, not the initramfs'.
        assert!(!script.contains("/newroot/data"));
        assert!(script.starts_with("#!/bin/busybox sh\n"));
    }
}
