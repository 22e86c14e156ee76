//! The twin's `deviceUpdate` component ([`COMPONENT`], ADU's contract
//! [`CONTRACT_MODEL_ID`]): what the service asks in the desired `service` property, how the
//! device acknowledges it, and what it reports in `agent`.
//!
//! Desired (written by ADU; read by [`desired_update`], each field bounded):
//!
//! ```json
//! {"deviceUpdate": {"__t": "c", "service": {
//!     "workflow": {"action": 3, "id": "<workflow id>", "retryTimestamp": "<optional>"},
//!     "updateManifest": "<manifest JSON, as a string>",
//!     "updateManifestSignature": "<compact JWS>",
//!     "fileUrls": {"<file id>": "<url>"}}}}
//! ```
//!
//! Acknowledged ([`acknowledgement`]; IoT Plug and Play's writable property response):
//! `{"deviceUpdate": {"__t": "c", "service": {"ac": 200, "av": <desired $version>, "ad": "…",
//! "value": {}}}}`.
//!
//! Reported ([`AgentReport::reported_patch`]):
//!
//! ```json
//! {"deviceUpdate": {"__t": "c", "agent": {
//!     "deviceProperties": {"manufacturer", "model", "contractModelId", "aduVer"},
//!     "compatPropertyNames": "manufacturer,model",
//!     "lastInstallResult": {"resultCode": 700, "extendedResultCode": 0, "resultDetails": "",
//!                           "stepResults": {"step_0": {"resultCode", "extendedResultCode", "resultDetails"}}},
//!     "state": 0,
//!     "workflow": {"action": 3, "id": "<workflow id>"},
//!     "installedUpdateId": "{\"provider\":\"…\",\"name\":\"…\",\"version\":\"…\"}"}}}
//! ```
//!
//! What is absent is written as `null`, so a report merged over an earlier one removes what
//! no longer holds. Nothing here is trusted: the manifest is verified by
//! `signature::verify`, file URLs are where to fetch, not what to trust.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::OsUpdateError;
use crate::manifest::{UpdateId, MAX_FILES, MAX_MANIFEST_BYTES};
use crate::result::{FailedStep, APPLIED, CANCELLED, FAILURE};
use crate::MAX_SIGNATURE_BYTES;

/// The twin component ADU reads and writes.
pub const COMPONENT: &str = "deviceUpdate";

/// The ADU contract a device implements (reported as `contractModelId`).
pub const CONTRACT_MODEL_ID: &str = "dtmi:azure:iot:deviceUpdateContractModel;3";

/// The agent version reported as `aduVer`: the ADU agent generation whose protocol (update
/// manifest version 5, workflows) the device speaks.
pub const ADU_VERSION: &str = "DU;agent/1.0.0";

/// ADU's default `compatPropertyNames`: the device properties a manifest's compatibility
/// names.
pub const DEFAULT_COMPAT_PROPERTY_NAMES: &str = "manufacturer,model";

/// The acknowledgement code of a desired `service` taken on.
pub const ACCEPTED: u16 = 200;

/// The acknowledgement code of a desired `service` refused.
pub const REJECTED: u16 = 406;

/// Most bytes of a workflow id.
pub const MAX_WORKFLOW_ID_BYTES: usize = 256;

/// Most bytes of a `retryTimestamp`.
pub const MAX_TIMESTAMP_BYTES: usize = 64;

/// Most bytes of a file URL (SAS URLs run to a few hundred).
pub const MAX_URL_BYTES: usize = 4096;

/// Most bytes of a file id in `fileUrls`.
pub const MAX_FILE_ID_BYTES: usize = 256;

/// What the service asks of the device (`workflow.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkflowAction {
    /// 3: apply the deployment (ADU's ProcessDeployment).
    Apply,
    /// 255: stop processing the workflow, back to idle.
    Cancel,
    /// Another number (older agents' download/install/apply): not acted on.
    Other(i64),
}

impl WorkflowAction {
    /// ADU's number of the action.
    pub fn code(self) -> i64 {
        match self {
            WorkflowAction::Apply => 3,
            WorkflowAction::Cancel => 255,
            WorkflowAction::Other(code) => code,
        }
    }

