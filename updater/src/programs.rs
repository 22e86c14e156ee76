//! A bundle's programs (RAUC's install hooks and custom handler), run the way RAUC runs them —
//! the same argument, environment variables and exit-code protocol — but each in a sandbox
//! that holds only what its step needs (decision 0097):
//!
//! | step | argument | may write | RAUC's variables |
//! |---|---|---|---|
//! | install-check hook | `install-check` | nothing | system and manifest |
//! | pre-install, install, post-install hook of `[image.C]` | `slot-pre-install`, `slot-install`, `slot-post-install` | the target slot of class C | and `RAUC_SLOT_*`, `RAUC_IMAGE_*` of that slot |
//! | handler | `[handler] args=` (one argument, as RAUC passes it) | every target slot | and `RAUC_SLOTS`, `RAUC_TARGET_SLOTS`, `RAUC_*_<N>` |
//!
//! Every step sees the bundle read-only at `<mountprefix>/bundle` (`RAUC_BUNDLE_MOUNT_POINT`),
//! the system's tools read-only (`[bundle-programs] tools=`), a private empty `/tmp`, and no
//! network: never the booted slot, the data partition or the bootloader, which stay the
//! updater's. The install-check hook replaces the compatible check, as in RAUC; an exit code of
//! 10 or more is a rejection whose reason is its last line on stderr.
//!
//! What runs a program is a [`ProgramRunner`]: [`SandboxedRunner`] for real, a recording one
//! in unit tests.

use std::path::{Component, Path, PathBuf};

use crate::bundle::VerifiedBundle;
use crate::error::{write_err, Result, UpdaterError};
use crate::manifest::{ImageEntry, ImageHook, Manifest};
use crate::system_conf::{SlotConf, SystemConf};

mod sandboxed;

pub use sandboxed::SandboxedRunner;

/// The exit code from which RAUC reads an install-check hook's failure as a rejection.
pub const REJECT_EXIT_CODE: i32 = 10;

/// The directory under `mountprefix` where programs see the bundle (RAUC's mount point).
pub const BUNDLE_DIR: &str = "bundle";

/// `PATH` inside a program's sandbox.
const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One program to run: what, with what, and what it may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramRun {
    /// Which of RAUC's steps it runs as.
    pub step: ProgramStep,
    /// How errors and reports name it: `install-check hook`, `pre-install hook of
    /// [image.rootfs]`, `handler handler.sh`.
    pub name: String,
    /// The program file on the host, inside the staged bundle.
    pub program: PathBuf,
    /// Its arguments (RAUC passes exactly one).
    pub args: Vec<String>,
    /// Its whole environment, sorted by name.
    pub env: Vec<(String, String)>,
    /// The staged bundle on the host, shown read-only at `bundle_mount_point`.
    pub bundle_dir: PathBuf,
    /// Where the program sees the bundle (`RAUC_BUNDLE_MOUNT_POINT`).
    pub bundle_mount_point: PathBuf,
    /// Slot devices the step may write, each shown at its own path.
    pub writable: Vec<PathBuf>,
}

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProgramExit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it (`SIGSYS`: a system call outside its seccomp policy).
    Signal(i32),
    /// It ran past `[bundle-programs] timeout=` and was killed with everything it started.
    TimedOut,
}

impl std::fmt::Display for ProgramExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProgramExit::Code(code) => write!(f, "exit code {code}"),
            ProgramExit::Signal(signal) if *signal == libc::SIGSYS => write!(
                f,
                "killed by signal {signal} (a system call its seccomp policy does not allow)"
            ),
            ProgramExit::Signal(signal) => write!(f, "killed by signal {signal}"),
            ProgramExit::TimedOut => f.write_str("killed at its timeout"),
        }
    }
}

/// What a program did: how it ended and the ends of what it wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProgramOutcome {
    /// The program's name ([`ProgramRun::name`]).
    pub name: String,
    /// How it ended.
    pub exit: ProgramExit,
    /// The last [`OUTPUT_TAIL`] bytes of its stdout (lossy UTF-8).
    pub stdout: String,
    /// The last [`OUTPUT_TAIL`] bytes of its stderr (lossy UTF-8).
    pub stderr: String,
}

/// How much of a program's stdout and stderr is kept.
pub const OUTPUT_TAIL: usize = 16 * 1024;

