//! Running the emulator: [`Emulator::start`] binds both endpoints on loopback, serves them on
//! a tokio runtime of its own (independent of the caller's), and returns a [`RunningHub`]
//! handle with the Rust API other crates' tests use.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::error::HubError;
use crate::faults::Faults;
use crate::hub::{to_json, Hub, MethodResponse, TelemetryMessage};
use crate::registry::{DeviceAuth, SERVICE_POLICY};
use crate::store::{write_atomic, Store};

/// Where and how to run the emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// State directory (created if missing; `ca.pem` appears there).
    pub state_dir: PathBuf,
    /// Hub host name: the TLS certificate's name and the name in connection strings.
    pub host: String,
    /// MQTT/TLS port on 127.0.0.1 (0 = any free port; the official SDK needs 8883).
    pub mqtt_port: u16,
    /// HTTPS port on 127.0.0.1 (0 = any free port).
    pub https_port: u16,
    /// The DPS ID scope devices register under (kept from the state directory, or a random
    /// one on first start, when `None`).
    pub id_scope: Option<String>,
    /// A directory with an existing CA (`ca.pem`, `ca.key.pem`) to issue the server
    /// certificate with, instead of the state directory's own: devices built to trust it
    /// reach any emulator started with it.
    pub ca_dir: Option<PathBuf>,
}

impl EmulatorConfig {
    /// Host `localhost`, free ports.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        EmulatorConfig {
            state_dir: state_dir.into(),
            host: "localhost".into(),
            mqtt_port: 0,
            https_port: 0,
            id_scope: None,
            ca_dir: None,
        }
    }
}

/// Starts emulators.
#[derive(Debug)]
pub struct Emulator;

/// Credentials of a registered SAS device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCredentials {
    /// Device id.
    pub device_id: String,
    /// Primary symmetric key (base64).
    pub primary_key: String,
    /// `HostName=...;DeviceId=...;SharedAccessKey=...`.
    pub connection_string: String,
}

/// A running emulator. Dropping it shuts it down (as [`RunningHub::shutdown`]).
pub struct RunningHub {
    /// MQTT/TLS endpoint (devices and DPS).
    pub mqtt_addr: SocketAddr,
    /// HTTPS service endpoint.
    pub https_addr: SocketAddr,
    /// The CA certificate (PEM) clients must trust.
    pub ca_pem: String,
    /// Hub host name.
    pub host: String,
    hub: Arc<Hub>,
    runtime: tokio::runtime::Handle,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningHub")
            .field("mqtt_addr", &self.mqtt_addr)
            .field("https_addr", &self.https_addr)
            .field("host", &self.host)
            .finish()
    }
}