    /// The action numbered `code`.
    pub fn from_code(code: i64) -> WorkflowAction {
        match code {
            3 => WorkflowAction::Apply,
            255 => WorkflowAction::Cancel,
            other => WorkflowAction::Other(other),
        }
    }
}

/// The desired `workflow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    /// What to do.
    pub action: WorkflowAction,
    /// The workflow's id: a new id is a new deployment.
    pub id: String,
    /// Set when the service asks to retry the same workflow.
    pub retry_timestamp: Option<String>,
}

/// The desired `deviceUpdate.service`, read but not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredUpdate {
    /// The workflow.
    pub workflow: Workflow,
    /// `updateManifest`, byte for byte (its exact bytes are signed). Absent for a cancel.
    pub update_manifest: Option<String>,
    /// `updateManifestSignature`.
    pub update_manifest_signature: Option<String>,
    /// `fileUrls`: where each file id of the manifest can be fetched.
    pub file_urls: BTreeMap<String, String>,
}

/// The update ADU asks for in the device's complete desired properties `desired`: `None`
/// when there is no `deviceUpdate.service` (or it is `null`); an error naming the field when
/// it is there but not of ADU's shape or beyond the bounds. Fields ADU may add are ignored.
pub fn desired_update(desired: &Value) -> Option<Result<DesiredUpdate, OsUpdateError>> {
    let service = desired.get(COMPONENT)?.get("service")?;
    if service.is_null() {
        return None;
    }
    Some(read_service(service))
}

fn read_service(service: &Value) -> Result<DesiredUpdate, OsUpdateError> {
    let service = service.as_object().ok_or_else(|| shape("", "an object"))?;
    let workflow = service
        .get("workflow")
        .and_then(Value::as_object)
        .ok_or_else(|| shape("workflow", "an object with `action` and `id`"))?;
    let action = workflow
        .get("action")
        .and_then(Value::as_i64)
        .ok_or_else(|| shape("workflow.action", "an integer"))?;
    let id = string(workflow, "id", "workflow.id", MAX_WORKFLOW_ID_BYTES)?
        .ok_or_else(|| shape("workflow.id", "a string"))?;
    if id.is_empty() {
        return Err(shape("workflow.id", "a non-empty string"));
    }
    let retry_timestamp = string(
        workflow,
        "retryTimestamp",
        "workflow.retryTimestamp",
        MAX_TIMESTAMP_BYTES,
    )?;
    let update_manifest = string(
        service,
        "updateManifest",
        "updateManifest",
        MAX_MANIFEST_BYTES,
    )?;
    let update_manifest_signature = string(
        service,
        "updateManifestSignature",
        "updateManifestSignature",
        MAX_SIGNATURE_BYTES,
    )?;
    let mut file_urls = BTreeMap::new();
    match service.get("fileUrls") {
        None | Some(Value::Null) => {}
        Some(Value::Object(urls)) => {
            if urls.len() > MAX_FILES {
                return Err(shape("fileUrls", "at most 10 files"));
            }
            for (file_id, url) in urls {
                if file_id.len() > MAX_FILE_ID_BYTES {
                    return Err(OsUpdateError::DesiredSize {
                        field: "fileUrls (a file id)".to_owned(),
                        found: file_id.len(),
                        max: MAX_FILE_ID_BYTES,
                    });
                }
                let field = format!("fileUrls.{file_id}");
                let url = match url {
                    // ADU's own parser skips a file without a URL.
                    Value::Null => continue,
                    Value::String(url) => url,
                    _ => return Err(shape(&field, "a string")),
                };
                if url.len() > MAX_URL_BYTES {
                    return Err(OsUpdateError::DesiredSize {
                        field,
                        found: url.len(),
                        max: MAX_URL_BYTES,
                    });
                }
                file_urls.insert(file_id.clone(), url.clone());
            }
        }
        Some(_) => return Err(shape("fileUrls", "an object of file id to URL")),
    }
    Ok(DesiredUpdate {
        workflow: Workflow {
            action: WorkflowAction::from_code(action),
            id,
            retry_timestamp,
        },
        update_manifest,
        update_manifest_signature,
        file_urls,
    })
}

