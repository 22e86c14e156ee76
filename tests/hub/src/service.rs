//! The service REST API subset over HTTPS, as `azure-iot-hub` calls it: registry
//! (`/devices`, `/devices/{id}`), twins (`/twins/{id}` GET/PATCH/PUT with `If-Match`),
//! direct methods (`POST /twins/{id}/methods`), authenticated with the service SAS token
//! (`skn=iothubowner`). Emulator extensions under `/testudo/`: `GET /testudo/telemetry
//! [?deviceId=]`, `GET|POST /testudo/faults`, and the artifact store
//! (`PUT|GET /testudo/artifacts/<sha256>`, [`crate::artifacts`]; downloads need no
//! credential). DPS TPM attestation over HTTPS
//! (`/{idScope}/registrations/...`) is routed to [`crate::dps_https`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::error::HubError;
use crate::faults::Faults;
use crate::hub::{to_json, Hub};
use crate::sas::url_decode;
use crate::session::split_query;

/// Largest request body accepted.
const MAX_BODY: usize = 1024 * 1024;

/// Serves one HTTPS connection (HTTP/1.1, keep-alive) until it closes or shutdown.
pub async fn serve_connection(
    hub: Arc<Hub>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
    else {
        return;
    };
    let service = hyper::service::service_fn(move |request| {
        let hub = hub.clone();
        async move { Ok::<_, Infallible>(handle(&hub, request).await) }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
    tokio::select! {
        _ = connection => {}
        _ = shutdown.changed() => {}
    }
}

fn respond(status: u16, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(if body.is_null() {
        Vec::new()
    } else {
        to_json(body)
    })));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !body.is_null() {
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    response
}

fn error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    respond(
        status,
        &json!({
            "Message": format!("ErrorCode:{code};{message}"),
            "ExceptionMessage": format!("Tracking ID:testudo-hub-emulator"),
        }),
    )
}

fn hub_error(failure: &HubError) -> Response<Full<Bytes>> {
    match failure {
        HubError::DeviceNotFound { .. } => error_for(404, "DeviceNotFound", failure),
        HubError::DeviceNotOnline { .. } => error_for(404, "DeviceNotOnline", failure),
        HubError::MethodTimeout { .. } => error_for(504, "GatewayTimeout", failure),
        HubError::Twin { source, .. } => {
            let code = match source.status() {
                412 => "PreconditionFailed",
                413 => "RequestEntityTooLarge",
                _ => "ArgumentInvalid",
            };
            error(source.status(), code, &crate::error_chain(failure))
        }
        HubError::InvalidDeviceId { .. } => error_for(400, "ArgumentInvalid", failure),
        _ => error_for(500, "ServerError", failure),
    }
}

fn error_for(status: u16, code: &str, err: &HubError) -> Response<Full<Bytes>> {
    error(status, code, &crate::error_chain(err))
}

/// `GET /testudo/artifacts/<sha256>`: the whole file, or from `Range: bytes=N-` on.
fn download(hub: &Hub, name: &str, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(bytes) = crate::artifacts::get(hub.store(), name) else {
        return error(404, "ArtifactNotFound", &format!("no artifact {name}"));
    };
    let range = request
        .headers()
        .get(hyper::header::RANGE)
        .and_then(|value| value.to_str().ok());
    let size = bytes.len();
    let start = crate::artifacts::range_start(range, size);
    let body = Bytes::from(bytes).slice(start.unwrap_or(0)..);
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(
        hyper::header::ACCEPT_RANGES,
        hyper::header::HeaderValue::from_static("bytes"),
    );
    if let Some(start) = start {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(value) =
            hyper::header::HeaderValue::from_str(&format!("bytes {start}-{}/{size}", size - 1))
        {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_RANGE, value);
        }
    }
    response
}

