//! What the VM tests share: the workspace binaries an image is built from, running `testudo`,
//! building an example's image from a source root of the test's own, and a VM whose console
//! is read line by line while it runs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The daemons an image carries.
pub const BINARIES: &[&str] = &[
    "testudo-init",
    "testudo-log",
    "testudo-storage",
    "testudo-tpm",
    "testudo-net",
    "testudo-sensor",
    "testudo-agent",
    "testudo-updater",
    "testudo-wasm-host",
];

/// The repository.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Where the workspace's daemons are: next to `testudo` (as `cargo test --workspace` builds
/// them) or in `TESTUDO_IMAGE_BIN_DIRS` (colon-separated).
pub fn bin_dirs() -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = match std::env::var("TESTUDO_IMAGE_BIN_DIRS") {
        Ok(list) => list.split(':').map(PathBuf::from).collect(),
        Err(_) => vec![Path::new(env!("CARGO_BIN_EXE_testudo"))
            .parent()
            .unwrap()
            .to_path_buf()],
    };
    for name in BINARIES {
        assert!(
            dirs.iter().any(|d| d.join(name).is_file()),
            "{name} not found in {dirs:?}: build the workspace first (cargo build --workspace)"
        );
    }
    dirs
}

/// Runs `program args`, which must succeed; its stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `testudo args` with the test's own data home (development keys) and a fixed epoch.
pub fn testudo_command(args: &[&str], data_home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_testudo"));
    command
        .args(args)
        .env("XDG_DATA_HOME", data_home)
        .env("SOURCE_DATE_EPOCH", "1700000000");
    command
}

/// Runs `testudo args` to the end.
pub fn testudo(args: &[&str], data_home: &Path) -> Output {
    testudo_command(args, data_home).output().unwrap()
}