/// `object[key]` as a string of at most `max` bytes; absent or `null` is `None`.
fn string(
    object: &Map<String, Value>,
    key: &str,
    field: &str,
    max: usize,
) -> Result<Option<String>, OsUpdateError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.len() > max => Err(OsUpdateError::DesiredSize {
            field: field.to_owned(),
            found: text.len(),
            max,
        }),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(shape(field, "a string")),
    }
}

fn shape(field: &str, rule: &'static str) -> OsUpdateError {
    OsUpdateError::Desired {
        field: field.to_owned(),
        rule,
    }
}

/// The desired patch that asks a device to apply `update` (what `testudo deploy os` sets, as
/// ADU's service does): `{"deviceUpdate": {"__t": "c", "service": {"workflow": {"action",
/// "id"[, "retryTimestamp"]}, "updateManifest", "updateManifestSignature", "fileUrls"}}}`.
/// [`desired_update`] reads it back unchanged.
pub fn desired_patch(update: &DesiredUpdate) -> Value {
    let mut workflow = json!({
        "action": update.workflow.action.code(),
        "id": update.workflow.id,
    });
    if let Some(retry) = &update.workflow.retry_timestamp {
        workflow["retryTimestamp"] = json!(retry);
    }
    json!({
        COMPONENT: {
            "__t": "c",
            "service": {
                "workflow": workflow,
                "updateManifest": update.update_manifest,
                "updateManifestSignature": update.update_manifest_signature,
                "fileUrls": update.file_urls,
            }
        }
    })
}

/// The reported patch acknowledging the desired `service` of desired `$version`
/// `desired_version`: `code` [`ACCEPTED`] or [`REJECTED`], `description` why.
pub fn acknowledgement(desired_version: u64, code: u16, description: &str) -> Value {
    json!({
        COMPONENT: {
            "__t": "c",
            "service": {
                "ac": code,
                "av": desired_version,
                "ad": description,
                // IoT Plug and Play's response carries the value; ADU does not need it back.
                "value": {},
            }
        }
    })
}

/// What the device is doing (reported `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// 0: no workflow in progress (the last one ended; its result is in
    /// `lastInstallResult`).
    Idle = 0,
    /// 6: a workflow is in progress (reported when it starts; the result only at its end).
    DeploymentInProgress = 6,
    /// 255: the last workflow failed.
    Failed = 255,
}

/// How the last workflow ended (reported `lastInstallResult`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstallResult {
    /// [`APPLIED`], [`FAILURE`] or [`CANCELLED`].
    pub result_code: i64,
    /// 0, or for a failure [`FailedStep::extended_result_code`].
    pub extended_result_code: i64,
    /// Why, in one line.
    pub result_details: String,
}

impl InstallResult {
    /// An update installed and running.
    pub fn applied(details: &str) -> InstallResult {
        InstallResult {
            result_code: APPLIED,
            extended_result_code: 0,
            result_details: details.to_owned(),
        }
    }

    /// An update that failed at `step`.
    pub fn failed(step: FailedStep, details: &str) -> InstallResult {
        InstallResult {
            result_code: FAILURE,
            extended_result_code: step.extended_result_code(),
            result_details: details.to_owned(),
        }
    }

    /// An update cancelled before it was installed.
    pub fn cancelled(details: &str) -> InstallResult {
        InstallResult {
            result_code: CANCELLED,
            extended_result_code: 0,
            result_details: details.to_owned(),
        }
    }
}

/// The device's reported `deviceProperties`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceProperties {
    /// The manufacturer (a compatibility property).
    pub manufacturer: String,
    /// The model (a compatibility property).
    pub model: String,
    /// [`CONTRACT_MODEL_ID`].
    pub contract_model_id: String,
    /// [`ADU_VERSION`].
    pub adu_ver: String,
}