impl ProgramOutcome {
    /// The last non-empty line of stderr, RAUC's rejection reason.
    pub fn last_stderr_line(&self) -> Option<&str> {
        self.stderr
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| !line.is_empty())
    }

    /// `Ok` for exit code 0; otherwise the step's error (a rejection for an install-check
    /// hook's code of 10 or more with a reason).
    fn check(&self, step: ProgramStep) -> Result<()> {
        match self.exit {
            ProgramExit::Code(0) => Ok(()),
            ProgramExit::Code(code)
                if step == ProgramStep::InstallCheck && code >= REJECT_EXIT_CODE =>
            {
                Err(UpdaterError::BundleRejected {
                    program: self.name.clone(),
                    reason: self
                        .last_stderr_line()
                        .map_or_else(|| format!("exit code {code}"), str::to_owned),
                })
            }
            exit => Err(UpdaterError::BundleProgram {
                program: self.name.clone(),
                exit,
                stderr: self.last_stderr_line().unwrap_or_default().to_owned(),
            }),
        }
    }
}

/// Runs one program. The real one is [`SandboxedRunner`].
pub trait ProgramRunner {
    /// Runs `run` to its end (or its timeout). `Err` only when it could not be started.
    fn run(&self, run: &ProgramRun) -> Result<ProgramOutcome>;
}

/// Which of RAUC's steps a program runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramStep {
    /// `install-check`.
    InstallCheck,
    /// `slot-pre-install`, `slot-install` or `slot-post-install`.
    Slot(ImageHook),
    /// The custom handler.
    Handler,
}

impl ProgramStep {
    /// The argument RAUC gives a hook for this step.
    fn hook_argument(self) -> &'static str {
        match self {
            ProgramStep::InstallCheck => "install-check",
            ProgramStep::Slot(ImageHook::PreInstall) => "slot-pre-install",
            ProgramStep::Slot(ImageHook::Install) => "slot-install",
            ProgramStep::Slot(ImageHook::PostInstall) => "slot-post-install",
            ProgramStep::Handler => "",
        }
    }
}

/// A verified bundle's programs, ready to run: the bundle staged (extracted) on the host, the
/// system they run for, and the runner.
pub struct BundlePrograms<'a> {
    conf: &'a SystemConf,
    booted: &'a SlotConf,
    manifest: &'a Manifest,
    staged: &'a Path,
    runner: &'a dyn ProgramRunner,
    /// What every program did, in order.
    pub outcomes: Vec<ProgramOutcome>,
}

impl<'a> BundlePrograms<'a> {
    /// Programs of `manifest` (whose payload is extracted at `staged`) for system `conf`
    /// booted from `booted`.
    pub fn new(
        conf: &'a SystemConf,
        booted: &'a SlotConf,
        manifest: &'a Manifest,
        staged: &'a Path,
        runner: &'a dyn ProgramRunner,
    ) -> Self {
        BundlePrograms {
            conf,
            booted,
            manifest,
            staged,
            runner,
            outcomes: Vec::new(),
        }
    }

    /// The install-check hook, if the bundle has one (without it the caller checks
    /// compatibility itself, as RAUC does).
    pub fn install_check(&self) -> Result<Option<ProgramRun>> {
        if self.manifest.hooks.is_empty() {
            return Ok(None);
        }
        self.hook_run(ProgramStep::InstallCheck, None).map(Some)
    }

    /// `hook` of `image` for target `slot`, if the image has that hook.
    pub fn slot_hook(
        &self,
        hook: ImageHook,
        image: &ImageEntry,
        slot: &SlotConf,
    ) -> Result<Option<ProgramRun>> {
        if !image.hooks.contains(&hook) {
            return Ok(None);
        }
        self.hook_run(ProgramStep::Slot(hook), Some((image, slot)))
            .map(Some)
    }

    /// The custom handler, if the bundle has one, with every target slot of `pairs` writable.
    pub fn handler(&self, pairs: &[(ImageEntry, &SlotConf)]) -> Result<Option<ProgramRun>> {
        let Some(handler) = &self.manifest.handler else {
            return Ok(None);
        };
        let mut env = self.common_env();
        env.extend(handler_env(
            self.conf,
            self.booted,
            pairs,
            &self.bundle_mount_point(),
        ));
        Ok(Some(ProgramRun {
            step: ProgramStep::Handler,
            name: format!("handler {}", handler.filename),
            program: self.program_path(&handler.filename)?,
            args: vec![handler.args.clone().unwrap_or_default()],
            env: sorted(env),
            bundle_dir: self.staged.to_path_buf(),
            bundle_mount_point: self.bundle_mount_point(),
            writable: pairs.iter().map(|(_, slot)| slot.device.clone()).collect(),
        }))
    }