impl Emulator {
    /// Starts an emulator; returns once both endpoints accept connections.
    pub fn start(config: EmulatorConfig) -> Result<RunningHub, HubError> {
        let store = Store::open(&config.state_dir)?;
        if let Some(ca_dir) = &config.ca_dir {
            crate::tls::install_ca(&store, ca_dir)?;
        }
        let identity = crate::tls::load_or_create(&store, &config.host)?;
        let mqtt_tls = TlsAcceptor::from(crate::tls::server_config(&identity, false)?);
        let https_tls = TlsAcceptor::from(crate::tls::server_config(&identity, true)?);
        let hub = Hub::open(store.clone(), &config.host)?;
        if let Some(scope) = &config.id_scope {
            hub.set_id_scope(scope)?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("hub-worker")
            .enable_all()
            .build()
            .map_err(HubError::Runtime)?;
        // Bind with std (works whether or not the caller is inside a runtime), then hand
        // the sockets to our runtime.
        let entered = runtime.enter();
        let bind = |port: u16| {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let bind_error = |source| HubError::Bind {
                addr: addr.to_string(),
                source,
            };
            let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
            listener.set_nonblocking(true).map_err(bind_error)?;
            TcpListener::from_std(listener).map_err(bind_error)
        };
        let mqtt_listener = bind(config.mqtt_port)?;
        let https_listener = bind(config.https_port)?;
        let local = |listener: &TcpListener, port| {
            listener.local_addr().map_err(|source| HubError::Bind {
                addr: format!("127.0.0.1:{port}"),
                source,
            })
        };
        let mqtt_addr = local(&mqtt_listener, config.mqtt_port)?;
        let https_addr = local(&https_listener, config.https_port)?;
        write_atomic(
            &store.path("endpoint.json"),
            &to_json(&json!({
                "host": config.host,
                "mqttPort": mqtt_addr.port(),
                "httpsPort": https_addr.port(),
            })),
        )?;
        let (stop, stopped) = watch::channel(false);
        let handle = runtime.handle().clone();
        handle.spawn(accept_loop(
            mqtt_listener,
            hub.clone(),
            mqtt_tls,
            stopped.clone(),
            Endpoint::Mqtt,
        ));
        handle.spawn(accept_loop(
            https_listener,
            hub.clone(),
            https_tls,
            stopped.clone(),
            Endpoint::Https,
        ));
        handle.spawn(watch_fault_file(hub.clone(), stopped.clone()));
        drop(entered);
        let mut wait = stopped;
        let thread = std::thread::Builder::new()
            .name("hub-runtime".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while !*wait.borrow() {
                        if wait.changed().await.is_err() {
                            break;
                        }
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(HubError::Runtime)?;
        Ok(RunningHub {
            mqtt_addr,
            https_addr,
            ca_pem: identity.ca_pem,
            host: config.host,
            hub,
            runtime: handle,
            stop,
            thread: Some(thread),
        })
    }
}

#[derive(Clone, Copy)]
enum Endpoint {
    Mqtt,
    Https,
}

async fn accept_loop(
    listener: TcpListener,
    hub: Arc<Hub>,
    acceptor: TlsAcceptor,
    mut stopped: watch::Receiver<bool>,
    endpoint: Endpoint,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let Ok((tcp, _)) = accepted else {
            // Out of file descriptors or similar: back off briefly instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if hub.faults().refuse_connections {
            drop(tcp);
            continue;
        }
        let (hub, acceptor, stopped) = (hub.clone(), acceptor.clone(), stopped.clone());
        match endpoint {
            Endpoint::Mqtt => {
                tokio::spawn(crate::session::serve_connection(
                    hub, acceptor, tcp, stopped,
                ));
            }
            Endpoint::Https => {
                tokio::spawn(crate::service::serve_connection(
                    hub, acceptor, tcp, stopped,
                ));
            }
        }
    }
}

async fn watch_fault_file(hub: Arc<Hub>, mut stopped: watch::Receiver<bool>) {
    let path = hub.store().path("faults.json");
    let mut last: Option<std::time::SystemTime> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stopped.changed() => return,
        }
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if modified.is_some() && modified != last {
            last = modified;
            if let Ok(Some(faults)) = hub.store().read_json::<Faults>(&path) {
                hub.load_faults(faults);
            }
        }
    }
}

impl RunningHub {
    /// The shared hub state (for advanced use).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The service connection string (`HostName={host}:{https port}` unless the port is 443).
    pub fn service_connection_string(&self) -> String {
        self.hub.service_connection_string(self.https_addr.port())
    }

    /// The service policy key (base64), for signing service SAS tokens.
    pub fn service_key(&self) -> (String, String) {
        (SERVICE_POLICY.to_owned(), self.hub.config().service_key)
    }

    /// DPS ID scope of this hub.
    pub fn id_scope(&self) -> String {
        self.hub.config().id_scope
    }

    /// Registers a SAS device with fresh keys.
    pub fn add_device(&self, id: &str) -> Result<DeviceCredentials, HubError> {
        let record = self.hub.add_device(id, None)?;
        let primary_key = match record.authentication {
            DeviceAuth::Sas { primary_key, .. } => primary_key,
            DeviceAuth::SelfSigned { .. } | DeviceAuth::CertificateAuthority => String::new(),
        };
        Ok(DeviceCredentials {
            device_id: id.to_owned(),
            connection_string: self.hub.device_connection_string(id)?,
            primary_key,
        })
    }

    /// Registers a SAS device with the given primary key (e.g. one sealed in a TPM).
    pub fn add_device_with_key(
        &self,
        id: &str,
        primary_key: &str,
    ) -> Result<DeviceCredentials, HubError> {
        self.hub.add_device(
            id,
            Some(DeviceAuth::Sas {
                primary_key: primary_key.to_owned(),
                secondary_key: crate::sas::random_key(),
            }),
        )?;
        Ok(DeviceCredentials {
            device_id: id.to_owned(),
            connection_string: self.hub.device_connection_string(id)?,
            primary_key: primary_key.to_owned(),
        })
    }

    /// Adds a DPS X.509 enrollment group for the CA certificate `ca_pem` (devices register
    /// under their certificate's common name, and connect with the same chain).
    pub fn add_x509_enrollment_group(&self, id: &str, ca_pem: &str) -> Result<(), HubError> {
        self.hub.add_x509_enrollment_group(id, ca_pem)
    }

    /// Registers a self-signed X.509 device by certificate thumbprint (SHA-1 or SHA-256 hex).
    pub fn add_x509_device(&self, id: &str, thumbprint: &str) -> Result<(), HubError> {
        self.hub
            .add_device(
                id,
                Some(DeviceAuth::SelfSigned {
                    primary_thumbprint: thumbprint.to_owned(),
                    secondary_thumbprint: String::new(),
                }),
            )
            .map(|_| ())
    }

