//! `testudo deploy os`: an OS update through the device twin, the Azure Device Update way. The
//! bundle is checked as a device would (CMS signature against the keys directory's keyring,
//! verity), described in an ADU update manifest (one `testudo/bundle:1` step, the bundle's
//! version as installed criteria), signed under the keys directory's update root, uploaded
//! to the hub's artifact store unless `--url` names where it is served, and set as the
//! device's desired `deviceUpdate`. Delta bundles of the same update (`--delta`) are checked
//! the same way and offered as the bundle's related files (ADU's delta updates), each naming
//! the rootfs image it applies to. The shapes: `docs/plan-format.md`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use testudo_os_update::manifest::{self, UpdateId, BUNDLE_FILE_ID};
use testudo_os_update::twin::{self, DesiredUpdate, Workflow, WorkflowAction};
use testudo_os_update::update_scheme::{device_compatibility, MANUFACTURER};
use testudo_os_update::{keys as update_keys, signature};
use testudo_updater::keys::DevKeys;
use testudo_updater::{bundle, Keyring};

use super::deploy::{properties, service_client, HubArgs};

/// What `testudo deploy os` was asked.
pub struct OsDeployment<'a> {
    /// The device id.
    pub device: &'a str,
    /// The bundle (`update.raucb` of `testudo build`).
    pub bundle: &'a Path,
    /// The keys directory.
    pub keys: &'a Path,
    /// Where devices download the bundle, if not from the hub's artifact store.
    pub url: Option<String>,
    /// Delta bundles of the same update, each with where devices download it (None: the
    /// hub's artifact store).
    pub deltas: Vec<(std::path::PathBuf, Option<String>)>,
    /// The hub.
    pub hub: &'a HubArgs,
}

/// Publishes an OS update to one device.
pub fn deploy_os(request: &OsDeployment<'_>) -> anyhow::Result<ExitCode> {
    let bundle_path = request.bundle;
    let dev = DevKeys::paths(request.keys);
    let keyring = Keyring::load(&dev.ca_cert, Default::default())
        .with_context(|| format!("loading the keyring {}", dev.ca_cert.display()))?;
    // A bundle devices would refuse (signature, hash tree) is refused here, before the hub is
    // asked anything.
    let (verified, sha256, size) = verify_and_hash(bundle_path, &keyring)
        .with_context(|| format!("verifying the bundle {}", bundle_path.display()))?;
    let version = verified
        .manifest
        .version
        .clone()
        .context("the bundle's manifest has no version (devices install by version)")?;
    let compatible = verified.manifest.compatible.clone();
    let chain = update_keys::load_signing_chain(request.keys).with_context(|| {
        format!(
            "loading the OS update keys of {} (`testudo keys init` adds them)",
            request.keys.display()
        )
    })?;
    let file_name = bundle_path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("update.raucb");
    let update_id = UpdateId {
        provider: MANUFACTURER.to_owned(),
        name: compatible.clone(),
        version: version.clone(),
    };
    let mut update_manifest = manifest::for_bundle(
        update_id,
        device_compatibility(&compatible),
        file_name,
        size,
        sha256,
        &version,
        &rfc3339_utc(SystemTime::now()),
    );
    let deltas = request
        .deltas
        .iter()
        .map(|(path, url)| offered_delta(path, url.clone(), &keyring, &verified.manifest))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for delta in &deltas {
        update_manifest.add_delta(&delta.file_id, delta.file.clone());
    }
    let update_manifest = update_manifest.to_json();
    let manifest_signature =
        signature::sign(&update_manifest, &chain).context("signing the update manifest")?;

    let client = service_client(request.hub)?;
    let device = request.device;
    let twin = client
        .twin(device)
        .with_context(|| format!("reading the twin of {device}"))?;
    let url = match &request.url {
        Some(url) => url.clone(),
        None => upload_bundle(&client, bundle_path, &sha256)?,
    };
    let mut file_urls = std::collections::BTreeMap::from([(BUNDLE_FILE_ID.to_owned(), url)]);
    for delta in &deltas {
        let url = match &delta.url {
            Some(url) => url.clone(),
            None => upload_bundle(&client, &delta.path, &delta.file.sha256)?,
        };
        file_urls.insert(delta.file_id.clone(), url);
    }
    let desired_version = properties(&twin, "desired")
        .get("$version")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let update = DesiredUpdate {
        workflow: Workflow {
            action: WorkflowAction::Apply,
            id: workflow_id(&update_manifest, desired_version),
            retry_timestamp: None,
        },
        update_manifest: Some(update_manifest),
        update_manifest_signature: Some(manifest_signature),
        file_urls,
    };
    println!(
        "updating {device} to {compatible} {version} ({size} bytes, workflow {})",
        update.workflow.id
    );
    let twin = client
        .patch_desired(device, &twin::desired_patch(&update))
        .with_context(|| format!("setting the desired properties of {device}"))?;
    let version = twin["properties"]["desired"]["$version"]
        .as_u64()
        .unwrap_or(0);
    println!(
        "desired properties of {device} at $version {version} on {}; the device reports in deviceUpdate.agent (testudo deploy status {device})",
        client.hub_name()
    );
    Ok(ExitCode::SUCCESS)
}