    /// Runs `run` to its end; `Ok` if it exited with 0. Its outcome is kept in
    /// [`Self::outcomes`] either way.
    pub fn execute(&mut self, run: &ProgramRun) -> Result<()> {
        let outcome = self.runner.run(run)?;
        let checked = outcome.check(run.step);
        self.outcomes.push(outcome);
        checked
    }

    fn bundle_mount_point(&self) -> PathBuf {
        self.conf.mount_prefix.join(BUNDLE_DIR)
    }

    /// The hook program `[hooks] filename=` inside the staged bundle.
    fn hook_run(
        &self,
        step: ProgramStep,
        target: Option<(&ImageEntry, &SlotConf)>,
    ) -> Result<ProgramRun> {
        let filename =
            self.manifest
                .hooks_filename
                .as_deref()
                .ok_or_else(|| UpdaterError::Manifest {
                    message: "hooks are listed but [hooks] has no filename=".to_string(),
                })?;
        let mut env = self.common_env();
        let mut writable = Vec::new();
        let name = match target {
            None => "install-check hook".to_string(),
            Some((image, slot)) => {
                env.extend(slot_env(slot, "", "inactive"));
                env.extend(image_env(image, &self.bundle_mount_point(), ""));
                writable.push(slot.device.clone());
                let hook = match step {
                    ProgramStep::Slot(hook) => hook.to_string(),
                    _ => step.hook_argument().to_string(),
                };
                format!("{hook} hook of [image.{}]", image.slot_class)
            }
        };
        Ok(ProgramRun {
            step,
            name,
            program: self.program_path(filename)?,
            args: vec![step.hook_argument().to_string()],
            env: sorted(env),
            bundle_dir: self.staged.to_path_buf(),
            bundle_mount_point: self.bundle_mount_point(),
            writable,
        })
    }

    /// What every program gets: the system's and the manifest's variables, where the bundle
    /// is, and `PATH`.
    fn common_env(&self) -> Vec<(String, String)> {
        let manifest = self.manifest;
        let bundle = self.bundle_mount_point().display().to_string();
        vec![
            var("PATH", SANDBOX_PATH),
            var("HOME", "/tmp"),
            var("TMPDIR", "/tmp"),
            var("RAUC_SYSTEM_COMPATIBLE", &self.conf.compatible),
            var("RAUC_SYSTEM_VARIANT", ""),
            var("RAUC_MF_COMPATIBLE", &manifest.compatible),
            var("RAUC_MF_VERSION", manifest.version.as_deref().unwrap_or("")),
            var(
                "RAUC_MF_DESCRIPTION",
                manifest.description.as_deref().unwrap_or(""),
            ),
            var("RAUC_MF_BUILD", manifest.build.as_deref().unwrap_or("")),
            var(
                "RAUC_MOUNT_PREFIX",
                &self.conf.mount_prefix.display().to_string(),
            ),
            var("RAUC_BUNDLE_MOUNT_POINT", &bundle),
            var("RAUC_UPDATE_SOURCE", &bundle),
            var(
                "RAUC_CURRENT_BOOTNAME",
                self.booted.bootname.as_deref().unwrap_or(""),
            ),
        ]
    }

    /// `name` of the manifest, inside the staged bundle; refused if it would leave it.
    fn program_path(&self, name: &str) -> Result<PathBuf> {
        let path = Path::new(name);
        if name.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(UpdaterError::Manifest {
                message: format!("program {name:?} is not a plain path inside the bundle"),
            });
        }
        Ok(self.staged.join(path))
    }
}

