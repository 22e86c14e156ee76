//! Device Provisioning Service over MQTT (symmetric-key attestation: individual enrollments
//! and enrollment groups with derived keys), served on the same endpoint as the hub: a
//! CONNECT whose user name is `{idScope}/registrations/{registrationId}/...` is DPS.
//! Register answers 202 `assigning` with `retry-after=1`; polling the operation completes
//! the assignment, creating the device in the registry with the attested key.

use std::sync::Arc;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::hub::{to_json, Hub};
use crate::mqtt::{Connect, Packet};
use crate::session::{fault_delay, split_query, ConnectionEnd, Framed};
use crate::x509_ca::PresentedCertificate;

/// Serves one DPS connection.
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    hub: &Arc<Hub>,
    mut conn: Framed<S>,
    connect: &Connect,
    client: Option<&PresentedCertificate>,
    mut shutdown: watch::Receiver<bool>,
) {
    fault_delay(hub).await;
    let username = connect.username.as_deref().unwrap_or_default();
    let mut parts = username.splitn(4, '/');
    let (scope, marker, registration_id) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let code = if marker != "registrations" || registration_id != connect.client_id {
        4
    } else if hub.faults().throttle {
        3
    } else {
        match hub.authenticate_registration(
            scope,
            registration_id,
            connect.password.as_deref(),
            client,
        ) {
            Some(_) => 0,
            None => 5,
        }
    };
    let accepted = code == 0;
    if conn
        .write(&Packet::ConnAck {
            session_present: false,
            code,
        })
        .await
        .is_err()
        || !accepted
    {
        conn.shutdown().await;
        return;
    }
    let registration_id = registration_id.to_owned();
    let password = connect.password.clone();
    let client = client.cloned();
    let scope = scope.to_owned();
    // Responses are delivered, as by DPS, only after the client subscribed to them.
    let mut subscribed = false;
    loop {
        let packet = tokio::select! {
            packet = conn.read_packet() => packet,
            _ = shutdown.changed() => break,
        };
        let Ok(packet) = packet else { break };
        let result: Result<(), ConnectionEnd> = async {
            match packet {
                Packet::Subscribe { pkid, filters } => {
                    let codes = filters
                        .iter()
                        .map(|(filter, qos)| if filter == "$dps/registrations/res/#" { (*qos).min(1) } else { 0x80 })
                        .collect::<Vec<u8>>();
                    subscribed |= codes.iter().any(|code| *code != 0x80);
                    conn.write(&Packet::SubAck { pkid, codes }).await
                }
                Packet::PingReq => conn.write(&Packet::PingResp).await,
                Packet::Publish(publish) if publish.qos < 2 => {
                    fault_delay(hub).await;
                    let (path, params) = split_query(&publish.topic);
                    let rid = params.get("$rid").cloned().unwrap_or_default();
                    let (status, body) = if hub.faults().throttle {
                        (429, json!({"errorCode": 429001, "message": "throttled (emulator fault)"}))
                    } else if path == "$dps/registrations/PUT/iotdps-register/" {
                        let operation_id = hub.begin_registration(&registration_id);
                        (202, json!({"operationId": operation_id, "status": "assigning"}))
                    } else if path == "$dps/registrations/GET/iotdps-get-operationstatus/" {
                        let operation_id = params.get("operationId").cloned().unwrap_or_default();
                        let state = hub
                            .authenticate_registration(&scope, &registration_id, password.as_deref(), client.as_ref())
                            .and_then(|auth| hub.complete_registration(&operation_id, &registration_id, auth));
                        match state {
                            Some(state) => (
                                200,
                                json!({"operationId": operation_id, "status": "assigned", "registrationState": state}),
                            ),
                            None => (404, json!({"errorCode": 404201, "message": "unknown operation"})),
                        }
                    } else {
                        return Err(ConnectionEnd::Protocol);
                    };
                    let retry = if status == 202 || status == 429 { "&retry-after=1" } else { "" };
                    if subscribed {
                        conn.publish(
                            format!("$dps/registrations/res/{status}/?$rid={rid}{retry}"),
                            to_json(&body),
                        )
                        .await?;
                    }
                    if publish.qos == 1 {
                        conn.write(&Packet::PubAck { pkid: publish.pkid }).await?;
                    }
                    Ok(())
                }
                Packet::PubAck { .. } => Ok(()),
                Packet::Unsubscribe { pkid, .. } => conn.write(&Packet::UnsubAck { pkid }).await,
                _ => Err(ConnectionEnd::Protocol),
            }
        }
        .await;
        if result.is_err() {
            break;
        }
    }
    conn.shutdown().await;
}
