//! The hub's shared state and every operation on it, used by the MQTT device endpoint,
//! the HTTPS service API and the Rust API alike. Locks are held only for in-memory work;
//! files are written by a background persister in mutation order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::clock;
use crate::error::{HubError, TwinError};
use crate::faults::Faults;
use crate::registry::{validate_device_id, DeviceAuth, DeviceRecord, HubConfig, SERVICE_POLICY};
use crate::sas;
use crate::store::{write_atomic, Store};
use crate::x509_ca::PresentedCertificate;

/// A message the hub sends into a device's MQTT session.
#[derive(Debug)]
pub enum SessionCommand {
    /// Publish to the device (QoS 0).
    Publish {
        /// Topic.
        topic: String,
        /// Payload.
        payload: Vec<u8>,
    },
    /// Close the connection (a newer connection of the same device, or a fault).
    Close,
}

struct SessionHandle {
    conn_id: u64,
    tx: mpsc::UnboundedSender<SessionCommand>,
    methods_subscribed: bool,
}

/// A device's answer to a direct method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResponse {
    /// Status code the device chose.
    pub status: i64,
    /// Payload the device returned (JSON; `null` if empty or not JSON).
    pub payload: Value,
}

/// One captured device-to-cloud message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryMessage {
    /// Sending device.
    pub device_id: String,
    /// Sequence number across the hub (starts at 1 per emulator run).
    pub sequence: u64,
    /// Time the hub received it.
    pub enqueued_time_utc: String,
    /// Application and system properties from the topic (`$.ct`, `$.ce`, ...).
    pub properties: BTreeMap<String, String>,
    /// Body as UTF-8 text when it is, else absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Body as base64 when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

enum PersistJob {
    Device(String, Option<Vec<u8>>),
    Config(Vec<u8>),
    Telemetry(Vec<u8>),
    Faults(Vec<u8>),
    Flush(std_mpsc::Sender<()>),
}

struct Inner {
    config: HubConfig,
    devices: BTreeMap<String, DeviceRecord>,
    sessions: BTreeMap<String, SessionHandle>,
    methods: BTreeMap<(String, String), oneshot::Sender<MethodResponse>>,
    faults: Faults,
    telemetry: Vec<TelemetryMessage>,
    dps_operations: BTreeMap<String, String>,
    /// DPS TPM attestation: registration id -> the symmetric key (base64) last issued to it
    /// in an `authenticationKey` challenge.
    tpm_challenges: BTreeMap<String, String>,
}

/// The hub: registry, twins, sessions, pending methods, telemetry, faults.
pub struct Hub {
    inner: Mutex<Inner>,
    persist: Mutex<std_mpsc::Sender<PersistJob>>,
    next_id: AtomicU64,
    store: Store,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("dir", &self.store.dir())
            .finish()
    }
}

/// Outcome of a device authentication attempt (maps to the CONNACK return code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Accepted; the token (if any) expires at this Unix time.
    Accepted {
        /// SAS expiry, `None` for X.509.
        expiry: Option<u64>,
    },
    /// Refused: bad user name or password (CONNACK 4).
    BadCredentials,
    /// Refused: not authorized (CONNACK 5): unknown/disabled device, wrong key, expired token.
    NotAuthorized,
}

