//! DPS over HTTPS with TPM attestation (individual enrollments), as Azure DPS and Azure's
//! device client (`aziot-identityd` + `aziot-tpmd`) do it, served on the emulator's HTTPS port:
//!
//! 1. `PUT /{idScope}/registrations/{registrationId}/register?api-version=...` with
//!    `{"registrationId", "tpm": {"endorsementKey", "storageRootKey"}}` (base64
//!    `TPM2B_PUBLIC`s) and no `Authorization`: if the EK is the enrolled one, DPS answers
//!    401 `{"authenticationKey": base64}` — a fresh HMAC key only that TPM can import under
//!    that SRK ([`crate::tpm_wire`]).
//! 2. The same PUT with `Authorization: SharedAccessSignature sr={idScope}/registrations/{id}
//!    &sig=...&se=...&skn=registration`, signed by the imported key inside the TPM: 202
//!    `{"operationId", "status": "assigning"}`.
//! 3. `GET /{idScope}/registrations/{id}/operations/{operationId}` (same authorization):
//!    200 `{"status": "assigned", "registrationState": {"assignedHub", "deviceId", ...}}`,
//!    and the device exists in the hub with that key as its SAS key.
//!
//! Failures answer like DPS: `{"errorCode", "trackingId", "message"}` with 400/401/404.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::hub::Hub;
use crate::tpm_wire;

/// A DPS answer: HTTP status and JSON body.
pub(crate) type DpsResponse = (u16, Value);

fn dps_error(status: u16, code: u32, message: &str) -> DpsResponse {
    (
        status,
        json!({"errorCode": code, "trackingId": "testudo-hub-emulator", "message": message}),
    )
}

/// Whether a request path (split into segments) is a DPS registration path.
pub(crate) fn is_dps_path(segments: &[&str]) -> bool {
    matches!(
        segments,
        [_, "registrations", _, "register"] | [_, "registrations", _, "operations", _]
    )
}

/// Answers one DPS HTTPS request. `body` is the parsed JSON body (`Err` with a reason when it
/// is not JSON).
pub(crate) fn handle(
    hub: &Hub,
    method: &hyper::Method,
    segments: &[&str],
    authorization: Option<&str>,
    body: Result<Value, String>,
) -> DpsResponse {
    match (method, segments) {
        (&hyper::Method::PUT, [scope, "registrations", id, "register"]) => {
            let body = match body {
                Ok(body) => body,
                Err(message) => return dps_error(400, 400_004, &message),
            };
            register(hub, scope, id, authorization, &body)
        }
        (&hyper::Method::GET, [scope, "registrations", id, "operations", operation_id]) => {
            operation_status(hub, scope, id, operation_id, authorization)
        }
        _ => dps_error(404, 404_000, "no such DPS operation"),
    }
}

fn register(
    hub: &Hub,
    scope: &str,
    registration_id: &str,
    authorization: Option<&str>,
    body: &Value,
) -> DpsResponse {
    if body
        .get("registrationId")
        .and_then(Value::as_str)
        .is_some_and(|id| id != registration_id)
    {
        return dps_error(
            400,
            400_004,
            "registrationId in the body differs from the path",
        );
    }
    let Some(enrolled) = hub.tpm_enrollment(scope, registration_id) else {
        // DPS does not reveal whether the scope or the enrollment is unknown.
        return dps_error(401, 401_002, "Unauthorized");
    };
    if let Some(authorization) = authorization {
        return match hub.authenticate_tpm_registration(scope, registration_id, authorization) {
            Some(_) => {
                let operation_id = hub.begin_registration(registration_id);
                (
                    202,
                    json!({"operationId": operation_id, "status": "assigning"}),
                )
            }
            None => dps_error(401, 401_002, "Unauthorized"),
        };
    }
    let text = |key: &str| {
        body.get("tpm")
            .and_then(|tpm| tpm.get(key))
            .and_then(Value::as_str)
    };
    let (Some(ek), Some(srk)) = (text("endorsementKey"), text("storageRootKey")) else {
        return dps_error(
            400,
            400_004,
            "tpm.endorsementKey and tpm.storageRootKey are required",
        );
    };
    let decode = |what: &str, b64: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| format!("{what} is not base64"))
            .and_then(|bytes| {
                tpm_wire::parse_rsa_storage_key(&bytes)
                    .map_err(|reason| format!("{what}: {reason}"))
            })
    };
    let keys = decode("endorsementKey", ek).and_then(|ek| {
        let enrolled = decode("enrolled endorsementKey", &enrolled)?;
        let srk = decode("storageRootKey", srk)?;
        Ok((ek, enrolled, srk))
    });
    let (ek, enrolled, srk) = match keys {
        Ok(keys) => keys,
        Err(message) => return dps_error(400, 400_004, &message),
    };
    if !ek.same_key(&enrolled) {
        return dps_error(401, 401_002, "Unauthorized");
    }
    let key = crate::sas::random_key();
    let Ok(key_bytes) = base64::engine::general_purpose::STANDARD.decode(&key) else {
        return dps_error(500, 500_000, "internal error");
    };
    match tpm_wire::authentication_key_blob(&ek, &srk, &key_bytes) {
        Ok(blob) => {
            hub.set_tpm_challenge(registration_id, &key);
            (
                401,
                json!({"authenticationKey": base64::engine::general_purpose::STANDARD.encode(blob)}),
            )
        }
        Err(message) => dps_error(400, 400_004, &message),
    }
}

fn operation_status(
    hub: &Hub,
    scope: &str,
    registration_id: &str,
    operation_id: &str,
    authorization: Option<&str>,
) -> DpsResponse {
    let Some(auth) = authorization
        .and_then(|header| hub.authenticate_tpm_registration(scope, registration_id, header))
    else {
        return dps_error(401, 401_002, "Unauthorized");
    };
    match hub.complete_registration(operation_id, registration_id, auth) {
        Some(state) => (
            200,
            json!({"operationId": operation_id, "status": "assigned", "registrationState": state}),
        ),
        None => dps_error(404, 404_201, "unknown operation"),
    }
}