impl DeviceProperties {
    /// A device's properties with this crate's contract and agent version.
    pub fn new(manufacturer: &str, model: &str) -> DeviceProperties {
        DeviceProperties {
            manufacturer: manufacturer.to_owned(),
            model: model.to_owned(),
            contract_model_id: CONTRACT_MODEL_ID.to_owned(),
            adu_ver: ADU_VERSION.to_owned(),
        }
    }
}

/// Everything the device reports under `agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentReport {
    /// What it is doing.
    pub state: AgentState,
    /// The workflow it works on or last worked on.
    pub workflow: Option<(WorkflowAction, String)>,
    /// The update the running system was installed from; `None` before the first.
    pub installed_update_id: Option<UpdateId>,
    /// How the last workflow ended.
    pub last_install_result: Option<InstallResult>,
    /// The device's properties.
    pub device_properties: DeviceProperties,
    /// The properties compatibility is decided by, comma separated
    /// ([`DEFAULT_COMPAT_PROPERTY_NAMES`]).
    pub compat_property_names: String,
}

impl AgentReport {
    /// The reported-properties patch:
    /// `{"deviceUpdate":{"__t":"c","agent":{...}}}` with ADU's field names. The one step's
    /// result (`stepResults.step_0`) is the install result itself.
    pub fn reported_patch(&self) -> Value {
        let last_install_result = self.last_install_result.as_ref().map(|result| {
            json!({
                "resultCode": result.result_code,
                "extendedResultCode": result.extended_result_code,
                "resultDetails": result.result_details,
                "stepResults": { "step_0": result },
            })
        });
        let workflow = self
            .workflow
            .as_ref()
            .map(|(action, id)| json!({ "action": action.code(), "id": id }));
        json!({
            COMPONENT: {
                "__t": "c",
                "agent": {
                    "deviceProperties": self.device_properties,
                    "compatPropertyNames": self.compat_property_names,
                    "lastInstallResult": last_install_result,
                    "state": self.state as i64,
                    "workflow": workflow,
                    "installedUpdateId": self.installed_update_id.as_ref().map(UpdateId::to_json_string),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(service: Value) -> Value {
        json!({"$version": 7, "deviceUpdate": {"__t": "c", "service": service}, "apps": {}})
    }

    fn apply() -> Value {
        json!({
            "workflow": {"action": 3, "id": "4d1f-aa", "retryTimestamp": "2026-12-04T10:00:00Z"},
            "updateManifest": "{\"manifestVersion\":\"5\"}",
            "updateManifestSignature": "a.b.c",
            "fileUrls": {"bundle": "http://example.invalid/u.raucb", "skipped": null},
            "somethingNew": [1, 2, 3]
        })
    }

    #[test]
    fn an_apply_is_read_field_by_field() {
        let update = desired_update(&desired(apply())).unwrap().unwrap();
        assert_eq!(
            update,
            DesiredUpdate {
                workflow: Workflow {
                    action: WorkflowAction::Apply,
                    id: "4d1f-aa".into(),
                    retry_timestamp: Some("2026-12-04T10:00:00Z".into()),
                },
                update_manifest: Some("{\"manifestVersion\":\"5\"}".into()),
                update_manifest_signature: Some("a.b.c".into()),
                file_urls: BTreeMap::from([(
                    "bundle".to_owned(),
                    "http://example.invalid/u.raucb".to_owned()
                )]),
            }
        );
        let cancel = desired_update(&desired(json!({"workflow": {"action": 255, "id": "x"}})))
            .unwrap()
            .unwrap();
        assert_eq!(cancel.workflow.action, WorkflowAction::Cancel);
        assert_eq!(cancel.update_manifest, None);
        assert!(cancel.file_urls.is_empty());
        let old = desired_update(&desired(json!({"workflow": {"action": 0, "id": "x"}})))
            .unwrap()
            .unwrap();
        assert_eq!(old.workflow.action, WorkflowAction::Other(0));
        assert_eq!(WorkflowAction::from_code(3).code(), 3);
    }

    #[test]
    fn no_service_is_no_update() {
        for document in [
            json!({}),
            json!({"deviceUpdate": {"__t": "c"}}),
            json!({"deviceUpdate": "nonsense"}),
            json!({"deviceUpdate": {"service": null}}),
            json!([1, 2]),
            json!(null),
        ] {
            assert!(desired_update(&document).is_none(), "{document}");
        }
    }

    fn refused(service: Value) -> OsUpdateError {
        match desired_update(&desired(service)) {
            Some(Err(error)) => error,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn refused_field(service: Value) -> String {
        match refused(service) {
            OsUpdateError::Desired { field, .. } | OsUpdateError::DesiredSize { field, .. } => {
                field
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn hostile_shapes_are_refused_naming_the_field() {
        let with = |edit: fn(&mut Value)| {
            let mut service = apply();
            edit(&mut service);
            service
        };
        assert_eq!(refused_field(json!("apply")), "");
        assert_eq!(refused_field(json!([])), "");
        assert_eq!(
            refused_field(with(|s| s["workflow"] = json!(3))),
            "workflow"
        );
        assert_eq!(
            refused_field(with(|s| {
                s.as_object_mut().unwrap().remove("workflow");
            })),
            "workflow"
        );
        assert_eq!(
            refused_field(with(|s| s["workflow"]["action"] = json!("3"))),
            "workflow.action"
        );
        assert_eq!(
            refused_field(with(|s| s["workflow"]["action"] = json!(3.5))),
            "workflow.action"
        );
        assert_eq!(
            refused_field(with(|s| s["workflow"]["id"] = json!(17))),
            "workflow.id"
        );
        assert_eq!(
            refused_field(with(|s| s["workflow"]["id"] = json!(""))),
            "workflow.id"
        );
        assert_eq!(
            refused_field(with(|s| {
                s["workflow"].as_object_mut().unwrap().remove("id");
            })),
            "workflow.id"
        );
        assert_eq!(
            refused_field(with(|s| s["workflow"]["retryTimestamp"] = json!({}))),
            "workflow.retryTimestamp"
        );
        assert_eq!(
            refused_field(with(|s| s["updateManifest"] = json!({"a": 1}))),
            "updateManifest"
        );
        assert_eq!(
            refused_field(with(|s| s["updateManifestSignature"] = json!(["a"]))),
            "updateManifestSignature"
        );
        assert_eq!(
            refused_field(with(|s| s["fileUrls"] = json!(["u"]))),
            "fileUrls"
        );
        assert_eq!(
            refused_field(with(|s| s["fileUrls"]["bundle"] = json!(1))),
            "fileUrls.bundle"
        );
    }

    #[test]
    fn huge_strings_and_many_files_are_refused_unread() {
        let mut service = apply();
        service["updateManifest"] = json!("m".repeat(MAX_MANIFEST_BYTES + 1));
        assert!(matches!(
            refused(service),
            OsUpdateError::DesiredSize { field, found, max }
                if field == "updateManifest" && found == MAX_MANIFEST_BYTES + 1 && max == MAX_MANIFEST_BYTES
        ));
        let mut service = apply();
        service["updateManifestSignature"] = json!("s".repeat(MAX_SIGNATURE_BYTES + 1));
        assert_eq!(refused_field(service), "updateManifestSignature");
        let mut service = apply();
        service["workflow"]["id"] = json!("w".repeat(MAX_WORKFLOW_ID_BYTES + 1));
        assert_eq!(refused_field(service), "workflow.id");
        let mut service = apply();
        service["fileUrls"]["bundle"] = json!("u".repeat(MAX_URL_BYTES + 1));
        assert_eq!(refused_field(service), "fileUrls.bundle");
        let mut service = apply();
        service["fileUrls"] = (0..=MAX_FILES)
            .map(|i| (format!("f{i}"), json!("u")))
            .collect();
        assert_eq!(refused_field(service), "fileUrls");
        let mut service = apply();
        service["fileUrls"] = json!({ "i".repeat(MAX_FILE_ID_BYTES + 1): "u" });
        assert!(matches!(
            refused(service),
            OsUpdateError::DesiredSize { .. }
        ));
    }

    #[test]
    fn the_acknowledgement_is_a_component_response() {
        assert_eq!(
            acknowledgement(7, ACCEPTED, "staging"),
            json!({"deviceUpdate": {"__t": "c", "service": {"ac": 200, "av": 7, "ad": "staging", "value": {}}}})
        );
        assert_eq!(
            acknowledgement(8, REJECTED, "no")["deviceUpdate"]["service"]["ac"],
            406
        );
    }

    fn report() -> AgentReport {
        AgentReport {
            state: AgentState::Idle,
            workflow: Some((WorkflowAction::Apply, "4d1f-aa".into())),
            installed_update_id: Some(UpdateId {
                provider: "testudo".into(),
                name: "gateway".into(),
                version: "1.3.0".into(),
            }),
            last_install_result: Some(InstallResult::applied("")),
            device_properties: DeviceProperties::new("testudo", "testudo-gateway-qemu-x86_64"),
            compat_property_names: DEFAULT_COMPAT_PROPERTY_NAMES.into(),
        }
    }

    #[test]
    fn the_report_has_adu_s_field_names() {
        let patch = report().reported_patch();
        assert_eq!(
            patch,
            json!({"deviceUpdate": {"__t": "c", "agent": {
                "deviceProperties": {
                    "manufacturer": "testudo",
                    "model": "testudo-gateway-qemu-x86_64",
                    "contractModelId": "dtmi:azure:iot:deviceUpdateContractModel;3",
                    "aduVer": "DU;agent/1.0.0"
                },
                "compatPropertyNames": "manufacturer,model",
                "lastInstallResult": {
                    "resultCode": 700, "extendedResultCode": 0, "resultDetails": "",
                    "stepResults": {"step_0": {"resultCode": 700, "extendedResultCode": 0, "resultDetails": ""}}
                },
                "state": 0,
                "workflow": {"action": 3, "id": "4d1f-aa"},
                "installedUpdateId": "{\"provider\":\"testudo\",\"name\":\"gateway\",\"version\":\"1.3.0\"}"
            }}})
        );
    }

    #[test]
    fn a_failure_reports_its_step_and_absent_values_are_null() {
        let report = AgentReport {
            state: AgentState::Failed,
            workflow: None,
            installed_update_id: None,
            last_install_result: Some(InstallResult::failed(FailedStep::FileHash, "hash")),
            ..report()
        };
        let agent = &report.reported_patch()["deviceUpdate"]["agent"];
        assert_eq!(agent["state"], 255);
        assert_eq!(agent["lastInstallResult"]["resultCode"], 0);
        assert_eq!(
            agent["lastInstallResult"]["extendedResultCode"],
            0x3000_0005
        );
        assert_eq!(
            agent["lastInstallResult"]["stepResults"]["step_0"]["resultDetails"],
            "hash"
        );
        assert!(agent["workflow"].is_null());
        assert!(agent["installedUpdateId"].is_null());
        let idle = AgentReport {
            state: AgentState::DeploymentInProgress,
            last_install_result: None,
            ..report
        };
        let agent = &idle.reported_patch()["deviceUpdate"]["agent"];
        assert_eq!(agent["state"], 6);
        assert!(agent["lastInstallResult"].is_null());
        assert_eq!(InstallResult::cancelled("").result_code, -1);
    }

    #[test]
    fn a_desired_patch_reads_back_as_the_update_it_was_made_from() {
        let update = DesiredUpdate {
            workflow: Workflow {
                action: WorkflowAction::Apply,
                id: "4d1f".into(),
                retry_timestamp: None,
            },
            update_manifest: Some("{\"manifestVersion\":\"5\"}".into()),
            update_manifest_signature: Some("a.b.c".into()),
            file_urls: [("bundle".to_owned(), "https://hub/x".to_owned())].into(),
        };
        let patch = desired_patch(&update);
        assert_eq!(patch[COMPONENT]["__t"], "c");
        assert_eq!(patch[COMPONENT]["service"]["workflow"]["action"], 3);
        assert_eq!(desired_update(&patch).unwrap().unwrap(), update);
    }
}