/// Extracts the verified `bundle` for its programs into a new directory under the updater's
/// `data-directory` (the temporary directory without one): removed when the result is dropped.
/// Programs see it read-only; the payload was verified when the bundle was opened. The images
/// are left out unless a program writes one (an `install` hook, a handler): the others run
/// before or after the updater's own write, which streams the image from the bundle.
pub fn stage_bundle(conf: &SystemConf, bundle: &VerifiedBundle) -> Result<tempfile::TempDir> {
    let manifest = &bundle.manifest;
    let programs_write = manifest.handler.is_some()
        || manifest
            .images
            .iter()
            .any(|image| image.hooks.contains(&ImageHook::Install));
    let skip: Vec<&str> = match programs_write {
        true => Vec::new(),
        false => manifest
            .images
            .iter()
            .map(|image| image.filename.as_str())
            .collect(),
    };
    let parent = conf
        .data_directory
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).map_err(write_err(&parent))?;
    let staged = tempfile::Builder::new()
        .prefix("bundle-programs-")
        .tempdir_in(&parent)
        .map_err(write_err(&parent))?;
    let dir = staged.path().join(BUNDLE_DIR);
    crate::payload::extract_except(bundle.payload(), &dir, &skip)?;
    Ok(staged)
}

fn var(name: &str, value: &str) -> (String, String) {
    (name.to_string(), value.to_string())
}

fn sorted(mut env: Vec<(String, String)>) -> Vec<(String, String)> {
    env.sort();
    env.dedup_by(|later, earlier| later.0 == earlier.0);
    env
}

/// `RAUC_SLOT_*<suffix>` of `slot` (RAUC's slot hook and handler variables).
fn slot_env(slot: &SlotConf, suffix: &str, state: &str) -> Vec<(String, String)> {
    let mut env = vec![
        var(&format!("RAUC_SLOT_NAME{suffix}"), &slot.name()),
        var(&format!("RAUC_SLOT_CLASS{suffix}"), &slot.class),
        var(&format!("RAUC_SLOT_TYPE{suffix}"), &slot.slot_type),
        var(
            &format!("RAUC_SLOT_DEVICE{suffix}"),
            &slot.device.display().to_string(),
        ),
        var(
            &format!("RAUC_SLOT_BOOTNAME{suffix}"),
            slot.bootname.as_deref().unwrap_or(""),
        ),
        var(
            &format!("RAUC_SLOT_PARENT{suffix}"),
            slot.parent.as_deref().unwrap_or(""),
        ),
    ];
    if suffix.is_empty() {
        env.push(var("RAUC_SLOT_STATE", state));
    }
    env
}

/// `RAUC_IMAGE_*<suffix>` of `image` as the program sees it under `bundle`.
fn image_env(image: &ImageEntry, bundle: &Path, suffix: &str) -> Vec<(String, String)> {
    let mut env = vec![
        var(
            &format!("RAUC_IMAGE_NAME{suffix}"),
            &bundle.join(&image.filename).display().to_string(),
        ),
        var(
            &format!("RAUC_IMAGE_DIGEST{suffix}"),
            &hex::encode(image.sha256),
        ),
        var(&format!("RAUC_IMAGE_CLASS{suffix}"), &image.slot_class),
    ];
    if suffix.is_empty() {
        env.push(var("RAUC_IMAGE_SIZE", &image.size.to_string()));
    }
    env
}