impl Hub {
    /// Loads the hub from `store`, creating its identity on first use. `host` becomes the
    /// hub host name (kept if the stored one is the same).
    pub fn open(store: Store, host: &str) -> Result<Arc<Hub>, HubError> {
        let config_path = store.path("hub.json");
        let mut config: HubConfig = match store.read_json(&config_path)? {
            Some(config) => config,
            None => HubConfig {
                host_name: host.to_owned(),
                service_key: sas::random_key(),
                id_scope: format!("0ne{:08X}", rand::random::<u32>()),
                individual_enrollments: BTreeMap::new(),
                enrollment_groups: BTreeMap::new(),
                x509_enrollments: BTreeMap::new(),
                tpm_enrollments: BTreeMap::new(),
                x509_enrollment_groups: BTreeMap::new(),
            },
        };
        config.host_name = host.to_owned();
        write_atomic(&config_path, &to_json(&config))?;
        let mut devices = BTreeMap::new();
        for id in store.device_ids()? {
            let path = store.device_path(&id);
            if let Some(record) = store.read_json::<DeviceRecord>(&path)? {
                devices.insert(id, record);
            }
        }
        let faults = store
            .read_json::<Faults>(&store.path("faults.json"))?
            .unwrap_or_default();
        let (tx, rx) = std_mpsc::channel();
        let writer_store = store.clone();
        std::thread::Builder::new()
            .name("hub-persist".into())
            .spawn(move || persist_loop(&writer_store, &rx))
            .map_err(HubError::Runtime)?;
        Ok(Arc::new(Hub {
            inner: Mutex::new(Inner {
                config,
                devices,
                sessions: BTreeMap::new(),
                methods: BTreeMap::new(),
                faults,
                telemetry: Vec::new(),
                dps_operations: BTreeMap::new(),
                tpm_challenges: BTreeMap::new(),
            }),
            persist: Mutex::new(tx),
            next_id: AtomicU64::new(1),
            store,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn persist(&self, job: PersistJob) {
        let sender = self.persist.lock().unwrap_or_else(|p| p.into_inner());
        // The persister only stops when the process exits.
        let _ = sender.send(job);
    }

    fn persist_device(&self, record: &DeviceRecord) {
        self.persist(PersistJob::Device(
            record.device_id.clone(),
            Some(to_json(record)),
        ));
    }

    /// Blocks until every state change so far is on disk.
    pub fn flush(&self) {
        let (tx, rx) = std_mpsc::channel();
        self.persist(PersistJob::Flush(tx));
        let _ = rx.recv_timeout(Duration::from_secs(30));
    }

    /// The state directory.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A fresh identifier (connections, request ids, operations).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The hub identity.
    pub fn config(&self) -> HubConfig {
        self.lock().config.clone()
    }

    /// The service connection string; `https_port` other than 443 is appended to the host.
    pub fn service_connection_string(&self, https_port: u16) -> String {
        let config = self.config();
        format!(
            "HostName={};SharedAccessKeyName={SERVICE_POLICY};SharedAccessKey={}",
            host_with_port(&config.host_name, https_port),
            config.service_key
        )
    }

    /// A device connection string for a SAS device.
    pub fn device_connection_string(&self, id: &str) -> Result<String, HubError> {
        let inner = self.lock();
        let record = inner
            .devices
            .get(id)
            .ok_or_else(|| HubError::DeviceNotFound { id: id.to_owned() })?;
        Ok(match &record.authentication {
            DeviceAuth::Sas { primary_key, .. } => format!(
                "HostName={};DeviceId={id};SharedAccessKey={primary_key}",
                inner.config.host_name
            ),
            DeviceAuth::SelfSigned { .. } | DeviceAuth::CertificateAuthority => format!(
                "HostName={};DeviceId={id};x509=true",
                inner.config.host_name
            ),
        })
    }

    /// Registers a device (fresh random keys when `auth` is `None`).
    pub fn add_device(&self, id: &str, auth: Option<DeviceAuth>) -> Result<DeviceRecord, HubError> {
        validate_device_id(id)?;
        let mut inner = self.lock();
        if inner.devices.contains_key(id) {
            return Err(HubError::DeviceExists { id: id.to_owned() });
        }
        let auth = auth.unwrap_or_else(|| DeviceAuth::Sas {
            primary_key: sas::random_key(),
            secondary_key: sas::random_key(),
        });
        let record = DeviceRecord::new(id, auth);
        inner.devices.insert(id.to_owned(), record.clone());
        self.persist_device(&record);
        Ok(record)
    }

    /// Creates or updates a device from a service-API identity document.
    /// Returns the stored identity, or an HTTP status and message.
    pub fn put_identity(
        &self,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Value, (u16, String)> {
        validate_device_id(id).map_err(|error| (400, error.to_string()))?;
        let auth = parse_identity_auth(body)?;
        let status = match body.get("status").and_then(Value::as_str) {
            None => "enabled",
            Some(status @ ("enabled" | "disabled")) => status,
            Some(other) => return Err((400, format!("invalid status {other:?}"))),
        }
        .to_owned();
        let mut inner = self.lock();
        let connected = inner.sessions.contains_key(id);
        let record = match inner.devices.get_mut(id) {
            Some(existing) => {
                match if_match {
                    None => return Err((409, format!("DeviceAlreadyExists: {id}"))),
                    Some(tag) if !etag_matches(tag, &existing.etag()) => {
                        return Err((412, "PreconditionFailed: etag mismatch".into()))
                    }
                    Some(_) => {}
                }
                existing.authentication = auth;
                existing.status = status;
                existing.revision += 1;
                existing.clone()
            }
            None => {
                let mut record = DeviceRecord::new(id, auth);
                record.status = status;
                inner.devices.insert(id.to_owned(), record.clone());
                record
            }
        };
        if record.status == "disabled" {
            kick(&mut inner, id);
        }
        self.persist_device(&record);
        Ok(record.identity_json(connected))
    }

    /// A device's registry record.
    pub fn device(&self, id: &str) -> Result<DeviceRecord, HubError> {
        self.lock()
            .devices
            .get(id)
            .cloned()
            .ok_or_else(|| HubError::DeviceNotFound { id: id.to_owned() })
    }

    /// Identity JSON of every device, sorted by id.
    pub fn identities(&self) -> Vec<Value> {
        let inner = self.lock();
        inner
            .devices
            .values()
            .map(|record| record.identity_json(inner.sessions.contains_key(&record.device_id)))
            .collect()
    }

    /// Identity JSON of one device.
    pub fn identity(&self, id: &str) -> Result<Value, HubError> {
        let inner = self.lock();
        let record = inner
            .devices
            .get(id)
            .ok_or_else(|| HubError::DeviceNotFound { id: id.to_owned() })?;
        Ok(record.identity_json(inner.sessions.contains_key(id)))
    }

    /// Deletes a device (closing its connection). `if_match` `*` or the device etag.
    pub fn delete_device(&self, id: &str, if_match: Option<&str>) -> Result<(), (u16, String)> {
        let mut inner = self.lock();
        let Some(record) = inner.devices.get(id) else {
            return Err((404, format!("DeviceNotFound: {id}")));
        };
        if let Some(tag) = if_match {
            if !etag_matches(tag, &record.etag()) {
                return Err((412, "PreconditionFailed: etag mismatch".into()));
            }
        }
        inner.devices.remove(id);
        kick(&mut inner, id);
        drop(inner);
        self.persist(PersistJob::Device(id.to_owned(), None));
        Ok(())
    }

    /// The service view of a twin.
    pub fn twin(&self, id: &str) -> Result<Value, HubError> {
        let inner = self.lock();
        let record = inner
            .devices
            .get(id)
            .ok_or_else(|| HubError::DeviceNotFound { id: id.to_owned() })?;
        Ok(record.twin_json(inner.sessions.contains_key(id)))
    }

    /// Updates a twin from a service-API twin document: merges `tags` and
    /// `properties.desired` (`replace` = PUT semantics: replaces them). Checks `if_match`
    /// against the twin etag. Pushes the desired change to the connected device.
    pub fn update_twin(
        &self,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        replace: bool,
    ) -> Result<Value, HubError> {
        let twin_error = |source| HubError::Twin {
            id: id.to_owned(),
            source,
        };
        let tags = object_at(body, &["tags"]).map_err(twin_error)?;
        let mut desired = object_at(body, &["properties", "desired"]).map_err(twin_error)?;
        if let Some(desired) = desired.as_mut() {
            desired.remove("$version");
            desired.remove("$metadata");
        }
        let now = clock::iso_now();
        let mut inner = self.lock();
        let record = inner
            .devices
            .get_mut(id)
            .ok_or_else(|| HubError::DeviceNotFound { id: id.to_owned() })?;
        if let Some(tag) = if_match {
            if !etag_matches(tag, &record.twin.etag()) {
                return Err(twin_error(TwinError::EtagMismatch));
            }
        }
        let mut twin = record.twin.clone();
        let mut pushed = None;
        if let Some(tags) = &tags {
            if replace {
                twin.tags.clear();
            }
            twin.patch_tags(tags).map_err(twin_error)?;
        }
        if let Some(desired) = &desired {
            let patch = if replace {
                let mut patch: Map<String, Value> = twin
                    .desired
                    .values
                    .keys()
                    .map(|key| (key.clone(), Value::Null))
                    .collect();
                patch.extend(desired.clone());
                crate::twin::validate_patch(desired).map_err(twin_error)?;
                twin.desired
                    .replace(desired, &now, true)
                    .map_err(twin_error)?;
                twin.version += 1;
                patch
            } else {
                twin.patch_desired(desired, &now).map_err(twin_error)?;
                desired.clone()
            };
            pushed = Some((patch, twin.desired.version));
        }
        record.twin = twin;
        let record = record.clone();
        if let Some((mut patch, version)) = pushed {
            patch.insert("$version".into(), json!(version));
            send(
                &mut inner,
                id,
                SessionCommand::Publish {
                    topic: format!("$iothub/twin/PATCH/properties/desired/?$version={version}"),
                    payload: to_json(&Value::Object(patch)),
                },
            );
        }
        let connected = inner.sessions.contains_key(id);
        drop(inner);
        self.persist_device(&record);
        Ok(record.twin_json(connected))
    }

    /// Patches desired properties (Rust API convenience); returns the new desired `$version`.
    pub fn patch_desired(&self, id: &str, patch: &Value) -> Result<u64, HubError> {
        let twin = self.update_twin(id, &json!({"properties": {"desired": patch}}), None, false)?;
        Ok(twin["properties"]["desired"]["$version"]
            .as_u64()
            .unwrap_or(0))
    }

    /// The full twin document as a device receives it.
    pub fn device_twin_document(&self, id: &str) -> Result<Value, HubError> {
        self.lock()
            .devices
            .get(id)
            .map(|record| record.twin.device_document())
            .ok_or_else(|| HubError::DeviceNotFound { id: id.to_owned() })
    }

    /// Applies a reported patch from a device; returns the new reported `$version`.
    pub fn patch_reported(&self, id: &str, payload: &[u8]) -> Result<u64, HubError> {
        let twin_error = |source| HubError::Twin {
            id: id.to_owned(),
            source,
        };
        let patch = crate::twin::parse_patch(payload).map_err(twin_error)?;
        let now = clock::iso_now();
        let mut inner = self.lock();
        let record = inner
            .devices
            .get_mut(id)
            .ok_or_else(|| HubError::DeviceNotFound { id: id.to_owned() })?;
        let version = record
            .twin
            .patch_reported(&patch, &now)
            .map_err(twin_error)?;
        let record = record.clone();
        drop(inner);
        self.persist_device(&record);
        Ok(version)
    }

    /// Records a telemetry message.
    pub fn record_telemetry(&self, id: &str, properties: BTreeMap<String, String>, payload: &[u8]) {
        let (body, body_base64) = match std::str::from_utf8(payload) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => {
                use base64::Engine as _;
                (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(payload)),
                )
            }
        };
        let mut inner = self.lock();
        let message = TelemetryMessage {
            device_id: id.to_owned(),
            sequence: inner.telemetry.len() as u64 + 1,
            enqueued_time_utc: clock::iso_now(),
            properties,
            body,
            body_base64,
        };
        let mut line = to_json(&message);
        line.push(b'\n');
        inner.telemetry.push(message);
        drop(inner);
        self.persist(PersistJob::Telemetry(line));
    }

    /// Captured telemetry of this run, optionally of one device.
    pub fn telemetry(&self, id: Option<&str>) -> Vec<TelemetryMessage> {
        self.lock()
            .telemetry
            .iter()
            .filter(|message| id.is_none_or(|id| message.device_id == id))
            .cloned()
            .collect()
    }

    /// Checks device credentials presented in CONNECT.
    pub fn authenticate_device(
        &self,
        id: &str,
        password: Option<&[u8]>,
        client: Option<&PresentedCertificate>,
    ) -> AuthOutcome {
        let inner = self.lock();
        let Some(record) = inner.devices.get(id) else {
            return AuthOutcome::NotAuthorized;
        };
        if record.status != "enabled" {
            return AuthOutcome::NotAuthorized;
        }
        match (&record.authentication, password) {
            (
                DeviceAuth::Sas {
                    primary_key,
                    secondary_key,
                },
                Some(password),
            ) => {
                let Some(token) = std::str::from_utf8(password).ok().and_then(sas::parse) else {
                    return AuthOutcome::BadCredentials;
                };
                let expected = format!("{}/devices/{id}", inner.config.host_name);
                if !resource_matches(&token.resource, &expected) {
                    return AuthOutcome::NotAuthorized;
                }
                if token.expiry <= clock::unix_now() {
                    return AuthOutcome::NotAuthorized;
                }
                if sas::signature_matches(&token, primary_key)
                    || sas::signature_matches(&token, secondary_key)
                {
                    AuthOutcome::Accepted {
                        expiry: Some(token.expiry),
                    }
                } else {
                    AuthOutcome::NotAuthorized
                }
            }
            (
                DeviceAuth::SelfSigned {
                    primary_thumbprint,
                    secondary_thumbprint,
                },
                _,
            ) => {
                let Some(presented) = client else {
                    return AuthOutcome::NotAuthorized;
                };
                let registered = [primary_thumbprint, secondary_thumbprint];
                let matches = registered.iter().any(|registered| {
                    !registered.is_empty()
                        && presented
                            .thumbprints
                            .iter()
                            .any(|p| p.eq_ignore_ascii_case(registered))
                });
                if matches {
                    AuthOutcome::Accepted { expiry: None }
                } else {
                    AuthOutcome::NotAuthorized
                }
            }
            (DeviceAuth::CertificateAuthority, _) => {
                let now = clock::unix_now();
                let verified = client.is_some_and(|presented| {
                    inner
                        .config
                        .x509_enrollment_groups
                        .values()
                        .any(|ca| presented.is_issued_for(ca, id, now))
                });
                if verified {
                    AuthOutcome::Accepted { expiry: None }
                } else {
                    AuthOutcome::NotAuthorized
                }
            }
            (DeviceAuth::Sas { .. }, None) => AuthOutcome::BadCredentials,
        }
    }

    /// Checks a service-API `Authorization` header.
    pub fn authenticate_service(&self, header: &str) -> bool {
        let Some(token) = sas::parse(header) else {
            return false;
        };
        let inner = self.lock();
        token.key_name.as_deref() == Some(SERVICE_POLICY)
            && resource_matches(&token.resource, &inner.config.host_name)
            && token.expiry > clock::unix_now()
            && sas::signature_matches(&token, &inner.config.service_key)
    }

    /// Registers a new session for `id`, closing any previous one (one connection per
    /// device, as IoT Hub enforces). Returns the connection id and the command stream.
    pub fn open_session(&self, id: &str) -> (u64, mpsc::UnboundedReceiver<SessionCommand>) {
        let conn_id = self.next_id();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.lock();
        kick(&mut inner, id);
        inner.sessions.insert(
            id.to_owned(),
            SessionHandle {
                conn_id,
                tx,
                methods_subscribed: false,
            },
        );
        (conn_id, rx)
    }

    /// Removes a session if it is still the current one for `id`.
    pub fn close_session(&self, id: &str, conn_id: u64) {
        let mut inner = self.lock();
        if inner
            .sessions
            .get(id)
            .is_some_and(|session| session.conn_id == conn_id)
        {
            inner.sessions.remove(id);
        }
    }

    /// Records whether session `conn_id` of `id` is subscribed to direct methods.
    pub fn set_methods_subscribed(&self, id: &str, conn_id: u64, subscribed: bool) {
        if let Some(session) = self
            .lock()
            .sessions
            .get_mut(id)
            .filter(|session| session.conn_id == conn_id)
        {
            session.methods_subscribed = subscribed;
        }
    }

    /// Whether the device has a live MQTT session.
    pub fn is_connected(&self, id: &str) -> bool {
        self.lock().sessions.contains_key(id)
    }

    /// Number of live device sessions.
    pub fn connection_count(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Invokes a direct method and waits for the device's answer.
    pub async fn invoke_method(
        &self,
        id: &str,
        method: &str,
        payload: &Value,
        timeout: Duration,
    ) -> Result<MethodResponse, HubError> {
        let rid = format!("{:x}", self.next_id());
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = self.lock();
            if !inner.devices.contains_key(id) {
                return Err(HubError::DeviceNotFound { id: id.to_owned() });
            }
            // IoT Hub answers "device not online" unless the device listens for methods.
            if !inner
                .sessions
                .get(id)
                .is_some_and(|session| session.methods_subscribed)
            {
                return Err(HubError::DeviceNotOnline { id: id.to_owned() });
            }
            inner.methods.insert((id.to_owned(), rid.clone()), tx);
            send(
                &mut inner,
                id,
                SessionCommand::Publish {
                    topic: format!("$iothub/methods/POST/{method}/?$rid={rid}"),
                    payload: to_json(payload),
                },
            );
        }
        let outcome = tokio::time::timeout(timeout, rx).await;
        self.lock().methods.remove(&(id.to_owned(), rid));
        match outcome {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) | Err(_) => Err(HubError::MethodTimeout {
                id: id.to_owned(),
                method: method.to_owned(),
            }),
        }
    }

    /// Completes a pending direct method with the device's reply.
    pub fn complete_method(&self, id: &str, rid: &str, status: i64, payload: &[u8]) {
        let pending = self.lock().methods.remove(&(id.to_owned(), rid.to_owned()));
        if let Some(pending) = pending {
            let payload = if payload.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(payload).unwrap_or(Value::Null)
            };
            let _ = pending.send(MethodResponse { status, payload });
        }
    }

    /// The fault settings in force.
    pub fn faults(&self) -> Faults {
        self.lock().faults
    }

    /// Sets the fault settings (also written to `faults.json`).
    pub fn set_faults(&self, faults: Faults) {
        let changed = {
            let mut inner = self.lock();
            let changed = inner.faults != faults;
            inner.faults = faults;
            changed
        };
        if changed {
            self.persist(PersistJob::Faults(to_json(&faults)));
        }
    }

    /// Sets faults read from `faults.json` (no write-back).
    pub fn load_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Closes the connection of one device, or of all (`None`).
    pub fn drop_connections(&self, id: Option<&str>) {
        let mut inner = self.lock();
        let ids: Vec<String> = match id {
            Some(id) => vec![id.to_owned()],
            None => inner.sessions.keys().cloned().collect(),
        };
        for id in ids {
            kick(&mut inner, &id);
        }
    }

    /// Changes the hub configuration (registry of enrollments) and queues it for persisting;
    /// the snapshot is taken under the lock so persisted files follow mutation order.
    fn update_config(&self, change: impl FnOnce(&mut HubConfig)) {
        let mut inner = self.lock();
        change(&mut inner.config);
        let bytes = to_json(&inner.config);
        drop(inner);
        self.persist(PersistJob::Config(bytes));
    }

    /// Sets the DPS ID scope devices must register under (`0ne` and 8 hex digits, as DPS
    /// issues them).
    pub fn set_id_scope(&self, scope: &str) -> Result<(), HubError> {
        let valid = scope.len() == 11
            && scope.starts_with("0ne")
            && scope[3..].bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(HubError::InvalidIdScope {
                scope: scope.to_owned(),
            });
        }
        self.update_config(|config| config.id_scope = scope.to_owned());
        Ok(())
    }

