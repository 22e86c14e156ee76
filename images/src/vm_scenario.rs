//! VM scenarios: sequences of boots and disk changes, with what each boot's console and the
//! grubenv must show. One implementation, two runners: the cargo VM tests and the Nix checks
//! both run them through `testudo vm scenario`.
//!
//! `rollback`: the device confirms and rolls back by itself. It takes two images built from
//! `images/scenarios/rollback-good.ncl` and `rollback-broken.ncl` (the gateway with 2 boot
//! tries, a 3 s health window and 40 s for a trial; the broken one adds a component named
//! `broken` that crash-loops), then:
//! 1. slot A boots and its updater confirms it (`A_OK=1`, `A_TRY=0`);
//! 2. the broken bundle, verified against the keyring, is written into slot B and B is made
//!    primary on trial, as an install does (`ORDER=B A`, `B_OK=1`, `B_TRY=0`,
//!    `TESTUDO_TRIAL=B`);
//! 3. B boots twice; each time its updater finds it unhealthy (naming `broken`) and reboots,
//!    GRUB counting the tries (`B_TRY=1`, then 2);
//! 4. its tries used up, GRUB boots A again and abandons B (`B_OK=0`); A confirms again;
//! 5. A stays the slot that boots.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use testudo_updater::bootloader::grub::GrubEnv;
use testudo_updater::signature::CheckPurpose;
use testudo_updater::{Keyring, UpdaterError};

use crate::disk::{ESP_LABEL, ROOTFS_B_LABEL};
use crate::error::{ImageError, Result};
use crate::esp::GRUBENV_PATH;
use crate::gpt::partition_offset;
use crate::tool::{path_arg, ToolCall, ToolRunner};
use crate::vm::{run_vm, VmOptions, VmOutcome};

/// Longest wait for one boot's expected line.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// What the rollback scenario runs on.
#[derive(Debug, Clone)]
pub struct RollbackInputs {
    /// The good image's disk (`disk.img` of `rollback-good.ncl`); copied, never written.
    pub good_disk: PathBuf,
    /// The broken image's update bundle (`update.raucb` of `rollback-broken.ncl`).
    pub broken_bundle: PathBuf,
    /// The CA the bundles are signed under (`ca.pem` of the keys).
    pub keyring: PathBuf,
    /// A scratch directory (the disk copy and the grubenv go here).
    pub work: PathBuf,
}

/// Runs the rollback scenario (see the module documentation); `vm` gives the QEMU settings
/// (its disk and expectation are set per boot). `progress` hears each step as it passes.
pub fn rollback(
    inputs: &RollbackInputs,
    vm: &VmOptions,
    tools: &dyn ToolRunner,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    std::fs::create_dir_all(&inputs.work).map_err(ImageError::write(&inputs.work))?;
    let disk = inputs.work.join("disk.img");
    tools.run(
        &ToolCall::new("cp", "copying the good image's disk")
            .arg("--sparse=always")
            .arg(path_arg(&inputs.good_disk))
            .arg(path_arg(&disk)),
    )?;
    // The copy has the source's mode: read-only when the image is in the Nix store; QEMU and
    // the grubenv edits write the copy.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(0o644))
            .map_err(ImageError::write(&disk))?;
    }
    let scenario = Scenario {
        disk: disk.clone(),
        work: inputs.work.clone(),
        vm,
        tools,
    };

    let console = scenario.boot_until("slot A confirmed", "updater: slot A confirmed good")?;
    scenario.console_has(&console, "slot A confirmed", &["testudo: booting slot A"])?;
    scenario.console_has(
        &console,
        "slot A confirmed",
        &["updater: slot A booted (try 1, confirmed before)"],
    )?;
    scenario.grubenv_has("slot A confirmed", &[("A_OK", "1"), ("A_TRY", "0")])?;
    progress("slot A booted and confirmed itself");

    scenario.write_bundle_into_slot_b(&inputs.broken_bundle, &inputs.keyring)?;
    scenario.set_grubenv(&[
        ("ORDER", "B A"),
        ("B_OK", "1"),
        ("B_TRY", "0"),
        ("TESTUDO_TRIAL", "B"),
    ])?;
    progress("the broken bundle is in slot B, primary on trial");

    for try_number in 1..=2 {
        let step = format!("slot B try {try_number}");
        let console =
            scenario.boot_until(&step, "updater: slot B on trial is not healthy after")?;
        scenario.console_has(
            &console,
            &step,
            &[
                "testudo: booting slot B",
                &format!("updater: slot B booted (try {try_number}, on trial"),
                "(broken ",
            ],
        )?;
        let tries = try_number.to_string();
        scenario.grubenv_has(&step, &[("B_TRY", tries.as_str()), ("B_OK", "1")])?;
        progress(&format!(
            "slot B try {try_number}: found unhealthy (broken), rebooted"
        ));
    }

    let console = scenario.boot_until("rolled back", "updater: slot A confirmed good")?;
    scenario.console_has(&console, "rolled back", &["testudo: booting slot A"])?;
    scenario.grubenv_has(
        "rolled back",
        &[("B_OK", "0"), ("A_OK", "1"), ("A_TRY", "0")],
    )?;
    progress("GRUB fell back to slot A, abandoned B; A confirmed again");

    let console = scenario.boot_until("A stays", "updater: slot A booted")?;
    scenario.console_has(&console, "A stays", &["testudo: booting slot A"])?;
    progress("slot A stays the slot that boots");
    Ok(())
}