/// Verifies the bundle at `path` as a device would (signature, every payload byte) and
/// hashes the whole file in the same read: the bundle, the file's sha256 and its size.
fn verify_and_hash(
    path: &Path,
    keyring: &Keyring,
) -> testudo_updater::Result<(bundle::VerifiedBundle, [u8; 32], u64)> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let verified = bundle::open_observed(path, keyring, None, &mut |bytes| {
        hasher.update(bytes);
        size += bytes.len() as u64;
    })?;
    Ok((verified, hasher.finalize().into(), size))
}

/// A delta bundle offered beside the full one.
struct OfferedDelta {
    /// Its file id: `delta-` and the first 12 hex digits of its base image's sha256.
    file_id: String,
    /// Its entry among the bundle's related files.
    file: manifest::RelatedFile,
    /// Where it is.
    path: std::path::PathBuf,
    /// Where devices download it, if not from the hub's artifact store.
    url: Option<String>,
}

/// Checks the delta bundle at `path` as a device would (signature, verity) and that it makes
/// the full bundle's update (same compatible and version, one rootfs delta); describes it.
fn offered_delta(
    path: &Path,
    url: Option<String>,
    keyring: &Keyring,
    full: &testudo_updater::Manifest,
) -> anyhow::Result<OfferedDelta> {
    let (verified, sha256, size) = verify_and_hash(path, keyring)
        .with_context(|| format!("verifying the delta bundle {}", path.display()))?;
    let manifest = &verified.manifest;
    if manifest.compatible != full.compatible || manifest.version != full.version {
        anyhow::bail!(
            "the delta bundle {} is for {} {}, the bundle for {} {}",
            path.display(),
            manifest.compatible,
            manifest.version.as_deref().unwrap_or("?"),
            full.compatible,
            full.version.as_deref().unwrap_or("?")
        );
    }
    let [image] = &manifest.images[..] else {
        anyhow::bail!(
            "the delta bundle {} has {} images; a delta offered to devices has one",
            path.display(),
            manifest.images.len()
        );
    };
    let delta = image.delta.as_ref().with_context(|| {
        format!(
            "{} is a full bundle, not a delta (`testudo bundle delta` makes one)",
            path.display()
        )
    })?;
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("delta.raucb")
        .to_owned();
    println!(
        "offering delta {} ({size} bytes) for devices running rootfs sha256 {}",
        path.display(),
        hex::encode(delta.base.sha256)
    );
    Ok(OfferedDelta {
        file_id: format!("delta-{}", &hex::encode(delta.base.sha256)[..12]),
        file: manifest::RelatedFile {
            file_name,
            size_in_bytes: size,
            sha256,
            source_sha256: Some(delta.base.sha256),
        },
        path: path.to_owned(),
        url,
    })
}

/// Uploads the bundle to the hub's artifact store (the emulator's
/// `PUT /testudo/artifacts/<sha256>`); returns the URL devices fetch it from.
fn upload_bundle(
    client: &testudo_hub_service::ServiceClient,
    bundle_path: &Path,
    sha256: &[u8; 32],
) -> anyhow::Result<String> {
    let bytes = std::fs::read(bundle_path)
        .with_context(|| format!("reading the bundle {}", bundle_path.display()))?;
    let path = format!("/testudo/artifacts/{}", hex::encode(sha256));
    client.upload(&path, &bytes).with_context(|| {
        format!(
            "uploading {} to the artifact store of {} (only the emulator has one: for Azure IoT Hub pass --url where your storage serves the bundle)",
            bundle_path.display(),
            client.hub_name()
        )
    })?;
    let url = format!("https://{}{path}", client.hub_name());
    println!("uploaded {} to {url}", bundle_path.display());
    Ok(url)
}

