//! `testudo deploy`: drive a device's app slots and OS through its twin. `app` (and `remove`)
//! sign a deployment (a removal) with the deploy key and set it as the device's desired
//! properties through the hub's service API (a real hub or the emulator); `os` does the same
//! for an OS update, the Azure Device Update way (`super::deploy_os`); `status` shows what the
//! device reported.
//! The document's format and the twin's shapes: `docs/plan-format.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::{Map, Value};
use testudo_deployment::twin::{self, DesiredStatus, SlotReport};
use testudo_deployment::{Action, App, AppRelease, Deployment, ModuleHasher, SigningKey};
use testudo_hub_service::{ServiceClient, ServiceConnectionString};
use testudo_plan::Route;

use super::config_input::load_config_or_plan;
use super::deploy_os::{deploy_os, os_status_text, OsDeployment};

/// Microsoft's root certificates IoT Hub chains to: the default trust for a real hub.
const AZURE_ROOTS: &str = include_str!("../../../system-config/trust/azure-iot-roots.pem");

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: DeployCommand,
}

/// Where the hub is and how it is trusted.
#[derive(Debug, clap::Args)]
pub(super) struct HubArgs {
    /// The hub's service connection string (`HostName=...;SharedAccessKeyName=...;
    /// SharedAccessKey=...`; `testudo hub connection-string` prints the emulator's).
    #[arg(long = "hub", value_name = "CONNECTION_STRING")]
    connection_string: String,
    /// The CA bundle the hub's certificate chains to (the emulator's `ca.pem`); default:
    /// Microsoft's roots, as for a real hub.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Connect to this address instead of resolving the hub's host name (the emulator on
    /// this machine under the name devices know it by, e.g. `127.0.0.1:443`); TLS still
    /// checks the name.
    #[arg(long, value_name = "IP:PORT")]
    hub_address: Option<std::net::SocketAddr>,
}