/// The handler's variables: every slot numbered from 1 in system.conf order
/// (`RAUC_SLOTS`), the targets among them (`RAUC_TARGET_SLOTS`) with their images.
fn handler_env(
    conf: &SystemConf,
    booted: &SlotConf,
    pairs: &[(ImageEntry, &SlotConf)],
    bundle: &Path,
) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let mut all = Vec::new();
    let mut targets = Vec::new();
    for (index, slot) in conf.slots.iter().enumerate() {
        let number = (index + 1).to_string();
        let suffix = format!("_{number}");
        env.extend(slot_env(slot, &suffix, ""));
        if let Some((image, _)) = pairs.iter().find(|(_, s)| s.name() == slot.name()) {
            env.extend(image_env(image, bundle, &suffix));
            targets.push(number.clone());
        }
        all.push(number);
    }
    env.push(var("RAUC_SLOTS", &all.join(" ")));
    env.push(var("RAUC_TARGET_SLOTS", &targets.join(" ")));
    env.push(var(
        "RAUC_CURRENT_BOOTNAME",
        booted.bootname.as_deref().unwrap_or(""),
    ));
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Records every run and answers with the exit code the test chose for its step.
    struct Recording {
        runs: RefCell<Vec<ProgramRun>>,
        exit: ProgramExit,
        stderr: &'static str,
    }

    impl ProgramRunner for Recording {
        fn run(&self, run: &ProgramRun) -> Result<ProgramOutcome> {
            self.runs.borrow_mut().push(run.clone());
            Ok(ProgramOutcome {
                name: run.name.clone(),
                exit: self.exit,
                stdout: String::new(),
                stderr: self.stderr.to_string(),
            })
        }
    }

    fn recording(exit: ProgramExit, stderr: &'static str) -> Recording {
        Recording {
            runs: RefCell::new(Vec::new()),
            exit,
            stderr,
        }
    }

    fn system() -> SystemConf {
        let mut conf = SystemConf::grub_ab(
            "gw",
            Path::new("/etc/rauc/keyring.pem"),
            Path::new("/boot/grubenv"),
            Path::new("/data/rauc"),
            Path::new("/dev/vda2"),
            Path::new("/dev/vda3"),
        );
        conf.mount_prefix = PathBuf::from("/run/rauc");
        conf
    }

    const MANIFEST: &str = "[update]\ncompatible=gw\nversion=2.0\n\n[handler]\nfilename=handler.sh\nargs=--flag x\n\n[hooks]\nfilename=hook.sh\nhooks=install-check;\n\n[image.rootfs]\nsha256=2a665ad306c50a7e2ca17292877e7b88ef601ccd397b612b996bc141c97634fd\nsize=100000\nfilename=rootfs.img\nhooks=pre-install;post-install;\n";

    fn env_of<'r>(run: &'r ProgramRun, name: &str) -> Option<&'r str> {
        run.env
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn install_check_sees_the_system_and_manifest_and_may_write_nothing() {
        let conf = system();
        let manifest = Manifest::parse(MANIFEST).unwrap();
        let runner = recording(ProgramExit::Code(0), "");
        let mut programs =
            BundlePrograms::new(&conf, &conf.slots[0], &manifest, Path::new("/s"), &runner);
        let run = programs.install_check().unwrap().unwrap();
        programs.execute(&run).unwrap();
        let runs = runner.runs.borrow();
        let run = &runs[0];
        assert_eq!(run.name, "install-check hook");
        assert_eq!(run.program, PathBuf::from("/s/hook.sh"));
        assert_eq!(run.args, ["install-check"]);
        assert!(run.writable.is_empty());
        assert_eq!(run.bundle_mount_point, PathBuf::from("/run/rauc/bundle"));
        assert_eq!(env_of(run, "RAUC_MF_VERSION"), Some("2.0"));
        assert_eq!(env_of(run, "RAUC_SYSTEM_COMPATIBLE"), Some("gw"));
        assert_eq!(
            env_of(run, "RAUC_BUNDLE_MOUNT_POINT"),
            Some("/run/rauc/bundle")
        );
        assert_eq!(env_of(run, "RAUC_SLOT_DEVICE"), None);
        let names: Vec<&str> = run.env.iter().map(|(k, _)| k.as_str()).collect();
        let mut sorted_names = names.clone();
        sorted_names.sort_unstable();
        sorted_names.dedup();
        assert_eq!(names, sorted_names, "sorted, one value per name");
    }

    #[test]
    fn a_slot_hook_may_write_its_target_slot_only() {
        let conf = system();
        let manifest = Manifest::parse(MANIFEST).unwrap();
        let runner = recording(ProgramExit::Code(0), "");
        let mut programs =
            BundlePrograms::new(&conf, &conf.slots[0], &manifest, Path::new("/s"), &runner);
        let image = &manifest.images[0];
        let run = programs
            .slot_hook(ImageHook::PreInstall, image, &conf.slots[1])
            .unwrap();
        programs.execute(&run.unwrap()).unwrap();
        assert!(programs
            .slot_hook(ImageHook::Install, image, &conf.slots[1])
            .unwrap()
            .is_none());
        let runs = runner.runs.borrow();
        assert_eq!(runs.len(), 1);
        let run = &runs[0];
        assert_eq!(run.name, "pre-install hook of [image.rootfs]");
        assert_eq!(run.args, ["slot-pre-install"]);
        assert_eq!(run.writable, [PathBuf::from("/dev/vda3")]);
        assert_eq!(env_of(run, "RAUC_SLOT_NAME"), Some("rootfs.1"));
        assert_eq!(env_of(run, "RAUC_SLOT_BOOTNAME"), Some("B"));
        assert_eq!(env_of(run, "RAUC_SLOT_DEVICE"), Some("/dev/vda3"));
        assert_eq!(
            env_of(run, "RAUC_IMAGE_NAME"),
            Some("/run/rauc/bundle/rootfs.img")
        );
        assert_eq!(env_of(run, "RAUC_IMAGE_SIZE"), Some("100000"));
        assert_eq!(env_of(run, "RAUC_CURRENT_BOOTNAME"), Some("A"));
    }

    #[test]
    fn the_handler_gets_every_target_slot_and_rauc_numbering() {
        let conf = system();
        let manifest = Manifest::parse(MANIFEST).unwrap();
        let runner = recording(ProgramExit::Code(0), "");
        let mut programs =
            BundlePrograms::new(&conf, &conf.slots[0], &manifest, Path::new("/s"), &runner);
        let pairs = vec![(manifest.images[0].clone(), &conf.slots[1])];
        let run = programs.handler(&pairs).unwrap().unwrap();
        programs.execute(&run).unwrap();
        let runs = runner.runs.borrow();
        let run = &runs[0];
        assert_eq!(run.name, "handler handler.sh");
        assert_eq!(run.args, ["--flag x"], "one argument, as RAUC passes it");
        assert_eq!(run.writable, [PathBuf::from("/dev/vda3")]);
        assert_eq!(env_of(run, "RAUC_SLOTS"), Some("1 2"));
        assert_eq!(env_of(run, "RAUC_TARGET_SLOTS"), Some("2"));
        assert_eq!(env_of(run, "RAUC_SLOT_DEVICE_1"), Some("/dev/vda2"));
        assert_eq!(
            env_of(run, "RAUC_IMAGE_NAME_2"),
            Some("/run/rauc/bundle/rootfs.img")
        );
        assert_eq!(env_of(run, "RAUC_IMAGE_NAME_1"), None);
    }

    #[test]
    fn exit_codes_follow_raucs_protocol() {
        let conf = system();
        let manifest = Manifest::parse(MANIFEST).unwrap();
        let rejecting = recording(ProgramExit::Code(10), "checking\nboard rev 2 only\n\n");
        let mut programs = BundlePrograms::new(
            &conf,
            &conf.slots[0],
            &manifest,
            Path::new("/s"),
            &rejecting,
        );
        let run = programs.install_check().unwrap().unwrap();
        match programs.execute(&run).unwrap_err() {
            UpdaterError::BundleRejected { program, reason } => {
                assert_eq!(program, "install-check hook");
                assert_eq!(reason, "board rev 2 only");
            }
            other => panic!("{other}"),
        }
        let failing = recording(ProgramExit::Code(10), "disk full");
        let mut programs =
            BundlePrograms::new(&conf, &conf.slots[0], &manifest, Path::new("/s"), &failing);
        let run = programs
            .slot_hook(ImageHook::PreInstall, &manifest.images[0], &conf.slots[1])
            .unwrap()
            .unwrap();
        let err = programs.execute(&run).unwrap_err();
        assert!(
            matches!(&err, UpdaterError::BundleProgram { exit: ProgramExit::Code(10), stderr, .. } if stderr == "disk full"),
            "{err}"
        );
        let hanging = recording(ProgramExit::TimedOut, "");
        let mut programs =
            BundlePrograms::new(&conf, &conf.slots[0], &manifest, Path::new("/s"), &hanging);
        let run = programs.install_check().unwrap().unwrap();
        let err = programs.execute(&run).unwrap_err();
        assert_eq!(
            err.to_string(),
            "running install-check hook: killed at its timeout"
        );
        assert_eq!(
            programs.outcomes.len(),
            1,
            "the outcome is kept for the report"
        );
    }

    #[test]
    fn a_program_path_leaving_the_bundle_is_refused() {
        let conf = system();
        let text = MANIFEST.replace("filename=hook.sh", "filename=../../usr/bin/sh");
        let manifest = Manifest::parse(&text).unwrap();
        let runner = recording(ProgramExit::Code(0), "");
        let programs =
            BundlePrograms::new(&conf, &conf.slots[0], &manifest, Path::new("/s"), &runner);
        assert!(matches!(
            programs.install_check(),
            Err(UpdaterError::Manifest { .. })
        ));
        assert!(runner.runs.borrow().is_empty());
    }
}