    /// Adds a DPS individual symmetric-key enrollment; returns its key.
    pub fn add_individual_enrollment(&self, registration_id: &str) -> Result<String, HubError> {
        self.hub.add_individual_enrollment(registration_id, None)
    }

    /// Adds a DPS individual X.509 enrollment: the device presenting a client certificate
    /// with this thumbprint (SHA-1 or SHA-256 hex) may register as `registration_id`.
    pub fn add_x509_enrollment(
        &self,
        registration_id: &str,
        thumbprint: &str,
    ) -> Result<(), HubError> {
        self.hub.add_x509_enrollment(registration_id, thumbprint)
    }

    /// Adds a DPS individual TPM enrollment: the device whose TPM holds this endorsement key
    /// (`TPM2B_PUBLIC` bytes of the RSA 2048 EK, as `TPM2_ReadPublic` returns them; DPS over
    /// HTTPS, see [`crate::dps_https`]) may register as `registration_id`. It is assigned with
    /// the HMAC key DPS imported into its TPM as its SAS key.
    pub fn add_tpm_enrollment(
        &self,
        registration_id: &str,
        endorsement_key: &[u8],
    ) -> Result<(), HubError> {
        self.hub
            .add_tpm_enrollment(registration_id, endorsement_key)
    }

    /// DPS HTTPS endpoint (`https://{host}:{port}`): the same port as the service API.
    pub fn dps_https_endpoint(&self) -> String {
        format!("https://{}:{}", self.host, self.https_addr.port())
    }

    /// Adds a DPS symmetric-key enrollment group; returns the group key (device keys are
    /// [`crate::sas::derive_device_key`] of it).
    pub fn add_enrollment_group(&self, group: &str) -> Result<String, HubError> {
        self.hub.add_enrollment_group(group, None)
    }

    /// Patches desired properties (pushed to the device if connected); returns `$version`.
    pub fn set_desired(&self, id: &str, patch: &Value) -> Result<u64, HubError> {
        self.hub.patch_desired(id, patch)
    }

    /// The twin as the service API returns it (`properties.desired/reported`, `$metadata`...).
    pub fn twin(&self, id: &str) -> Result<Value, HubError> {
        self.hub.twin(id)
    }

    /// The reported properties (without `$metadata`), including `$version`.
    pub fn reported(&self, id: &str) -> Result<Value, HubError> {
        Ok(self.hub.device(id)?.twin.reported.device_view())
    }

    /// Whether the device has a live connection.
    pub fn is_connected(&self, id: &str) -> bool {
        self.hub.is_connected(id)
    }

    /// Number of live device connections.
    pub fn connection_count(&self) -> usize {
        self.hub.connection_count()
    }

    /// Captured telemetry of this run (optionally of one device).
    pub fn telemetry(&self, id: Option<&str>) -> Vec<TelemetryMessage> {
        self.hub.telemetry(id)
    }

    /// Invokes a direct method (await from any async runtime).
    pub async fn invoke_method(
        &self,
        id: &str,
        method: &str,
        payload: &Value,
        timeout: Duration,
    ) -> Result<MethodResponse, HubError> {
        let hub = self.hub.clone();
        let (id, method, payload) = (id.to_owned(), method.to_owned(), payload.clone());
        self.runtime
            .spawn(async move { hub.invoke_method(&id, &method, &payload, timeout).await })
            .await
            .map_err(|_| HubError::ShutDown)?
    }

    /// Invokes a direct method, blocking (not from inside an async runtime).
    pub fn invoke_method_blocking(
        &self,
        id: &str,
        method: &str,
        payload: &Value,
        timeout: Duration,
    ) -> Result<MethodResponse, HubError> {
        let hub = self.hub.clone();
        self.runtime
            .block_on(async { hub.invoke_method(id, method, payload, timeout).await })
    }

    /// Sets the fault-injection settings (see [`crate::faults`]).
    pub fn set_faults(&self, faults: Faults) {
        self.hub.set_faults(faults);
    }

    /// Closes the connection of one device (`Some(id)`) or of every device (`None`).
    pub fn drop_connections(&self, id: Option<&str>) {
        self.hub.drop_connections(id);
    }

    /// Blocks until SIGTERM or SIGINT (Ctrl-C). Call from outside any async runtime.
    pub fn wait_for_termination_signal(&self) -> Result<(), HubError> {
        self.runtime.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .map_err(HubError::Runtime)?;
            tokio::select! {
                _ = term.recv() => {}
                result = tokio::signal::ctrl_c() => result.map_err(HubError::Runtime)?,
            }
            Ok(())
        })
    }

    /// Stops serving, closes every connection and flushes state to disk.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.hub.flush();
        let _ = self
            .hub
            .store()
            .remove(&self.hub.store().path("endpoint.json"));
    }
}

impl Drop for RunningHub {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop_now();
        }
    }
}