/// `PUT /testudo/artifacts/<sha256>` (service credential): keeps the body under its hash.
async fn upload(hub: &Hub, name: &str, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let limit = crate::artifacts::MAX_ARTIFACT;
    let body = match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return error(
                413,
                "RequestEntityTooLarge",
                &format!("an artifact is at most {limit} bytes"),
            )
        }
    };
    match crate::artifacts::put(hub.store(), name, &body) {
        Ok(Ok(())) => respond(201, &json!({ "sha256": name, "size": body.len() })),
        Ok(Err(crate::artifacts::UploadRefused::Name)) => error(
            400,
            "ArgumentInvalid",
            "an artifact is named by its sha256 (64 lower-case hex digits)",
        ),
        Ok(Err(crate::artifacts::UploadRefused::Hash { found })) => error(
            400,
            "ArgumentInvalid",
            &format!("the body's sha256 is {found}, not {name}"),
        ),
        Err(failure) => error_for(500, "ServerError", &failure),
    }
}

async fn handle(hub: &Arc<Hub>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let dps_segments: Vec<String> = request
        .uri()
        .path()
        .trim_matches('/')
        .split('/')
        .map(|segment| url_decode(segment).unwrap_or_else(|| segment.to_owned()))
        .collect();
    let dps_segments: Vec<&str> = dps_segments.iter().map(String::as_str).collect();
    if crate::dps_https::is_dps_path(&dps_segments) {
        // DPS authenticates registrations itself (TPM challenge, registration SAS).
        let method = request.method().clone();
        let authorization = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return error(413, "RequestEntityTooLarge", "request body too large"),
        };
        let parsed = serde_json::from_slice::<Value>(&body)
            .map_err(|e| format!("request body is not JSON: {e}"));
        let (status, answer) = crate::dps_https::handle(
            hub,
            &method,
            &dps_segments,
            authorization.as_deref(),
            parsed,
        );
        return respond(status, &answer);
    }
    if let [a, b, name] = dps_segments.as_slice() {
        if [*a, *b] == crate::artifacts::PATH && request.method() == Method::GET {
            return download(hub, name, &request);
        }
    }
    let authorized = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|header| hub.authenticate_service(header));
    if !authorized {
        return error(401, "IotHubUnauthorizedAccess", "Unauthorized");
    }
    if let [a, b, name] = dps_segments.as_slice() {
        if [*a, *b] == crate::artifacts::PATH && request.method() == Method::PUT {
            let name = (*name).to_owned();
            return upload(hub, &name, request).await;
        }
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let if_match = request
        .headers()
        .get(hyper::header::IF_MATCH)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return error(413, "RequestEntityTooLarge", "request body too large"),
    };
    let parsed: Result<Value, String> = if body.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice(&body).map_err(|e| format!("request body is not JSON: {e}"))
    };
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|segment| url_decode(segment).unwrap_or_else(|| segment.to_owned()))
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let result = match (&method, segments.as_slice()) {
        (&Method::GET, ["devices"]) => Ok(respond(200, &Value::Array(hub.identities()))),
        (&Method::GET, ["devices", id]) => hub.identity(id).map(|v| respond(200, &v)),
        (&Method::PUT, ["devices", id]) => {
            let body = match parsed {
                Ok(body) => body,
                Err(message) => return error(400, "ArgumentInvalid", &message),
            };
            return match hub.put_identity(id, &body, if_match.as_deref()) {
                Ok(identity) => respond(200, &identity),
                Err((status, message)) => error(status, "ArgumentInvalid", &message),
            };
        }
        (&Method::DELETE, ["devices", id]) => {
            return match hub.delete_device(id, if_match.as_deref()) {
                Ok(()) => respond(204, &Value::Null),
                Err((status, message)) => error(status, "DeviceNotFound", &message),
            };
        }
        (&Method::GET, ["twins", id]) => hub.twin(id).map(|v| respond(200, &v)),
        (&Method::PATCH | &Method::PUT, ["twins", id]) => {
            let body = match parsed {
                Ok(body) => body,
                Err(message) => return error(400, "ArgumentInvalid", &message),
            };
            let replace = method == Method::PUT;
            hub.update_twin(id, &body, if_match.as_deref(), replace)
                .map(|v| respond(200, &v))
        }
        (&Method::POST, ["twins", id, "methods"]) => {
            let body = match parsed {
                Ok(body) => body,
                Err(message) => return error(400, "ArgumentInvalid", &message),
            };
            let Some(name) = body.get("methodName").and_then(Value::as_str) else {
                return error(400, "ArgumentInvalid", "methodName is required");
            };
            let timeout = body
                .get("responseTimeoutInSeconds")
                .and_then(Value::as_u64)
                .unwrap_or(30)
                .clamp(5, 300);
            let payload = body.get("payload").cloned().unwrap_or(Value::Null);
            hub.invoke_method(id, name, &payload, Duration::from_secs(timeout))
                .await
                .map(|answer| {
                    respond(
                        200,
                        &json!({"status": answer.status, "payload": answer.payload}),
                    )
                })
        }
        // DPS enrollments, in the shape of the DPS service API (which Azure serves on the
        // DPS host; the emulator serves DPS and the hub on one port).
        (&Method::GET, ["enrollments"]) => Ok(respond(200, &hub.enrollments())),
        (&Method::PUT, [collection @ ("enrollments" | "enrollmentGroups"), id]) => {
            let body = match parsed {
                Ok(body) => body,
                Err(message) => return error(400, "ArgumentInvalid", &message),
            };
            let group = *collection == "enrollmentGroups";
            return match hub.put_enrollment(id, group, &body["attestation"]) {
                Ok(enrollment) => respond(200, &enrollment),
                Err(failure) => error_for(400, "ArgumentInvalid", &failure),
            };
        }
        (&Method::DELETE, ["enrollments" | "enrollmentGroups", id]) => {
            return if hub.remove_enrollment(id) {
                respond(204, &Value::Null)
            } else {
                error(404, "EnrollmentNotFound", &format!("no enrollment {id}"))
            };
        }
        (&Method::GET, ["testudo", "telemetry"]) => {
            let (_, params) = split_query(&format!("?{query}"));
            let messages = hub.telemetry(params.get("deviceId").map(String::as_str));
            Ok(respond(
                200,
                &serde_json::to_value(messages).unwrap_or_default(),
            ))
        }
        (&Method::GET, ["testudo", "faults"]) => Ok(respond(
            200,
            &serde_json::to_value(hub.faults()).unwrap_or_default(),
        )),
        (&Method::POST, ["testudo", "faults"]) => {
            let body = match parsed {
                Ok(body) => body,
                Err(message) => return error(400, "ArgumentInvalid", &message),
            };
            if let Some(target) = body.get("dropConnections").and_then(Value::as_str) {
                hub.drop_connections((target != "*").then_some(target));
            }
            let mut settings = body.clone();
            if let Some(object) = settings.as_object_mut() {
                object.remove("dropConnections");
            }
            if settings
                .as_object()
                .is_some_and(|object| !object.is_empty())
            {
                let mut merged = serde_json::to_value(hub.faults()).unwrap_or_default();
                if let (Some(merged), Some(settings)) =
                    (merged.as_object_mut(), settings.as_object())
                {
                    merged.extend(settings.clone());
                }
                match serde_json::from_value::<Faults>(merged) {
                    Ok(faults) => hub.set_faults(faults),
                    Err(e) => {
                        return error(400, "ArgumentInvalid", &format!("invalid faults: {e}"))
                    }
                }
            }
            Ok(respond(
                200,
                &serde_json::to_value(hub.faults()).unwrap_or_default(),
            ))
        }
        _ => return error(404, "NotFound", &format!("no route for {method} {path}")),
    };
    result.unwrap_or_else(|e| hub_error(&e))
}
