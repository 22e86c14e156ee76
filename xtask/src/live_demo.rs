//! The live part of `cargo xtask demo`: the development gateway (`gateway-dev.ncl`) and the
//! cloud around it on this machine, each step printed. The hub emulator (with its artifact
//! store, the HTTPS server the device fetches modules from) listens where QEMU's user network
//! sends the guest (127.0.0.1:8883 and :443, under the name `hub.testudo.dev`); the VM's TPM
//! is enrolled; the VM boots and provisions itself zero-touch; a twin change deploys
//! `sensor-reader.wasm` into the `cloud-app` slot; its telemetry arrives at the hub and the
//! twin reports it `running`; then a twin change updates the OS to the next release
//! (`gateway-dev-next.ncl`) the Azure Device Update way: the updater installs it into slot B,
//! reboots, confirms B, and the twin reports it applied. Fails unless all of that was seen.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::util;

const GATEWAY_DEV: &str = "system-config/examples/gateway-dev.ncl";
const GATEWAY_DEV_NEXT: &str = "system-config/examples/gateway-dev-next.ncl";
const DEVICE: &str = "gateway-0001";
const HUB_HOST: &str = "hub.testudo.dev";
const ID_SCOPE: &str = "0ne00000001";
const DEV_CA: &str = "tests/hub/dev-ca";
const APP: &str = "wasm-apps/sensor-reader.wasm";
const SLOT: &str = "cloud-app";
/// Generous for TCG on a loaded 2-core machine (a boot to ready takes about a minute).
const WAIT: Duration = Duration::from_secs(900);

/// A child process (its stdout followed line by line, echoed with a prefix), killed with its
/// process group when dropped.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    what: &'static str,
}