/// One scenario's disk and the means to boot and inspect it.
struct Scenario<'a> {
    disk: PathBuf,
    work: PathBuf,
    vm: &'a VmOptions,
    tools: &'a dyn ToolRunner,
}

impl Scenario<'_> {
    fn failed(&self, step: &str, detail: String) -> ImageError {
        ImageError::Scenario {
            scenario: "rollback",
            step: step.to_owned(),
            detail,
        }
    }

    /// Boots the disk until a console line matches `expect`; the console so far.
    fn boot_until(&self, step: &str, expect: &str) -> Result<Vec<String>> {
        let mut options = self.vm.clone();
        options.disk = self.disk.clone();
        options.expect = Some(regex::escape(expect));
        options.timeout = Some(BOOT_TIMEOUT);
        match run_vm(&options) {
            Ok(VmOutcome::Matched { console, .. }) => Ok(console),
            Ok(VmOutcome::Exited { status }) => {
                Err(self.failed(step, format!("QEMU exited ({status}) before `{expect}`")))
            }
            Err(error) => Err(self.failed(step, format!("{expect}: {error}"))),
        }
    }

    /// Fails unless every one of `needles` is on some line of `console`.
    fn console_has(&self, console: &[String], step: &str, needles: &[&str]) -> Result<()> {
        for needle in needles {
            if !console.iter().any(|line| line.contains(needle)) {
                let tail: Vec<&str> = console
                    .iter()
                    .rev()
                    .take(40)
                    .rev()
                    .map(String::as_str)
                    .collect();
                return Err(self.failed(
                    step,
                    format!(
                        "the console lacks `{needle}`; its end:\n{}",
                        tail.join("\n")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The ESP as mtools names it: `DISK@@OFFSET`.
    fn esp(&self) -> Result<String> {
        let offset = partition_offset(&self.disk, ESP_LABEL)?;
        Ok(format!("{}@@{offset}", self.disk.display()))
    }

    fn grubenv(&self) -> Result<GrubEnv> {
        let bytes = self.tools.run(
            &ToolCall::new("mtype", "reading the grubenv")
                .args(["-i", &self.esp()?])
                .arg(format!("::{GRUBENV_PATH}")),
        )?;
        GrubEnv::parse(&bytes).map_err(|error| self.failed("grubenv", error.to_string()))
    }

    /// Fails unless the grubenv holds each of `expected` (`NAME`, value).
    fn grubenv_has(&self, step: &str, expected: &[(&str, &str)]) -> Result<()> {
        let env = self.grubenv()?;
        for (name, value) in expected {
            if env.get(name) != Some(value) {
                return Err(self.failed(
                    step,
                    format!("grubenv {name}={:?}, expected {value}", env.get(name)),
                ));
            }
        }
        Ok(())
    }

    /// Sets `assignments` in the grubenv (as `grub-editenv set` would).
    fn set_grubenv(&self, assignments: &[(&str, &str)]) -> Result<()> {
        let mut env = self.grubenv()?;
        for (name, value) in assignments {
            env.set(name, value);
        }
        let bytes = env
            .render()
            .map_err(|error| self.failed("grubenv", error.to_string()))?;
        let local = self.work.join("grubenv");
        std::fs::write(&local, bytes).map_err(ImageError::write(&local))?;
        self.tools.run(
            &ToolCall::new("mcopy", "writing the grubenv")
                .args(["-o", "-i", &self.esp()?])
                .arg(path_arg(&local))
                .arg(format!("::{GRUBENV_PATH}")),
        )?;
        Ok(())
    }

    /// Verifies `bundle` against `keyring` and streams its rootfs image to slot B's start,
    /// checked against the signed manifest on the way (as an install writes a slot).
    fn write_bundle_into_slot_b(&self, bundle: &Path, keyring: &Path) -> Result<()> {
        let step = "writing slot B";
        let keyring = Keyring::load(keyring, CheckPurpose::default())
            .map_err(|error| self.failed(step, error.to_string()))?;
        let verified = testudo_updater::bundle::open(bundle, &keyring)
            .map_err(|error| self.failed(step, error.to_string()))?;
        let image = verified
            .manifest
            .image("rootfs")
            .ok_or_else(|| self.failed(step, "the bundle has no rootfs image".to_owned()))?;
        let offset = partition_offset(&self.disk, ROOTFS_B_LABEL)?;
        let mut file = OpenOptions::new()
            .write(true)
            .open(&self.disk)
            .map_err(ImageError::write(&self.disk))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(ImageError::write(&self.disk))?;
        verified
            .stream_image(image, |reader| {
                std::io::copy(reader, &mut file).map_err(|source| UpdaterError::Write {
                    path: self.disk.clone(),
                    source,
                })
            })
            .map_err(|error| self.failed(step, error.to_string()))?;
        file.sync_all().map_err(ImageError::write(&self.disk))
    }
}