#[derive(Debug, clap::Subcommand)]
enum DeployCommand {
    /// Sign a deployment of APP.wasm into a slot and set it as DEVICE's desired properties.
    App {
        /// The device id.
        device: String,
        /// The app slot (the config's `app_slots`).
        #[arg(long)]
        slot: String,
        /// The WebAssembly module.
        #[arg(long, value_name = "APP.wasm")]
        module: PathBuf,
        /// The app's version (semantic version).
        #[arg(long = "app-version", value_name = "VERSION")]
        version: String,
        /// The app's name (default: the module's file name without `.wasm`).
        #[arg(long)]
        name: Option<String>,
        /// The routes the app gets, by local name, comma-separated: a subset of the slot's
        /// `max_uses` (default: all of them).
        #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
        uses: Vec<String>,
        /// The device's system config (or plan JSON): its `compatible` and the slot's routes.
        #[arg(long)]
        config: PathBuf,
        /// Key directory with `deploy.ed25519` (`testudo keys init`).
        #[arg(long)]
        keys: PathBuf,
        /// Where the device fetches the module (HTTPS). Without it the module is uploaded to
        /// the hub's artifact store (the emulator has one; for Azure, name the URL your
        /// storage serves it at).
        #[arg(long)]
        url: Option<String>,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Sign the removal of a slot's app (a signed document too: the slot is emptied) and set
    /// it as DEVICE's desired properties.
    Remove {
        /// The device id.
        device: String,
        /// The app slot (the config's `app_slots`).
        #[arg(long)]
        slot: String,
        /// The device's system config (or plan JSON): its `compatible`.
        #[arg(long)]
        config: PathBuf,
        /// Key directory with `deploy.ed25519` (`testudo keys init`).
        #[arg(long)]
        keys: PathBuf,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Update DEVICE's OS: check BUNDLE, sign its Azure Device Update manifest and set it as
    /// the device's desired `deviceUpdate` (the device downloads, verifies, installs into its
    /// other slot, reboots and confirms or rolls back by itself).
    Os {
        /// The device id.
        device: String,
        /// The update bundle (`OUT/update.raucb` of `testudo build`).
        #[arg(long, value_name = "UPDATE.raucb")]
        bundle: PathBuf,
        /// Key directory (`testudo keys init`): `ca.pem`, the keyring devices check the
        /// bundle with, and `update-root.rsa` + `update-signing.rsa`, which sign the manifest.
        #[arg(long)]
        keys: PathBuf,
        /// Where devices download the bundle. Without it the bundle is uploaded to the hub's
        /// artifact store (the emulator has one; for Azure, name the URL your storage serves
        /// it at).
        #[arg(long)]
        url: Option<String>,
        /// A delta bundle of the same update (`testudo bundle delta`), offered beside the
        /// full bundle for devices running its base image (repeatable; ADU's related files).
        /// `FILE` is uploaded to the hub's artifact store; `FILE=URL` names where it is served.
        #[arg(long = "delta", value_name = "FILE[=URL]")]
        deltas: Vec<String>,
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Show what DEVICE reported about its app slots and its OS update.
    Status {
        /// The device id.
        device: String,
        #[command(flatten)]
        hub: HubArgs,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        DeployCommand::App {
            device,
            slot,
            module,
            version,
            name,
            uses,
            config,
            keys,
            url,
            hub,
        } => {
            let target = Target::load(&config, &slot, &keys)?;
            let app = module_app(&module, name, version)?;
            let url = match url {
                Some(url) => url,
                None => upload_module(&module, &app, &hub)?,
            };
            let action = Action::Deploy(AppRelease {
                app: app.clone(),
                uses: target.routes(&uses)?,
                url: Some(url),
            });
            let what = format!(
                "deploying {} {} (sha256 {}, {} bytes) into",
                app.name, app.version, app.sha256, app.size
            );
            publish(&target, action, &device, &hub, &what)
        }
        DeployCommand::Remove {
            device,
            slot,
            config,
            keys,
            hub,
        } => {
            let target = Target::load(&config, &slot, &keys)?;
            publish(
                &target,
                Action::Remove,
                &device,
                &hub,
                "removing the app of",
            )
        }
        DeployCommand::Os {
            device,
            bundle,
            keys,
            url,
            deltas,
            hub,
        } => deploy_os(&OsDeployment {
            device: &device,
            bundle: &bundle,
            keys: &keys,
            url,
            deltas: deltas
                .iter()
                .map(|delta| match delta.split_once('=') {
                    Some((path, url)) => (PathBuf::from(path), Some(url.to_owned())),
                    None => (PathBuf::from(delta), None),
                })
                .collect(),
            hub: &hub,
        }),
        DeployCommand::Status { device, hub } => {
            let client = service_client(&hub)?;
            let twin = client
                .twin(&device)
                .with_context(|| format!("reading the twin of {device}"))?;
            let reported = properties(&twin, "reported");
            print!("{}", status_text(&device, &reported));
            print!("{}", os_status_text(&device, &reported));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The slot a document is for, on which system, and the key that signs it.
struct Target {
    slot: String,
    compatible: String,
    max_uses: BTreeMap<String, Route>,
    key: SigningKey,
}

impl Target {
    /// The slot `slot` of the system `config` describes, and the deploy key in `keys`.
    fn load(config: &Path, slot: &str, keys: &Path) -> anyhow::Result<Target> {
        let plan = load_config_or_plan(config)?;
        let Some(app_slot) = plan.app_slots.get(slot) else {
            let known: Vec<&str> = plan.app_slots.keys().map(String::as_str).collect();
            bail!(
                "{} has no app slot {slot:?} (its slots: {})",
                config.display(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            );
        };
        let key_path = keys.join("deploy.ed25519");
        let key = testudo_deployment::read_signing_key(&key_path)
            .with_context(|| format!("reading the deploy key {}", key_path.display()))?;
        Ok(Target {
            slot: slot.to_owned(),
            compatible: plan.compatible.clone(),
            max_uses: app_slot.max_uses.clone(),
            key,
        })
    }
}

impl Target {
    /// The slot's routes named in `names` (all of `max_uses` when none is named): a
    /// deployment narrows the slot's maximum, never widens it.
    fn routes(&self, names: &[String]) -> anyhow::Result<BTreeMap<String, Route>> {
        if names.is_empty() {
            return Ok(self.max_uses.clone());
        }
        names
            .iter()
            .map(|name| {
                let route = self.max_uses.get(name).with_context(|| {
                    format!(
                        "--uses {name}: slot {} has no route `{name}` (its max_uses: {})",
                        self.slot,
                        self.max_uses.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                })?;
                Ok((name.clone(), route.clone()))
            })
            .collect()
    }
}

/// Signs `action` for the target's slot with the next serial the device's twin calls for and
/// sets it as the device's desired properties. `what` starts the line saying so.
fn publish(
    target: &Target,
    action: Action,
    device: &str,
    hub: &HubArgs,
    what: &str,
) -> anyhow::Result<ExitCode> {
    let slot = &target.slot;
    let mut deployment = Deployment {
        slot: slot.clone(),
        compatible: target.compatible.clone(),
        serial: 1,
        action,
    };
    // A document devices would refuse (a version that is not semver, ...) is refused here,
    // before the hub is asked anything.
    deployment.validate().context("the deployment")?;
    let client = service_client(hub)?;
    let twin = client
        .twin(device)
        .with_context(|| format!("reading the twin of {device}"))?;
    deployment.serial = twin::next_serial(
        &properties(&twin, "desired"),
        &properties(&twin, "reported"),
        slot,
        &[target.key.verifying_key()],
    );
    let token =
        testudo_deployment::sign(&deployment, &target.key).context("signing the deployment")?;
    println!(
        "{what} slot {slot} of {device} as serial {}",
        deployment.serial
    );
    let twin = client
        .patch_desired(device, &twin::desired_patch(slot, &token))
        .with_context(|| format!("setting the desired properties of {device}"))?;
    let version = twin["properties"]["desired"]["$version"]
        .as_u64()
        .unwrap_or(0);
    println!(
        "desired properties of {device} at $version {version} on {}; the device reports in apps.{slot} (testudo deploy status {device})",
        client.hub_name()
    );
    Ok(ExitCode::SUCCESS)
}

/// Uploads the module to the hub's artifact store (the emulator's
/// `PUT /testudo/artifacts/<sha256>`); returns the URL devices fetch it from.
fn upload_module(module: &Path, app: &App, hub: &HubArgs) -> anyhow::Result<String> {
    let bytes = std::fs::read(module)
        .with_context(|| format!("reading the module {}", module.display()))?;
    let client = service_client(hub)?;
    let path = format!("/testudo/artifacts/{}", app.sha256);
    client.upload(&path, &bytes).with_context(|| {
        format!(
            "uploading {} to the artifact store of {} (only the emulator has one: for Azure IoT Hub pass --url where your storage serves the module)",
            module.display(),
            client.hub_name()
        )
    })?;
    let url = format!("https://{}{path}", client.hub_name());
    println!(
        "uploaded {} ({} bytes) to {url}",
        module.display(),
        app.size
    );
    Ok(url)
}

/// The module's name, version, size and sha256.
fn module_app(module: &Path, name: Option<String>, version: String) -> anyhow::Result<App> {
    let mut file = std::fs::File::open(module)
        .with_context(|| format!("opening the module {}", module.display()))?;
    let mut hasher = ModuleHasher::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("reading the module {}", module.display()))?;
    let digest = hasher.finish();
    let name = match name {
        Some(name) => name,
        None => module
            .file_stem()
            .and_then(|stem| stem.to_str())
            .map(str::to_owned)
            .with_context(|| {
                format!(
                    "{} has no file name to name the app by (--name)",
                    module.display()
                )
            })?,
    };
    Ok(App {
        name,
        version,
        sha256: hex::encode(digest.sha256),
        size: digest.size,
    })
}

pub(super) fn service_client(hub: &HubArgs) -> anyhow::Result<ServiceClient> {
    let connection = ServiceConnectionString::parse(&hub.connection_string)?;
    let anchors = match &hub.ca {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the CA bundle {}", path.display()))?,
        None => AZURE_ROOTS.to_owned(),
    };
    let client = ServiceClient::new(connection, &anchors)?;
    Ok(match hub.hub_address {
        Some(address) => client.connect_to(address),
        None => client,
    })
}

/// A twin's `properties.<section>` (empty when absent).
pub(super) fn properties(twin: &Value, section: &str) -> Map<String, Value> {
    twin.get("properties")
        .and_then(|properties| properties.get(section))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// What `deploy status` prints: a line per reported slot, then the last desired version.
fn status_text(device: &str, reported: &Map<String, Value>) -> String {
    let Some(apps) = reported.get(twin::APPS).and_then(Value::as_object) else {
        return format!("{device} has reported no app slots yet\n");
    };
    let mut text = String::new();
    for (slot, report) in apps {
        let Ok(report) = serde_json::from_value::<SlotReport>(report.clone()) else {
            continue;
        };
        let app = match (&report.app, &report.version) {
            (Some(app), Some(version)) => format!("{app} {version}"),
            _ => "no deployed app (its factory app, or empty)".to_owned(),
        };
        let serial = report
            .serial
            .map(|serial| format!(", serial {serial}"))
            .unwrap_or_default();
        let status = serde_json::to_value(report.runtime_status)
            .ok()
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_default();
        let exit = report
            .exit_code
            .map(|code| format!(", last exit code {code}"))
            .unwrap_or_default();
        text.push_str(&format!(
            "slot {slot}: {app}{serial}, {status} (restarts {}{exit})\n",
            report.restart_count
        ));
    }
    let version = apps.get("lastDesiredVersion").and_then(Value::as_u64);
    let last = apps
        .get("lastDesiredStatus")
        .and_then(|status| serde_json::from_value::<DesiredStatus>(status.clone()).ok());
    if let (Some(version), Some(last)) = (version, last) {
        text.push_str(&format!(
            "last desired $version {version}: {} {}\n",
            last.code, last.description
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_lists_each_slot_and_the_last_desired_version() {
        let reported = json!({"apps": {
            "cloud-app": {"app": "forwarder", "version": "1.2.0", "serial": 3,
                          "runtimeStatus": "running", "restartCount": 1, "exitCode": 2},
            "spare": {"runtimeStatus": "stopped", "restartCount": 0},
            "lastDesiredVersion": 7,
            "lastDesiredStatus": {"code": 200, "description": "applied"}
        }});
        let Value::Object(reported) = reported else {
            unreachable!()
        };
        assert_eq!(
            status_text("gw", &reported),
            "slot cloud-app: forwarder 1.2.0, serial 3, running (restarts 1, last exit code 2)\n\
             slot spare: no deployed app (its factory app, or empty), stopped (restarts 0)\n\
             last desired $version 7: 200 applied\n"
        );
        assert_eq!(
            status_text("gw", &Map::new()),
            "gw has reported no app slots yet\n"
        );
    }
}