/// A workflow id: a new one for every deployment (the desired `$version` it follows), the same
/// for the same manifest and twin (no clock, no randomness); 32 hex digits, as ADU's GUIDs
/// without dashes.
fn workflow_id(update_manifest: &str, desired_version: u64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(update_manifest.as_bytes());
    hasher.update(desired_version.to_be_bytes());
    hex::encode(&hasher.finalize()[..16])
}

/// `time` as ADU writes `createdDateTime`: `YYYY-MM-DDTHH:MM:SSZ` (UTC).
fn rfc3339_utc(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// What `deploy status` prints of the device's `deviceUpdate.agent`: its state, the update it
/// runs and the last result; nothing when it reported none.
pub fn os_status_text(device: &str, reported: &Map<String, Value>) -> String {
    let Some(agent) = reported
        .get(twin::COMPONENT)
        .and_then(|component| component.get("agent"))
    else {
        return String::new();
    };
    let state = match agent.get("state").and_then(Value::as_i64) {
        Some(0) => "idle".to_owned(),
        Some(6) => "deployment in progress".to_owned(),
        Some(255) => "failed".to_owned(),
        Some(other) => format!("state {other}"),
        None => "no state".to_owned(),
    };
    let installed = agent
        .get("installedUpdateId")
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str::<UpdateId>(text).ok())
        .map(|id| format!("{} {} {}", id.provider, id.name, id.version))
        .unwrap_or_else(|| "none reported".to_owned());
    let mut text = format!("{device} OS update: {state}; installed update: {installed}\n");
    if let Some(result) = agent.get("lastInstallResult") {
        let code = result.get("resultCode").and_then(Value::as_i64);
        let extended = result.get("extendedResultCode").and_then(Value::as_i64);
        let details = result
            .get("resultDetails")
            .and_then(Value::as_str)
            .unwrap_or("");
        let meaning = match code {
            Some(700) => "applied".to_owned(),
            Some(-1) => "cancelled".to_owned(),
            Some(0) => {
                match extended.and_then(testudo_os_update::FailedStep::from_extended_result_code) {
                    Some(step) => format!("failed at {}", step.name()),
                    None => "failed".to_owned(),
                }
            }
            Some(other) => format!("result {other}"),
            None => "no result".to_owned(),
        };
        text.push_str(&format!("last install: {meaning}"));
        if let Some(extended) = extended.filter(|code| *code != 0) {
            text.push_str(&format!(" (extended result code {extended:#010x})"));
        }
        if !details.is_empty() {
            text.push_str(&format!(": {details}"));
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn created_date_times_are_utc_calendar_dates() {
        assert_eq!(rfc3339_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723)),
            "2000-02-29T01:02:03Z"
        );
        assert_eq!(
            rfc3339_utc(UNIX_EPOCH + Duration::from_secs(1_796_342_400)),
            "2026-12-04T00:00:00Z"
        );
    }

    #[test]
    fn workflow_ids_differ_per_deployment_and_are_stable() {
        let a = workflow_id("{}", 1);
        assert_eq!(a.len(), 32);
        assert_eq!(a, workflow_id("{}", 1));
        assert_ne!(a, workflow_id("{}", 2));
        assert_ne!(a, workflow_id("{ }", 1));
    }

    #[test]
    fn status_shows_the_state_the_installed_update_and_the_failed_step() {
        let reported = json!({"deviceUpdate": {"__t": "c", "agent": {
            "state": 255,
            "installedUpdateId": "{\"provider\":\"testudo\",\"name\":\"gw\",\"version\":\"1.0.0\"}",
            "lastInstallResult": {"resultCode": 0, "extendedResultCode": 0x3000_0005_i64,
                                  "resultDetails": "the staged file's sha256 differs"}
        }}});
        let Value::Object(reported) = reported else {
            unreachable!()
        };
        let text = os_status_text("gw", &reported);
        assert!(
            text.starts_with("gw OS update: failed; installed update: testudo gw 1.0.0\n"),
            "{text}"
        );
        let step = testudo_os_update::FailedStep::from_extended_result_code(0x3000_0005)
            .map(|step| step.name())
            .unwrap_or("?");
        assert!(
            text.contains(&format!("last install: failed at {step}")),
            "{text}"
        );
        assert!(text.contains("(extended result code 0x30000005)"), "{text}");
        assert_eq!(os_status_text("gw", &Map::new()), "");
    }
}