/// Runs `testudo args`, which must succeed; its stdout.
pub fn testudo_ok(args: &[&str], data_home: &Path) -> String {
    let out = testudo(args, data_home);
    assert!(
        out.status.success(),
        "testudo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first sector of GPT partition `partition` of `disk`.
pub fn first_sector(disk: &str, partition: u32) -> u64 {
    let info = run("sgdisk", &["-i", &partition.to_string(), disk]);
    let line = info
        .lines()
        .find(|l| l.starts_with("First sector:"))
        .unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// Boots `disk` with `testudo vm run` until `expect` (a regex) appears on the console, within
/// `timeout_s`; the console. Fails, showing the console, if it does not.
pub fn boot_until(disk: &str, data_home: &Path, expect: &str, timeout_s: u32) -> String {
    boot_with(disk, data_home, &["--expect", expect], timeout_s)
}

/// Boots `disk` until testudo-init reports every component ready (`testudo vm run
/// --until-ready`, what the Nix VM check runs too); returns the console.
pub fn boot_until_ready(disk: &str, data_home: &Path, timeout_s: u32) -> String {
    boot_with(disk, data_home, &["--until-ready"], timeout_s)
}

/// `testudo vm run DISK UNTIL... --timeout T`, which must succeed; the console.
fn boot_with(disk: &str, data_home: &Path, until: &[&str], timeout_s: u32) -> String {
    let timeout = timeout_s.to_string();
    let mut args = vec!["vm", "run", disk];
    args.extend_from_slice(until);
    args.extend_from_slice(&["--timeout", &timeout]);
    let out = testudo(&args, data_home);
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "did not see {until:?}: {}\n{console}",
        String::from_utf8_lossy(&out.stderr)
    );
    console
}

/// `disk`'s ESP as mtools names it (`IMAGE@@OFFSET`).
pub fn esp_of(disk: &str) -> String {
    format!("{disk}@@{}", first_sector(disk, 1) * 512)
}

/// The grubenv on `disk`'s ESP, as text.
pub fn grubenv_of(disk: &str) -> String {
    run("mtype", &["-i", &esp_of(disk), "::/EFI/testudo/grubenv"])
}

/// Sets `assignments` (`NAME=value`) in `disk`'s grubenv with `grub-editenv`, through a copy
/// in `work`.
pub fn set_grubenv(disk: &str, work: &Path, assignments: &[&str]) {
    let esp = esp_of(disk);
    let copy = work.join("grubenv");
    let copy_s = copy.to_str().unwrap();
    run(
        "mcopy",
        &["-n", "-i", &esp, "::/EFI/testudo/grubenv", copy_s],
    );
    let mut args = vec![copy_s, "set"];
    args.extend_from_slice(assignments);
    run("grub-editenv", &args);
    run(
        "mcopy",
        &["-o", "-i", &esp, copy_s, "::/EFI/testudo/grubenv"],
    );
}

/// Installs `bundle` into slot B of `disk` from outside the VM: verified and extracted with
/// rauc (keyring `keyring`), its rootfs written over partition 3.
pub fn write_bundle_into_slot_b(disk: &str, bundle: &Path, keyring: &Path, work: &Path) {
    use std::os::unix::fs::FileExt;
    let extracted = work.join("extracted");
    run(
        "rauc",
        &[
            "extract",
            "--keyring",
            keyring.to_str().unwrap(),
            bundle.to_str().unwrap(),
            extracted.to_str().unwrap(),
        ],
    );
    let image = std::fs::read(extracted.join("rootfs.img")).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(disk).unwrap();
    file.write_all_at(&image, first_sector(disk, 3) * 512)
        .unwrap();
    file.sync_all().unwrap();
}

/// Builds `config` (relative to the repository) into `root/out` from a source root
/// `root/src` holding the gateway's WASM apps (compiled as `cargo xtask apps` does) and the
/// repository files named in `extra` (e.g. the trust anchors a config names). Returns the
/// output directory.
pub fn build_image(root: &Path, config: &str, extra: &[&str], data_home: &Path) -> PathBuf {
    let repo = repo();
    let apps = root.join("src/wasm-apps");
    std::fs::create_dir_all(&apps).unwrap();
    for app in ["sensor-reader", "forwarder"] {
        let source = repo.join(format!("wasm-apps/{app}.c"));
        let output = apps.join(format!("{app}.wasm"));
        if let Err(error) = testudo_testkit::wasm::compile_c_app(&source, &output, &[]) {
            panic!("{error}");
        }
    }
    for file in extra {
        let target = root.join("src").join(file);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(repo.join(file), &target).unwrap();
    }
    let out = root.join("out");
    let mut args: Vec<String> = vec![
        "build".into(),
        repo.join(config).display().to_string(),
        "-o".into(),
        out.display().to_string(),
        "--cache".into(),
        root.join("cache").display().to_string(),
        "--source-root".into(),
        root.join("src").display().to_string(),
        "--plain".into(),
    ];
    for dir in bin_dirs() {
        args.push("--bin-dir".into());
        args.push(dir.display().to_string());
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let built = testudo(&arg_refs, data_home);
    assert!(
        built.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    out
}

/// A running `testudo vm run`, its console collected line by line with when each arrived.
pub struct RunningVm {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    /// When the VM was started.
    pub started: Instant,
}

impl RunningVm {
    /// Starts `testudo vm run` with `args` (after `vm run`).
    pub fn start(args: &[&str], data_home: &Path) -> RunningVm {
        let mut all = vec!["vm", "run"];
        all.extend_from_slice(args);
        let started = Instant::now();
        // Its own process group: QEMU and swtpm are stopped with it, whatever happens.
        let mut child = testudo_command(&all, data_home)
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        RunningVm {
            child,
            lines,
            started,
        }
    }

    /// The console so far.
    pub fn console(&self) -> String {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The console so far, each line prefixed with when it arrived, in seconds after the
    /// first line containing `from` (from the start when no line contains it).
    pub fn timed_console(&self, from: &str) -> String {
        let origin = self.seen(from).unwrap_or(self.started);
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .map(|(at, line)| {
                let offset = if *at >= origin {
                    format!("+{:.3}", at.duration_since(origin).as_secs_f64())
                } else {
                    format!("-{:.3}", origin.duration_since(*at).as_secs_f64())
                };
                format!("{offset:>9} s  {line}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The lines that arrived at or after `after`, with when each arrived.
    pub fn lines_since(&self, after: Instant) -> Vec<(Instant, String)> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|(at, _)| *at >= after)
            .cloned()
            .collect()
    }

    /// When the first line containing `needle` arrived, if it did.
    pub fn seen(&self, needle: &str) -> Option<Instant> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .find(|(_, l)| l.contains(needle))
            .map(|(at, _)| *at)
    }

    /// Whether the VM has ended (QEMU exits when the guest reboots or powers off).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits for a console line containing `needle`; fails with the console after `timeout`
    /// or when the VM ends first.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|(_, l)| l.contains(needle))
            {
                return line.1.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200)); // the reader's last lines
                panic!(
                    "the VM ended ({status}) before {needle:?}:\n{}",
                    self.console()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {timeout:?}:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for `testudo vm run` to end by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(200));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the VM did not end within {timeout:?}:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the VM: `testudo vm run`, QEMU and swtpm (its process group).
    pub fn kill(&mut self) {
        // SAFETY: signals the process group of the child this value owns.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}
