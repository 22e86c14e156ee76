//! The anchors of the OS-update benchmark, run in a guest built like the device: the same
//! kernel, QEMU machine, processor model (TCG), memory, virtio disk (a copy of the device's
//! as built) and user network to the same hub emulator. Its initramfs holds Debian's `curl` and
//! `sha256sum` and the workspace's `testudo` CLI with their shared libraries, and a script
//! that, per run, downloads the bundle onto the data partition with `curl`, hashes it with
//! `sha256sum` and installs it with `testudo update install` into slot B (the image's own
//! system.conf and keyring, the ESP mounted where the image mounts it). Each step's start is
//! a console line, timed on this host as it arrives, as the device's stages are.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testudo_images::initramfs::{Cpio, CpioEntry, FIND_PART};
use testudo_images::kernel::{self, Kernel};
use testudo_images::{binaries, HostTools};
use testudo_plan::{layout, Plan};

/// The longest the anchor guest may run.
const TIMEOUT: Duration = Duration::from_secs(1800);

/// Modules the guest loads beyond the image's own (its plan's initramfs and run-time modules:
/// the disk, the NIC): the ESP's filesystem with the code pages Debian's kernel mounts FAT
/// with by default.
const ESP_MODULES: &[&str] = &["vfat", "nls_cp437", "nls_utf8", "nls_ascii"];

/// What the anchor guest is given.
pub struct AnchorInputs<'a> {
    /// Scratch directory (the initramfs).
    pub work: &'a Path,
    /// A copy of the device's disk as built, the anchor guest's own (its slot B is written).
    pub disk: &'a Path,
    /// The image's rootfs (its system.conf and keyring are read from it).
    pub rootfs: &'a Path,
    /// The CA the hub's certificate chains to.
    pub ca: &'a Path,
    /// The bundle's URL, as the device is given it.
    pub url: &'a str,
    /// The host name in `url`, reached at the VM's host address (10.0.2.2).
    pub host: &'a str,
    /// Runs of download + hash + install.
    pub runs: usize,
    /// Guest memory, as the device's.
    pub memory_mib: u64,
}

/// Each run's step times.
#[derive(Debug, Default)]
pub struct AnchorTimes {
    /// `curl` of the bundle onto the data partition.
    pub download: Vec<Duration>,
    /// `sha256sum` of the downloaded file.
    pub hash: Vec<Duration>,
    /// `testudo update install` of the downloaded file.
    pub install: Vec<Duration>,
}

/// Boots the anchor guest and times its runs; fails showing its console if a step fails.
pub fn run(inputs: &AnchorInputs) -> AnchorTimes {
    let kernel = Kernel::locate("/vmlinuz", Path::new("/"), Path::new("/lib/modules")).unwrap();
    let initramfs = inputs.work.join("anchor-initramfs.cpio");
    std::fs::write(&initramfs, initramfs_bytes(inputs, &kernel).to_bytes()).unwrap();
    let lines = boot(inputs, &kernel.image, &initramfs);
    let console: Vec<&str> = lines.iter().map(|(_, line)| line.as_str()).collect();
    let console = console.join("\n");
    assert!(
        !console.contains("anchor: failed") && console.contains("anchor: end"),
        "the anchor guest failed:\n{console}"
    );
    let at = |marker: String| -> Instant {
        lines
            .iter()
            .find(|(_, line)| line.contains(&marker))
            .unwrap_or_else(|| panic!("no {marker:?} on the anchor's console:\n{console}"))
            .0
    };
    let mut times = AnchorTimes::default();
    for run in 1..=inputs.runs {
        let download = at(format!("anchor: run {run}: download"));
        let hash = at(format!("anchor: run {run}: hash"));
        let install = at(format!("anchor: run {run}: install"));
        let done = at(format!("anchor: run {run}: done"));
        times.download.push(hash - download);
        times.hash.push(install - hash);
        times.install.push(done - install);
    }
    times
}

/// Starts QEMU as `testudo vm run` starts the device (machine, processor, memory, virtio
/// disk, user network), with the host kernel and the anchor's initramfs instead of firmware
/// and GRUB; its console lines as they arrived, up to its power-off.
fn boot(inputs: &AnchorInputs, kernel: &Path, initramfs: &Path) -> Vec<(Instant, String)> {
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35,accel=tcg", "-cpu"])
        .arg(testudo_images::vm::QEMU_CPU)
        .arg("-m")
        .arg(inputs.memory_mib.to_string())
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .arg("-drive")
        .arg(format!(
            "if=none,id=disk0,format=raw,file={}",
            inputs.disk.display()
        ))
        .args(["-device", testudo_images::vm::QEMU_DISK_DEVICE])
        .args(["-netdev", "user,id=net0"])
        .args(["-device", "virtio-net-pci,netdev=net0,romfile="])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("qemu-system-x86_64 is needed: {e}"));
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let line = testudo_images::vm::clean_console_line(&line);
            sink.lock().unwrap().push((Instant::now(), line));
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the anchor guest did not power off within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap();
    let lines = lines.lock().unwrap().clone();
    lines
}