impl Running {
    /// Starts `command` in its own process group, following its stdout; `what` names it in
    /// errors and prefixes its echoed lines.
    fn spawn(mut command: Command, what: &'static str) -> anyhow::Result<Running> {
        let mut child = command
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the {what}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            let sink = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    println!("    {what}: {line}");
                    if let Ok(mut seen) = sink.lock() {
                        seen.push(line);
                    }
                }
            });
        }
        Ok(Running { child, lines, what })
    }

    /// Waits up to `timeout` for a line containing `needle`; fails if the process ends first.
    fn wait(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self
                .lines
                .lock()
                .ok()
                .and_then(|lines| lines.iter().find(|line| line.contains(needle)).cloned());
            if let Some(line) = seen {
                return Ok(line);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the {} ended ({status}) before printing `{needle}`",
                    self.what
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the {} printed no `{needle}` within {} s",
                    self.what,
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: signals the process group this task started (the child leads it).
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

fn step(text: &str) {
    println!("\n==> {text}");
}

/// `testudo ARGS` with the demo's own data home (its development keys), as a command.
fn testudo(data_home: &Path, args: &[&str]) -> Command {
    let mut command = util::workspace_binary("testudo");
    command
        .args(args)
        .env("XDG_DATA_HOME", data_home)
        .current_dir(util::workspace_root());
    command
}

/// Runs `testudo ARGS`, which must succeed; its stdout.
fn testudo_output(data_home: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = testudo(data_home, args)
        .output()
        .with_context(|| format!("running testudo {args:?}"))?;
    if !output.status.success() {
        bail!(
            "testudo {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// Runs the live demo in `out_dir` (its state is started afresh each time).
pub fn run(out_dir: &Path) -> anyhow::Result<()> {
    let live = out_dir.join("live");
    let _ = std::fs::remove_dir_all(&live);
    std::fs::create_dir_all(&live)?;
    let data_home = live.join("data-home");
    let hub_state = live.join("hub");
    let vm_state = live.join("vm");
    let image = live.join("image");

    step(&format!(
        "build {GATEWAY_DEV} (the gateway pointed at the emulator; trusts the development CA)"
    ));
    util::run(&mut testudo(
        &data_home,
        &["build", GATEWAY_DEV, "-o", path(&image), "--plain"],
    ))?;

    step(&format!(
        "start the hub emulator as {HUB_HOST} on 127.0.0.1:8883 (MQTT) and :443 (HTTPS: service API, DPS, artifact store)"
    ));
    let mut hub = Running::spawn(
        testudo(
            &data_home,
            &[
                "hub",
                "serve",
                "--state",
                path(&hub_state),
                "--host",
                HUB_HOST,
                "--id-scope",
                ID_SCOPE,
                "--ca",
                DEV_CA,
            ],
        ),
        "hub",
    )?;
    // Its service connection string, printed once it listens.
    let service = hub
        .wait("service: ", Duration::from_secs(60))
        .context("the hub emulator did not start (are ports 8883 and 443 free?)")?;
    let service = service.trim_start_matches("service: ").to_owned();

    step("enroll the VM's TPM endorsement key for zero-touch provisioning (DPS, TPM attestation)");
    let ek = testudo_output(&data_home, &["vm", "tpm-ek", "--state", path(&vm_state)])?;
    let ek_file = live.join("ek.pub");
    std::fs::write(&ek_file, ek)?;
    util::run(&mut testudo(
        &data_home,
        &[
            "hub",
            "enrollment",
            "add",
            "--state",
            path(&hub_state),
            DEVICE,
            "--tpm-ek",
            path(&ek_file),
        ],
    ))?;

    step("boot the gateway in QEMU");
    let mut vm = boot(&data_home, &image.join("disk.img"), &vm_state)?;
    vm.wait("testudo-init: ready:", WAIT)?;

    step("zero-touch provisioning: DPS registration with the TPM, then the hub connection");
    vm.wait("cloud: new DPS assignment", WAIT)?;
    vm.wait("cloud: device properties reported", WAIT)?;

    step(&format!(
        "a twin change deploys {APP} into the `{SLOT}` slot (signed with the deploy key, module in the emulator's artifact store)"
    ));
    let keys = data_home.join("testudo/dev-keys");
    util::run(&mut testudo(
        &data_home,
        &[
            "deploy",
            "app",
            DEVICE,
            "--slot",
            SLOT,
            "--module",
            APP,
            "--app-version",
            "1.0.0",
            "--config",
            GATEWAY_DEV,
            "--keys",
            path(&keys),
            "--hub",
            &service,
            "--ca",
            path(&hub_state.join("ca.pem")),
            "--hub-address",
            "127.0.0.1:443",
        ],
    ))?;
    vm.wait(
        &format!("{SLOT}: app slot: serial 1 passed its health check"),
        WAIT,
    )?;

    step(&format!(
        "the app's telemetry arrives at the hub (from `{SLOT}`)"
    ));
    let telemetry = wait_for(|| first_telemetry(&hub_state.join("telemetry.jsonl")))?;
    println!("    {telemetry}");

    step("the twin's reported properties say it runs");
    let reported = wait_for(|| {
        let twin: Value = serde_json::from_str(
            &testudo_output(
                &data_home,
                &["hub", "twin", "--state", path(&hub_state), DEVICE],
            )
            .ok()?,
        )
        .ok()?;
        let apps = twin["properties"]["reported"]["apps"].clone();
        (apps[SLOT]["runtimeStatus"] == "running" && apps["lastDesiredStatus"]["code"] == 200)
            .then_some(apps)
    })?;
    println!("    reported apps: {reported}");
    println!("\ndemo: the twin change ran a signed app on the gateway, which reported back");

    let vm = os_update(&live, &data_home, &hub_state, &service, vm)?;
    println!("\ndemo: the twin change updated the gateway's OS from A to B, which reported back");
    drop(vm);
    drop(hub);
    Ok(())
}

/// The OS update part: the next release built, published through the twin the Azure Device
/// Update way, installed into slot B by the updater, rebooted into and confirmed; the twin
/// reports it applied. `vm` is the running gateway; returns the one running after the update.
fn os_update(
    live: &Path,
    data_home: &Path,
    hub_state: &Path,
    service: &str,
    mut vm: Running,
) -> anyhow::Result<Running> {
    step(&format!(
        "build the next release, {GATEWAY_DEV_NEXT} (version 0.2.0), and its delta from the running 0.1.0"
    ));
    let next = live.join("image-next");
    let base_bundle = live.join("image/update.raucb");
    util::run(&mut testudo(
        data_home,
        &[
            "build",
            GATEWAY_DEV_NEXT,
            "-o",
            path(&next),
            "--plain",
            "--delta-from",
            path(&base_bundle),
        ],
    ))?;
    let delta = next.join("delta-from-0.1.0.raucb");

    step("a twin change updates the OS (ADU's deviceUpdate: signed manifest, the bundle and its delta in the artifact store)");
    let keys = data_home.join("testudo/dev-keys");
    util::run(&mut testudo(
        data_home,
        &[
            "deploy",
            "os",
            DEVICE,
            "--bundle",
            path(&next.join("update.raucb")),
            "--delta",
            path(&delta),
            "--keys",
            path(&keys),
            "--hub",
            service,
            "--ca",
            path(&hub_state.join("ca.pem")),
            "--hub-address",
            "127.0.0.1:443",
        ],
    ))?;
    vm.wait("downloading delta-", WAIT)?;
    println!("    the gateway downloads the delta, not the full bundle");
    vm.wait("installed into slot B", WAIT)?;

    step("the updater reboots the gateway into slot B");
    let deadline = Instant::now() + WAIT;
    while vm.child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            bail!("the gateway did not reboot within {} s", WAIT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(vm);
    let mut vm = boot(data_home, &live.join("image/disk.img"), &live.join("vm"))?;
    vm.wait("testudo: booting slot B", WAIT)?;

    step("slot B runs healthy: the updater confirms it, the twin reports the update applied");
    vm.wait("updater: slot B confirmed good", WAIT)?;
    let agent = wait_for(|| {
        let twin: Value = serde_json::from_str(
            &testudo_output(
                data_home,
                &["hub", "twin", "--state", path(hub_state), DEVICE],
            )
            .ok()?,
        )
        .ok()?;
        let agent = twin["properties"]["reported"]["deviceUpdate"]["agent"].clone();
        (agent["state"] == 0 && agent["lastInstallResult"]["resultCode"] == 700).then_some(agent)
    })?;
    println!("    reported deviceUpdate.agent: {agent}");
    Ok(vm)
}

/// Boots `disk` in QEMU with the VM state `state` (its TPM).
fn boot(data_home: &Path, disk: &Path, state: &Path) -> anyhow::Result<Running> {
    Running::spawn(
        testudo(
            data_home,
            &[
                "vm",
                "run",
                path(disk),
                "--state",
                path(state),
                "--timeout",
                "1800",
            ],
        ),
        "vm",
    )
}

/// The first message the emulator captured from the slot's app.
fn first_telemetry(file: &PathBuf) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find(|line| {
            serde_json::from_str::<Value>(line)
                .is_ok_and(|message| message["properties"]["testudo-app"] == SLOT)
        })
        .map(str::to_owned)
}

fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = check() {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!("not seen within {} s", WAIT.as_secs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