    /// Every DPS enrollment, as the DPS service API lists them: `registrationId` (or
    /// `enrollmentGroupId`) and `attestation` (`type` and its material).
    pub fn enrollments(&self) -> Value {
        let config = self.config();
        let mut list = Vec::new();
        for (id, key) in &config.individual_enrollments {
            list.push(json!({"registrationId": id, "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}}}));
        }
        for (id, key) in &config.enrollment_groups {
            list.push(json!({"enrollmentGroupId": id, "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}}}));
        }
        for (id, thumbprint) in &config.x509_enrollments {
            list.push(json!({"registrationId": id, "attestation": {"type": "x509", "x509": {"thumbprint": thumbprint}}}));
        }
        for (id, ca_pem) in &config.x509_enrollment_groups {
            list.push(json!({"enrollmentGroupId": id, "attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": ca_pem}}}}}));
        }
        for (id, endorsement_key) in &config.tpm_enrollments {
            list.push(json!({"registrationId": id, "attestation": {"type": "tpm", "tpm": {"endorsementKey": endorsement_key}}}));
        }
        Value::Array(list)
    }

    /// Adds or replaces the enrollment `id` from its DPS service API `attestation` object:
    /// `{"type": "tpm", "tpm": {"endorsementKey": BASE64}}`, `{"type": "symmetricKey",
    /// "symmetricKey": {"primaryKey": BASE64?}}` (a fresh key when absent) or `{"type":
    /// "x509", "x509": {"thumbprint": HEX}}`; `group` makes an enrollment group (symmetric
    /// key, or X.509 with `{"x509": {"signingCertificates": {"primary": {"certificate":
    /// PEM}}}}`).
    /// Returns the enrollment as [`Hub::enrollments`] lists it.
    pub fn put_enrollment(
        &self,
        id: &str,
        group: bool,
        attestation: &Value,
    ) -> Result<Value, HubError> {
        use base64::Engine as _;
        let invalid = |reason: &'static str| HubError::InvalidEnrollment {
            id: id.to_owned(),
            reason,
        };
        let kind = attestation["type"]
            .as_str()
            .ok_or_else(|| invalid("attestation.type is missing"))?;
        let id_field = if group {
            "enrollmentGroupId"
        } else {
            "registrationId"
        };
        match (kind, group) {
            ("symmetricKey", _) => {
                let key = match &attestation["symmetricKey"]["primaryKey"] {
                    Value::Null => None,
                    Value::String(key) => Some(key.clone()),
                    _ => return Err(invalid("symmetricKey.primaryKey is not a string")),
                };
                if let Some(key) = &key {
                    let decoded = base64::engine::general_purpose::STANDARD.decode(key);
                    if decoded.map_or(true, |bytes| bytes.len() < 16) {
                        return Err(invalid(
                            "symmetricKey.primaryKey is not base64 of at least 16 bytes",
                        ));
                    }
                }
                let key = if group {
                    self.add_enrollment_group(id, key)?
                } else {
                    self.add_individual_enrollment(id, key)?
                };
                Ok(
                    json!({id_field: id, "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}}}),
                )
            }
            ("tpm", false) => {
                let text = attestation["tpm"]["endorsementKey"]
                    .as_str()
                    .ok_or_else(|| invalid("tpm.endorsementKey is missing"))?;
                let endorsement_key = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| invalid("tpm.endorsementKey is not base64"))?;
                self.add_tpm_enrollment(id, &endorsement_key)?;
                Ok(
                    json!({id_field: id, "attestation": {"type": "tpm", "tpm": {"endorsementKey": text}}}),
                )
            }
            ("x509", false) => {
                let thumbprint = attestation["x509"]["thumbprint"]
                    .as_str()
                    .filter(|t| {
                        matches!(t.len(), 40 | 64) && t.bytes().all(|b| b.is_ascii_hexdigit())
                    })
                    .ok_or_else(|| {
                        invalid("x509.thumbprint is not a SHA-1 or SHA-256 hex digest")
                    })?;
                self.add_x509_enrollment(id, &thumbprint.to_ascii_uppercase())?;
                Ok(
                    json!({id_field: id, "attestation": {"type": "x509", "x509": {"thumbprint": thumbprint.to_ascii_uppercase()}}}),
                )
            }
            ("x509", true) => {
                let ca_pem = attestation["x509"]["signingCertificates"]["primary"]["certificate"]
                    .as_str()
                    .ok_or_else(|| {
                        invalid("x509.signingCertificates.primary.certificate is missing")
                    })?;
                self.add_x509_enrollment_group(id, ca_pem)?;
                Ok(
                    json!({id_field: id, "attestation": {"type": "x509", "x509": {"signingCertificates": {"primary": {"certificate": ca_pem}}}}}),
                )
            }
            ("tpm", true) => Err(invalid("TPM enrollments are individual enrollments only")),
            _ => Err(invalid("attestation.type is not tpm, symmetricKey or x509")),
        }
    }

    /// Removes the individual enrollment or enrollment group `id`, whatever its attestation;
    /// whether there was one.
    pub fn remove_enrollment(&self, id: &str) -> bool {
        let mut removed = false;
        self.update_config(|config| {
            removed |= config.individual_enrollments.remove(id).is_some();
            removed |= config.enrollment_groups.remove(id).is_some();
            removed |= config.x509_enrollments.remove(id).is_some();
            removed |= config.tpm_enrollments.remove(id).is_some();
            removed |= config.x509_enrollment_groups.remove(id).is_some();
        });
        removed
    }

    /// Adds a DPS individual enrollment (fresh key when `None`); returns its key.
    pub fn add_individual_enrollment(
        &self,
        registration_id: &str,
        key: Option<String>,
    ) -> Result<String, HubError> {
        validate_device_id(registration_id)?;
        let key = key.unwrap_or_else(sas::random_key);
        self.update_config(|config| {
            config
                .individual_enrollments
                .insert(registration_id.to_owned(), key.clone());
        });
        Ok(key)
    }

    /// Adds a DPS symmetric-key enrollment group (fresh key when `None`); returns its key.
    pub fn add_enrollment_group(
        &self,
        group: &str,
        key: Option<String>,
    ) -> Result<String, HubError> {
        validate_device_id(group)?;
        let key = key.unwrap_or_else(sas::random_key);
        self.update_config(|config| {
            config
                .enrollment_groups
                .insert(group.to_owned(), key.clone());
        });
        Ok(key)
    }

    /// Adds (or replaces) a DPS X.509 enrollment group: devices whose certificate chain leads
    /// to the CA certificate `ca_pem` register under their certificate's common name.
    pub fn add_x509_enrollment_group(&self, id: &str, ca_pem: &str) -> Result<(), HubError> {
        validate_device_id(id)?;
        crate::x509_ca::ca_certificate(ca_pem)?;
        self.update_config(|config| {
            config
                .x509_enrollment_groups
                .insert(id.to_owned(), ca_pem.to_owned());
        });
        Ok(())
    }

    /// Adds a DPS individual X.509 enrollment (certificate thumbprint, SHA-1 or SHA-256 hex).
    pub fn add_x509_enrollment(
        &self,
        registration_id: &str,
        thumbprint: &str,
    ) -> Result<(), HubError> {
        validate_device_id(registration_id)?;
        self.update_config(|config| {
            config
                .x509_enrollments
                .insert(registration_id.to_owned(), thumbprint.to_owned());
        });
        Ok(())
    }

    /// Adds a DPS individual TPM enrollment: `endorsement_key` is the EK's `TPM2B_PUBLIC`
    /// (RSA 2048), as `TPM2_ReadPublic` returns it.
    pub fn add_tpm_enrollment(
        &self,
        registration_id: &str,
        endorsement_key: &[u8],
    ) -> Result<(), HubError> {
        use base64::Engine as _;
        validate_device_id(registration_id)?;
        crate::tpm_wire::parse_rsa_storage_key(endorsement_key).map_err(|reason| {
            HubError::InvalidEndorsementKey {
                registration_id: registration_id.to_owned(),
                reason: reason.to_string(),
            }
        })?;
        let endorsement_key = base64::engine::general_purpose::STANDARD.encode(endorsement_key);
        self.update_config(|config| {
            config
                .tpm_enrollments
                .insert(registration_id.to_owned(), endorsement_key);
        });
        Ok(())
    }

    /// The enrolled endorsement key (`TPM2B_PUBLIC`, base64) of a TPM registration.
    pub fn tpm_enrollment(&self, id_scope: &str, registration_id: &str) -> Option<String> {
        let inner = self.lock();
        if id_scope != inner.config.id_scope {
            return None;
        }
        inner.config.tpm_enrollments.get(registration_id).cloned()
    }

    /// Remembers the symmetric key (base64) issued to a TPM registration in a challenge,
    /// replacing any earlier one.
    pub fn set_tpm_challenge(&self, registration_id: &str, key: &str) {
        self.lock()
            .tpm_challenges
            .insert(registration_id.to_owned(), key.to_owned());
    }

    /// Checks a SAS token of a TPM registration against the key issued in its challenge;
    /// returns how the provisioned device will authenticate to the hub.
    pub fn authenticate_tpm_registration(
        &self,
        id_scope: &str,
        registration_id: &str,
        authorization: &str,
    ) -> Option<DeviceAuth> {
        let inner = self.lock();
        if id_scope != inner.config.id_scope
            || !inner.config.tpm_enrollments.contains_key(registration_id)
        {
            return None;
        }
        let key = inner.tpm_challenges.get(registration_id)?;
        let token = sas::parse(authorization)?;
        if !resource_matches(
            &token.resource,
            &format!("{id_scope}/registrations/{registration_id}"),
        ) || token.expiry <= clock::unix_now()
            || !sas::signature_matches(&token, key)
        {
            return None;
        }
        Some(DeviceAuth::Sas {
            primary_key: key.clone(),
            secondary_key: key.clone(),
        })
    }

    /// Checks a DPS registration's credentials: a SAS token against its individual
    /// enrollment or any enrollment group, or (no password) a client certificate against its
    /// X.509 enrollment. Returns how the provisioned device will authenticate to the hub.
    pub fn authenticate_registration(
        &self,
        id_scope: &str,
        registration_id: &str,
        password: Option<&[u8]>,
        client: Option<&PresentedCertificate>,
    ) -> Option<DeviceAuth> {
        let inner = self.lock();
        if id_scope != inner.config.id_scope {
            return None;
        }
        let Some(password) = password else {
            let presented = client?;
            // An individual enrollment takes precedence over the groups, as in DPS.
            if let Some(registered) = inner.config.x509_enrollments.get(registration_id) {
                return presented
                    .thumbprints
                    .iter()
                    .any(|p| p.eq_ignore_ascii_case(registered))
                    .then(|| DeviceAuth::SelfSigned {
                        primary_thumbprint: registered.clone(),
                        secondary_thumbprint: String::new(),
                    });
            }
            let now = clock::unix_now();
            return inner
                .config
                .x509_enrollment_groups
                .values()
                .any(|ca| presented.is_issued_for(ca, registration_id, now))
                .then_some(DeviceAuth::CertificateAuthority);
        };
        let token = std::str::from_utf8(password).ok().and_then(sas::parse)?;
        if !resource_matches(
            &token.resource,
            &format!("{id_scope}/registrations/{registration_id}"),
        ) || token.expiry <= clock::unix_now()
        {
            return None;
        }
        let individual = inner
            .config
            .individual_enrollments
            .get(registration_id)
            .cloned();
        let derived = inner
            .config
            .enrollment_groups
            .values()
            .filter_map(|group_key| sas::derive_device_key(group_key, registration_id));
        individual
            .into_iter()
            .chain(derived)
            .find(|key| sas::signature_matches(&token, key))
            .map(|key| DeviceAuth::Sas {
                primary_key: key.clone(),
                secondary_key: key,
            })
    }

    /// Starts a DPS assignment: returns the operation id.
    pub fn begin_registration(&self, registration_id: &str) -> String {
        let operation_id = format!("4.{:016x}.{:x}", rand::random::<u64>(), self.next_id());
        self.lock()
            .dps_operations
            .insert(operation_id.clone(), registration_id.to_owned());
        operation_id
    }

    /// Completes a DPS assignment: creates or updates the device with `auth`; returns the
    /// registration state JSON, or `None` for an unknown operation.
    pub fn complete_registration(
        &self,
        operation_id: &str,
        registration_id: &str,
        auth: DeviceAuth,
    ) -> Option<Value> {
        let mut inner = self.lock();
        if inner.dps_operations.get(operation_id).map(String::as_str) != Some(registration_id) {
            return None;
        }
        let record = match inner.devices.get_mut(registration_id) {
            Some(existing) => {
                if existing.authentication != auth {
                    existing.authentication = auth;
                    existing.revision += 1;
                }
                existing.clone()
            }
            None => {
                let record = DeviceRecord::new(registration_id, auth);
                inner
                    .devices
                    .insert(registration_id.to_owned(), record.clone());
                record
            }
        };
        let host = inner.config.host_name.clone();
        drop(inner);
        self.persist_device(&record);
        let now = clock::iso_now();
        Some(json!({
            "registrationId": registration_id,
            "createdDateTimeUtc": now,
            "assignedHub": host,
            "deviceId": registration_id,
            "status": "assigned",
            "substatus": "initialAssignment",
            "lastUpdatedDateTimeUtc": now,
            "etag": record.etag(),
        }))
    }
}

fn persist_loop(store: &Store, rx: &std_mpsc::Receiver<PersistJob>) {
    while let Ok(first) = rx.recv() {
        // Coalesce: later writes of the same device supersede earlier ones.
        let mut devices: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
        let mut telemetry = Vec::new();
        let mut config = None;
        let mut faults = None;
        let mut flushes = Vec::new();
        let mut job = Some(first);
        while let Some(current) = job.take() {
            match current {
                PersistJob::Device(id, bytes) => {
                    devices.insert(id, bytes);
                }
                PersistJob::Config(bytes) => config = Some(bytes),
                PersistJob::Telemetry(line) => telemetry.extend(line),
                PersistJob::Faults(bytes) => faults = Some(bytes),
                PersistJob::Flush(done) => flushes.push(done),
            }
            job = rx.try_recv().ok();
        }
        let mut results = Vec::new();
        if let Some(bytes) = config {
            results.push(write_atomic(&store.path("hub.json"), &bytes));
        }
        if let Some(bytes) = faults {
            results.push(write_atomic(&store.path("faults.json"), &bytes));
        }
        for (id, bytes) in devices {
            let path = store.device_path(&id);
            results.push(match bytes {
                Some(bytes) => write_atomic(&path, &bytes),
                None => store.remove(&path),
            });
        }
        if !telemetry.is_empty() {
            results.push(store.append(&store.path("telemetry.jsonl"), &telemetry));
        }
        for error in results.into_iter().filter_map(Result::err) {
            eprintln!("testudo-hub: {}", crate::error_chain(&error));
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

fn kick(inner: &mut Inner, id: &str) {
    if let Some(session) = inner.sessions.remove(id) {
        let _ = session.tx.send(SessionCommand::Close);
    }
}

fn send(inner: &mut Inner, id: &str, command: SessionCommand) {
    if let Some(session) = inner.sessions.get(id) {
        let _ = session.tx.send(command);
    }
}

/// Serializes to compact JSON (serialization of these types cannot fail).
pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// `host` with `:port` unless the port is 443.
pub fn host_with_port(host: &str, port: u16) -> String {
    if port == 443 {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    }
}

/// Whether a token's resource names `expected` (case-insensitive; a `:port` after the
/// host name is accepted, since service clients sign the host name they dial).
fn resource_matches(resource: &str, expected: &str) -> bool {
    let resource = resource.to_ascii_lowercase();
    let expected = expected.to_ascii_lowercase();
    if resource == expected {
        return true;
    }
    let (host, rest) = expected
        .split_once('/')
        .map_or((expected.as_str(), ""), |(h, r)| (h, r));
    let Some(after_host) = resource
        .strip_prefix(host)
        .and_then(|tail| tail.strip_prefix(':'))
    else {
        return false;
    };
    let (port, tail) = after_host
        .split_once('/')
        .map_or((after_host, ""), |(p, t)| (p, t));
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && tail == rest
}

fn etag_matches(if_match: &str, etag: &str) -> bool {
    let tag = if_match.trim().trim_matches('"');
    tag == "*" || tag == etag
}

fn object_at(body: &Value, path: &[&str]) -> Result<Option<Map<String, Value>>, TwinError> {
    let mut value = body;
    for key in path {
        match value.get(key) {
            Some(Value::Null) | None => return Ok(None),
            Some(child) => value = child,
        }
    }
    match value {
        Value::Object(object) => Ok(Some(object.clone())),
        _ => Err(TwinError::NotAnObject),
    }
}

fn parse_identity_auth(body: &Value) -> Result<DeviceAuth, (u16, String)> {
    let auth = &body["authentication"];
    let text = |value: &Value| value.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    match auth["type"].as_str().unwrap_or("sas") {
        "sas" => Ok(DeviceAuth::Sas {
            primary_key: text(&auth["symmetricKey"]["primaryKey"]).unwrap_or_else(sas::random_key),
            secondary_key: text(&auth["symmetricKey"]["secondaryKey"])
                .unwrap_or_else(sas::random_key),
        }),
        "certificateAuthority" => Ok(DeviceAuth::CertificateAuthority),
        "selfSigned" => Ok(DeviceAuth::SelfSigned {
            primary_thumbprint: text(&auth["x509Thumbprint"]["primaryThumbprint"]).ok_or((
                400,
                "selfSigned authentication needs a primaryThumbprint".to_owned(),
            ))?,
            secondary_thumbprint: text(&auth["x509Thumbprint"]["secondaryThumbprint"])
                .unwrap_or_default(),
        }),
        other => Err((
            400,
            format!("authentication type {other:?} is not supported by the emulator"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_match_with_optional_port() {
        assert!(resource_matches(
            "localhost/devices/d1",
            "localhost/devices/d1"
        ));
        assert!(resource_matches(
            "LocalHost:8443/devices/d1",
            "localhost/devices/d1"
        ));
        assert!(resource_matches("localhost:8443", "localhost"));
        assert!(!resource_matches(
            "localhost/devices/d2",
            "localhost/devices/d1"
        ));
        assert!(!resource_matches(
            "localhostx/devices/d1",
            "localhost/devices/d1"
        ));
        assert!(!resource_matches(
            "localhost:/devices/d1",
            "localhost/devices/d1"
        ));
    }
}