/// The initramfs: busybox, the modules, the three programs with their libraries, the
/// image's system.conf and keyring, the hub's CA and the script.
fn initramfs_bytes(inputs: &AnchorInputs, kernel: &Kernel) -> Cpio {
    let mut cpio = Cpio::new();
    for dir in ["proc", "sys", "tmp", "data", "lib/modules"] {
        cpio.add(dir, CpioEntry::Dir);
    }
    cpio.add(layout::rootfs::ESP_MOUNT, CpioEntry::Dir);
    cpio.add("dev/console", CpioEntry::CharDevice { major: 5, minor: 1 });
    add_file(
        &mut cpio,
        "bin/busybox",
        Path::new("/usr/bin/busybox"),
        0o755,
    );
    let plan = Plan::from_bytes(&file_in_squashfs(inputs.rootfs, layout::rootfs::PLAN)).unwrap();
    let mut names = kernel::initramfs_modules(&plan);
    names.extend(kernel::plan_modules(&plan));
    names.extend(ESP_MODULES.iter().map(|m| (*m).to_owned()));
    let modules = kernel.resolve(&names).unwrap();
    for module in &modules {
        add_file(
            &mut cpio,
            &format!("lib/modules/{}.ko", module.name),
            &kernel.modules_dir.join(&module.relative),
            0o644,
        );
    }
    let testudo = PathBuf::from(env!("CARGO_BIN_EXE_testudo"));
    for (name, program) in [
        ("curl", which("curl")),
        ("sha256sum", which("sha256sum")),
        ("testudo", testudo),
    ] {
        add_program(&mut cpio, name, &program);
    }
    for file in [
        layout::rootfs::RAUC_SYSTEM_CONF,
        layout::rootfs::RAUC_KEYRING,
    ] {
        cpio.add(
            file,
            CpioEntry::File {
                mode: 0o644,
                data: file_in_squashfs(inputs.rootfs, file),
            },
        );
    }
    add_file(&mut cpio, "ca.pem", inputs.ca, 0o644);
    let module_names: Vec<&str> = modules.iter().map(|m| m.name.as_str()).collect();
    cpio.add(
        "init",
        CpioEntry::File {
            mode: 0o755,
            data: init_script(inputs, &module_names).into_bytes(),
        },
    );
    cpio
}

/// The guest's `/init`: devices, modules, partitions by GPT name, the ESP and data
/// partition mounted where the image mounts them, the network as the board sets it, then
/// the runs, each step announced on the console.
fn init_script(inputs: &AnchorInputs, modules: &[&str]) -> String {
    use layout::partitions::{BY_NAME, DATA, ESP, ROOTFS_A, ROOTFS_B};
    let modules = modules.join(" ");
    let esp_mount = layout::rootfs::ESP_MOUNT;
    let data_mount = layout::DATA;
    let rauc_data = layout::RAUC_DATA;
    let (host, url, runs) = (inputs.host, inputs.url, inputs.runs);
    format!(
        r#"#!/bin/busybox sh
bb=/bin/busybox
fail() {{ echo "anchor: failed: $*"; $bb poweroff -f; }}
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
$bb mount -t tmpfs tmpfs /tmp
for m in {modules}; do $bb insmod "/lib/modules/$m.ko" || fail "insmod $m"; done
{FIND_PART}$bb mkdir -p {BY_NAME}
for label in {ESP} {ROOTFS_A} {ROOTFS_B} {DATA}; do
  node="$(find_part "$label")" || fail "no partition $label"
  $bb ln -s "$node" "{BY_NAME}/$label"
done
$bb mount -t vfat {BY_NAME}/{ESP} {esp_mount} || fail "mount the ESP"
$bb mount -t ext4 {BY_NAME}/{DATA} {data_mount} || fail "mount the data partition"
$bb mkdir -p {rauc_data}
i=0
while [ ! -e /sys/class/net/eth0 ] && [ "$i" -lt 200 ]; do $bb sleep 0.05; i=$((i + 1)); done
$bb ip link set lo up
$bb ip link set eth0 up || fail "no eth0"
$bb ip addr add 10.0.2.15/24 dev eth0
$bb ip route add default via 10.0.2.2
run=1
while [ "$run" -le {runs} ]; do
  echo "anchor: run $run: download"
  /bin/curl --silent --show-error --fail --cacert /ca.pem --resolve {host}:443:10.0.2.2 \
    -o {data_mount}/bundle.raucb "{url}" || fail "curl"
  echo "anchor: run $run: hash"
  /bin/sha256sum {data_mount}/bundle.raucb || fail "sha256sum"
  echo "anchor: run $run: install"
  /bin/testudo update --override-boot-slot A install {data_mount}/bundle.raucb 2>&1 || fail "testudo update install"
  echo "anchor: run $run: done"
  $bb rm {data_mount}/bundle.raucb
  $bb sync
  run=$((run + 1))
done
echo "anchor: end"
$bb umount {esp_mount} {data_mount}
$bb poweroff -f
"#
    )
}

/// Adds `program` as `bin/name` with every shared library it loads, at the path `ldd`
/// names.
fn add_program(cpio: &mut Cpio, name: &str, program: &Path) {
    add_file(cpio, &format!("bin/{name}"), program, 0o755);
    for library in binaries::shared_libraries(&HostTools::new(), program).unwrap() {
        add_file(cpio, library.to_str().unwrap(), &library, 0o755);
    }
}

fn add_file(cpio: &mut Cpio, path: &str, source: &Path, mode: u32) {
    let data = std::fs::read(source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
    cpio.add(path, CpioEntry::File { mode, data });
}

/// `program`'s path on this host.
fn which(program: &str) -> PathBuf {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| panic!("{program} is needed on this host"))
}

/// The content of `file` (absolute) in the squashfs image `rootfs`.
fn file_in_squashfs(rootfs: &Path, file: &str) -> Vec<u8> {
    let out = Command::new("unsquashfs")
        .arg("-cat")
        .arg(rootfs)
        .arg(file.trim_start_matches('/'))
        .output()
        .unwrap_or_else(|e| panic!("unsquashfs (squashfs-tools) is needed: {e}"));
    assert!(
        out.status.success(),
        "unsquashfs -cat {} {file}: {}",
        rootfs.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
