//! The agent as a testudo component: what `testudo-agent` does when `testudo-init` starts it
//! (it finds its provider control socket in `TESTUDO_SCHEME_FD`).
//!
//! - Serves `telemetry` and `identity` to apps ([`crate::app_schemes`]) on its own thread
//!   (made with `pthread_create`: see `spawn_server_thread`),
//!   from the first moment, whatever the state of the cloud connection.
//! - Keeps accepted telemetry in a persistent [`Spool`] in its `storage` route and feeds it to
//!   the hub connection, marking each message done only on the hub's PUBACK.
//! - Reaches the hub only through its `net` route ([`NetRouteDialer`]): the sandbox has no
//!   network of its own.
//! - Never exits because the cloud is unreachable or credentials are missing: it says so on
//!   its `log` route and retries with backoff. It exits (0) when init closes the control
//!   socket or sends SIGTERM.
//!
//! - Reports the device ([`crate::device_management`]: version, plan hash, booted slot) at
//!   every connection and answers the direct methods `reboot` (through init's `power`
//!   capability, its `power` route) and `diagnostic`; any other method gets 404.
//! - Relays app deployments to init (`deployment` route, [`crate::app_deployments`]) and
//!   Azure Device Update OS updates to the updater (`update` route, [`crate::os_updates`]):
//!   the updater is told of every connection and its status reported after it; each desired
//!   change is handed to both relays, whose work runs on tasks of its own.
//!
//! Routes it looks for, by local name: `log`, `storage`, `net`, `tpm`, `power`. How it proves its
//! identity follows the plan's `cloud.identity`:
//! - `tpm_sas`: SAS tokens signed in the TPM through the `tpm` route
//!   ([`TpmRouteSigner`]) with the key persisted at `0x81000100` (`testudo-agent
//!   import-key` at provisioning);
//! - `sas`: the base64 key in the storage file `device-key`;
//! - `x509`: `device-cert.pem` in storage, its key `device-key.pem` beside it (development) or,
//!   without that file, an ECDSA P-256 key persisted in the TPM at `0x81000101` (`testudo
//!   agent create-x509-key` at the factory), signing TLS handshakes through the `tpm` route
//!   ([`TpmRouteEcdsaKey`]).
//!
//! With the plan's `cloud.dps`, it first gets its hub and device id from DPS (kept in storage,
//! [`crate::provisioning`]); with TPM attestation (`tpm_sas` identity) it registers over HTTPS
//! through `net` with the TPM through `tpm` ([`crate::dps_tpm_route`]), which puts DPS's key
//! at `0x81000100` before the hub connection signs with it.
//!
//! The CAs it trusts for the hub are the image's trust anchors
//! (`/etc/testudo/trust-anchors.pem`, from the config's `cloud.trust_anchors`, shown
//! read-only by init); without them, the storage file `hub-ca.pem` (development hosts).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use testudo_plan::layout::agent_storage::{
    CERT as CERT_FILE, CERT_KEY as CERT_KEY_FILE, HUB_CA as CA_FILE, SAS_KEY as SAS_KEY_FILE,
};
use testudo_plan::layout::rootfs::TRUST_ANCHORS;
use testudo_plan::{interfaces, DpsAttestation};
use testudo_scheme::{granted_handles, provider_control, Handle, Rights, Server, CONTROL_ENV};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use crate::agent::{error_chain, AgentConfig, AgentEvent, Authentication};
use crate::app_deployments::{DeploymentRelay, Fetcher};
use crate::app_schemes::{hub_message, AppSchemes};
use crate::backoff::Backoff;
use crate::cloud::CloudSettings;
use crate::component_log::ComponentLog;
use crate::device_management::{self, Diagnostics};
use crate::dial::{Dialer, NetRouteDialer};
use crate::error::{AgentError, CloudSetupError, Result};
use crate::os_updates::OsUpdateRelay;
use crate::provisioning;
use crate::sas::SasSigner;
use crate::sas::SoftwareKey;
use crate::spool::{MemoryFiles, Spool, SpoolFiles, SpoolLimits, StorageFiles};
use crate::tls::{ClientIdentity, TlsSettings};
use crate::tpm::{DEFAULT_KEY_HANDLE, X509_KEY_HANDLE};
use crate::tpm_route::{TpmRoute, TpmRouteEcdsaKey, TpmRouteSigner};
use crate::tpm_x509::EcdsaP256Key;

/// Topic property naming the app that wrote a telemetry message.
pub const APP_PROPERTY: &str = "testudo-app";
/// Topic property carrying the app's topic (from the WASM host's envelope).
pub const TOPIC_PROPERTY: &str = "testudo-topic";

/// Most spooled messages handed to the hub connection at once.
const WINDOW: usize = 16;
/// How often to look for credentials again while there are none.
const CREDENTIAL_BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(2),
    max: Duration::from_secs(60),
};

impl<T: SpoolFiles + ?Sized> SpoolFiles for Box<T> {
    fn read(&mut self, name: &str) -> Result<Vec<u8>> {
        (**self).read(name)
    }
    fn append(&mut self, name: &str, data: &[u8]) -> Result<()> {
        (**self).append(name, data)
    }
    fn replace(&mut self, name: &str, data: &[u8]) -> Result<()> {
        (**self).replace(name, data)
    }
    fn sync(&mut self, name: &str) -> Result<()> {
        (**self).sync(name)
    }
}

type SharedSpool = Arc<Mutex<Spool<Box<dyn SpoolFiles>>>>;

/// Runs the component until init closes the control socket. Errors only when it cannot serve
/// at all (no control socket, the runtime cannot start).
pub fn run() -> Result<()> {
    // Every accepted message is in the spool before its write is acknowledged, so stopping at
    // any instant loses nothing: exit at once on SIGTERM.
    testudo_scheme::lifecycle::exit_on_sigterm();
    let control = provider_control()
        .map_err(|source| AgentError::Serve {
            step: "control socket",
            source,
        })?
        .ok_or(AgentError::NotAComponent { var: CONTROL_ENV })?;
    let mut handles = granted_handles().map_err(|source| AgentError::Serve {
        step: "routed handles",
        source,
    })?;
    let log = Arc::new(ComponentLog::new(handles.take(interfaces::LOG).ok()));
    let storage = handles.take(interfaces::STORAGE).ok();
    let net = handles.take(interfaces::NET).ok();
    let tpm = handles.take(interfaces::TPM).ok();
    let power = handles.take(interfaces::POWER).ok();
    let deployments = handles
        .take(interfaces::DEPLOYMENT)
        .ok()
        .map(|route| Arc::new(DeploymentRelay::new(route, log.clone())));
    let settings = CloudSettings::from_env().unwrap_or_else(|reason| {
        log.line(&format!("cloud settings ignored: {}", error_chain(&reason)));
        CloudSettings::unconfigured()
    });
    let system = system_info(&log);
    let os_updates = handles
        .take(interfaces::UPDATE)
        .ok()
        .map(|route| Arc::new(OsUpdateRelay::new(route, log.clone(), &system.compatible)));
    let (spool, credentials) = open_spool(storage, &log);
    let wake = Arc::new(Notify::new());
    let provider = AppSchemes::new(
        spool.clone(),
        settings.identity_document(),
        wake.clone(),
        log.clone(),
    );
    let (stopped_tx, stopped) = oneshot::channel();
    spawn_server_thread(Box::new(move || {
        let outcome = Server::new(provider).with_control(control).run();
        let _ = stopped_tx.send(outcome);
    }))
    .map_err(|source| AgentError::StartComponent {
        step: "server thread",
        source,
    })?;
    log.line(&format!(
        "serving telemetry and identity for device {:?} (hub {:?}, identity {:?})",
        settings.device_id, settings.hub, settings.identity
    ));
    // Two threads: the schemes' and this one, the cloud's. Nothing here uses tokio's blocking
    // pool (dialing through `net` and TPM signing are short exchanges done inline), so tokio
    // starts no thread; the seccomp role would stop one (no `gettid`, `sched_getaffinity`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|source| AgentError::StartComponent {
            step: "async runtime",
            source,
        })?;
    let cloud = Cloud {
        settings,
        credentials,
        dialer: net.map(|net| Arc::new(NetRouteDialer::new(net)) as Arc<dyn Dialer>),
        tpm: tpm.map(|tpm| Arc::new(TpmRoute::new(tpm))),
        spool,
        wake,
        log: log.clone(),
        system,
        power,
        deployments,
        os_updates,
        started: std::time::Instant::now(),
        connections: std::sync::atomic::AtomicU64::new(0),
    };
    runtime.block_on(async move {
        tokio::select! {
            outcome = stopped => match outcome {
                Ok(Ok(())) => {
                    log.line("init closed the control socket: stopping");
                    Ok(())
                }
                Ok(Err(source)) => Err(AgentError::Serve { step: "serving", source }),
                Err(_) => Ok(()),
            },
            () = cloud.run() => Ok(()),
        }
    })
}

/// What the running system is, from init ([`testudo_plan::env::SYSTEM`]); empty fields when
/// it says nothing (a development run without init).
fn system_info(log: &ComponentLog) -> testudo_plan::env::SystemInfo {
    let Ok(text) = std::env::var(testudo_plan::env::SYSTEM) else {
        return testudo_plan::env::SystemInfo::default();
    };
    testudo_plan::env::from_value(&text).unwrap_or_else(|error| {
        log.line(&format!("{} ignored: {error}", testudo_plan::env::SYSTEM));
        testudo_plan::env::SystemInfo::default()
    })
}

/// The thread serving the app schemes' stack size.
const SERVER_STACK: usize = 2 * 1024 * 1024;

type ThreadBody = Box<dyn FnOnce() + Send>;

/// Runs `body` on a thread made with `pthread_create` itself rather than `std::thread`: a
/// std thread's start-up (stack guard, alternate signal stack, name) costs the seccomp role
/// `gettid`, `sched_getaffinity`, `sigaltstack` and `prctl`, and its end `exit` and `madvise`.
/// The thread never ends: after `body` it waits forever, and the process ends with
/// `exit_group` from the main thread. A panic in `body` is caught (it would abort the
/// process across the C boundary) and also leaves the thread waiting; the main thread then
/// sees the server gone.
fn spawn_server_thread(body: ThreadBody) -> std::io::Result<()> {
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the `Box<ThreadBody>` leaked by `spawn_server_thread` for this
        // thread alone; it is taken back exactly once, here.
        let body = unsafe { Box::from_raw(arg.cast::<ThreadBody>()) };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(*body));
        let parked = (Mutex::new(()), std::sync::Condvar::new());
        let mut guard = parked.0.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            guard = parked.1.wait(guard).unwrap_or_else(PoisonError::into_inner);
        }
    }
    let arg = Box::into_raw(Box::new(body)).cast::<libc::c_void>();
    // SAFETY: `attr` is initialised before use and destroyed after; `thread` is written by
    // pthread_create; `start` has the C signature pthread_create expects and owns `arg`.
    let created = unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        let mut code = libc::pthread_attr_init(&mut attr);
        if code == 0 {
            code = libc::pthread_attr_setstacksize(&mut attr, SERVER_STACK);
        }
        if code == 0 {
            code = libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        }
        if code == 0 {
            let mut thread: libc::pthread_t = 0;
            code = libc::pthread_create(&mut thread, &attr, start, arg);
        }
        libc::pthread_attr_destroy(&mut attr);
        code
    };
    if created != 0 {
        // SAFETY: the thread was not created, so `arg` is still ours alone.
        drop(unsafe { Box::from_raw(arg.cast::<ThreadBody>()) });
        return Err(std::io::Error::from_raw_os_error(created));
    }
    Ok(())
}

/// Opens the spool in storage (falling back to memory, loudly) and a second storage handle
/// for reading credentials.
fn open_spool(storage: Option<Handle>, log: &ComponentLog) -> (SharedSpool, Option<StorageFiles>) {
    let credentials = storage
        .as_ref()
        .and_then(|root| root.dup(Rights::ReadWrite).ok())
        .map(StorageFiles::new);
    let files: Box<dyn SpoolFiles> = match storage {
        Some(root) => Box::new(StorageFiles::new(root)),
        None => {
            log.line("no storage route: telemetry is kept in memory only and lost on restart");
            Box::new(MemoryFiles::default())
        }
    };
    let spool = match Spool::open(files, SpoolLimits::default()) {
        Ok((spool, report)) => {
            if report.pending > 0 || report.damaged_lines > 0 {
                log.line(&format!(
                    "telemetry spool: {} messages from before this start still to send ({} damaged journal lines skipped)",
                    report.pending, report.damaged_lines
                ));
            }
            spool
        }
        Err(error) => {
            log.line(&format!(
                "telemetry spool in storage unusable, keeping telemetry in memory only: {}",
                error_chain(&error)
            ));
            let memory: Box<dyn SpoolFiles> = Box::new(MemoryFiles::default());
            Spool::empty(memory, SpoolLimits::default())
        }
    };
    (Arc::new(Mutex::new(spool)), credentials)
}

/// The cloud side: build a configuration when possible, keep the connection, feed the spool.
struct Cloud {
    settings: CloudSettings,
    credentials: Option<StorageFiles>,
    dialer: Option<Arc<dyn Dialer>>,
    tpm: Option<Arc<TpmRoute>>,
    spool: SharedSpool,
    wake: Arc<Notify>,
    log: Arc<ComponentLog>,
    system: testudo_plan::env::SystemInfo,
    power: Option<Handle>,
    /// init's `deployment` route: app deployments are relayed there.
    deployments: Option<Arc<DeploymentRelay>>,
    /// The updater's `update` route: OS updates are relayed there.
    os_updates: Option<Arc<OsUpdateRelay>>,
    started: std::time::Instant,
    connections: std::sync::atomic::AtomicU64,
}

/// The largest trust-anchor bundle read (Microsoft's roots are about 5 KiB).
const MAX_TRUST_ANCHORS: u64 = 1024 * 1024;

/// The image's trust anchors. Read through `Take`: `std::fs::read` first asks the file's size
/// with `statx`, which the agent's sandbox does not allow.
fn read_trust_anchors() -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(TRUST_ANCHORS)?;
    let mut anchors = Vec::new();
    (&file).take(MAX_TRUST_ANCHORS).read_to_end(&mut anchors)?;
    Ok(anchors)
}

/// How often the app slots' state is read from init, to report what changed.
const SLOT_WATCH: Duration = Duration::from_secs(2);

/// How long after answering `reboot` the agent asks init to reboot, so the answer reaches the
/// hub before init stops the agent.
const REBOOT_DELAY: Duration = Duration::from_secs(1);

impl Cloud {
    /// Never returns: the component stops when init closes the control socket.
    async fn run(self) {
        let mut attempt = 0u32;
        let mut last_reason = String::new();
        loop {
            match self.config().await {
                Ok(config) => {
                    self.log.line(&format!(
                        "cloud: connecting to {}:{} as {} through the net route",
                        config.connect_host, config.port, config.device_id
                    ));
                    self.serve(config).await;
                    // Reached when the hub refused a DPS-assigned identity, or if the agent
                    // task ended (it does not on its own): start over.
                    self.log
                        .line("cloud: the hub connection ended; starting it again");
                    last_reason.clear();
                    tokio::time::sleep(CREDENTIAL_BACKOFF.random_delay(attempt)).await;
                    attempt = attempt.saturating_add(1);
                }
                Err(error) => {
                    let reason = error_chain(&error);
                    let delay = CREDENTIAL_BACKOFF.random_delay(attempt);
                    attempt = attempt.saturating_add(1);
                    if reason != last_reason {
                        let pending = self.lock_spool().pending();
                        self.log.line(&format!(
                            "cloud: offline: {reason}; telemetry is spooled ({pending} pending); checking again with backoff"
                        ));
                        last_reason = reason;
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn lock_spool(&self) -> std::sync::MutexGuard<'_, Spool<Box<dyn SpoolFiles>>> {
        self.spool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_credential(&self, file: &'static str) -> Result<Option<Vec<u8>>, CloudSetupError> {
        let Some(files) = &self.credentials else {
            return Ok(None);
        };
        files
            .read_file(file)
            .map_err(|source| CloudSetupError::ReadCredential {
                file,
                source: Box::new(source),
            })
    }

    /// The connection configuration, or why there is none yet.
    async fn config(&self) -> Result<AgentConfig, CloudSetupError> {
        let settings = &self.settings;
        if let Some(missing) = settings.missing() {
            return Err(CloudSetupError::PlanIncomplete { missing });
        }
        let Some(dialer) = &self.dialer else {
            return Err(CloudSetupError::NoNetRoute);
        };
        if self.credentials.is_none() {
            return Err(CloudSetupError::NoStorageRoute);
        }
        let ca = match read_trust_anchors() {
            Ok(anchors) => anchors,
            Err(_) => self
                .read_credential(CA_FILE)?
                .ok_or(CloudSetupError::NoTrustAnchors {
                    anchors: TRUST_ANCHORS,
                    file: CA_FILE,
                })?,
        };
        let mut tls = TlsSettings {
            ca_pem: ca,
            client_identity: None,
        };
        // TPM attestation puts the device key into the TPM: register before using it.
        let attested_by_tpm = settings
            .dps
            .as_ref()
            .is_some_and(|dps| dps.attestation == DpsAttestation::Tpm);
        let (hub, device_id, auth) = if attested_by_tpm {
            let (hub, device_id) = self.hub_identity(dialer, &tls, None).await?;
            (hub, device_id, self.authentication(&mut tls)?)
        } else {
            let auth = self.authentication(&mut tls)?;
            let signer = match &auth {
                Authentication::Sas { signer, .. } => Some(signer.clone()),
                Authentication::X509 => None,
            };
            let (hub, device_id) = self.hub_identity(dialer, &tls, signer).await?;
            (hub, device_id, auth)
        };
        // Check the TLS material now so a bad file is reported as such, not as a dial error.
        tls.client_config(&hub)
            .map_err(|source| CloudSetupError::Tls {
                host: hub.clone(),
                source: Box::new(source),
            })?;
        let mut config = AgentConfig::new(&hub, &device_id, tls, auth);
        config.port = settings.port;
        config.model_id = settings.model_id.clone();
        config.dialer = Some(dialer.clone());
        config.sign_inline = true;
        Ok(config)
    }

    /// The hub and device id to connect as: the plan's, or with DPS the stored assignment or
    /// a new registration.
    async fn hub_identity(
        &self,
        dialer: &Arc<dyn Dialer>,
        tls: &TlsSettings,
        signer: Option<Arc<dyn SasSigner>>,
    ) -> Result<(String, String), CloudSetupError> {
        let settings = &self.settings;
        let (Some(dps), Some(files)) = (&settings.dps, &self.credentials) else {
            return Ok((settings.hub.clone(), settings.device_id.clone()));
        };
        let registration = provisioning::Registration {
            dps,
            registration_id: &settings.device_id,
            dialer: dialer.clone(),
            tls: tls.clone(),
            signer,
            tpm: self.tpm.clone(),
            progress: Some(Arc::new({
                let log = self.log.clone();
                move |step: &str| log.line(&format!("cloud: {step}"))
            })),
        };
        let (stored, registered) = provisioning::assignment(files, registration).await?;
        self.log.line(&format!(
            "cloud: {} DPS assignment: hub {}, device {}",
            if registered { "new" } else { "stored" },
            stored.assigned_hub,
            stored.device_id
        ));
        Ok((stored.assigned_hub, stored.device_id))
    }

    /// How the device proves its identity to the hub, from the plan's `cloud.identity`.
    fn authentication(&self, tls: &mut TlsSettings) -> Result<Authentication, CloudSetupError> {
        let settings = &self.settings;
        Ok(match settings.identity.as_str() {
            "tpm_sas" => Authentication::Sas {
                signer: self.tpm_signer()?,
                token_ttl: Duration::from_secs(3600),
            },
            "sas" => {
                let Some(key) = self.read_credential(SAS_KEY_FILE)? else {
                    return Err(CloudSetupError::NoSasKey { file: SAS_KEY_FILE });
                };
                let key = String::from_utf8_lossy(&key).trim().to_owned();
                let signer =
                    SoftwareKey::from_base64(&key, &settings.device_id).map_err(|source| {
                        CloudSetupError::BadSasKey {
                            file: SAS_KEY_FILE,
                            source: Box::new(source),
                        }
                    })?;
                Authentication::Sas {
                    signer: Arc::new(signer),
                    token_ttl: Duration::from_secs(3600),
                }
            }
            "x509" => {
                let Some(cert) = self.read_credential(CERT_FILE)? else {
                    return Err(CloudSetupError::NoClientCertificate { file: CERT_FILE });
                };
                tls.client_identity = Some(match self.read_credential(CERT_KEY_FILE)? {
                    Some(key) => ClientIdentity::Pem { cert, key },
                    None => ClientIdentity::Tpm {
                        cert,
                        key: self.tpm_certificate_key()?,
                    },
                });
                Authentication::X509
            }
            other => {
                return Err(CloudSetupError::UnknownIdentity {
                    identity: other.to_owned(),
                })
            }
        })
    }

    /// The device certificate's key in the TPM (no `device-key.pem` in storage), after one
    /// trial signature (so a missing key is reported as such).
    fn tpm_certificate_key(&self) -> Result<Arc<dyn EcdsaP256Key>, CloudSetupError> {
        let Some(tpm) = &self.tpm else {
            return Err(CloudSetupError::NoTpmRoute {
                identity: "x509",
                needs: "no device-key.pem in the agent's storage (the key would be in the TPM)",
            });
        };
        let key = Arc::new(TpmRouteEcdsaKey::new(tpm.clone(), X509_KEY_HANDLE));
        match key.sign_sha256(b"testudo-agent key check") {
            Ok(_) => Ok(key),
            Err(source) => Err(CloudSetupError::TpmKeyCannotSign {
                identity: "x509",
                key: "TPM key",
                handle: X509_KEY_HANDLE,
                source: Box::new(source),
            }),
        }
    }

    /// The TPM signer, after one trial signature (so a missing key is reported as such).
    fn tpm_signer(&self) -> Result<Arc<dyn SasSigner>, CloudSetupError> {
        let Some(tpm) = &self.tpm else {
            return Err(CloudSetupError::NoTpmRoute {
                identity: "tpm_sas",
                needs: "SAS tokens are signed in the TPM",
            });
        };
        // A blocking exchange of a few milliseconds with the tpm driver; nothing else runs on
        // this thread while there is no connection.
        let signer = Arc::new(TpmRouteSigner::new(tpm.clone(), DEFAULT_KEY_HANDLE));
        match signer.hmac_sha256(b"testudo-agent key check") {
            Ok(_) => Ok(signer),
            Err(source) => Err(CloudSetupError::TpmKeyCannotSign {
                identity: "tpm_sas",
                key: "device key",
                handle: DEFAULT_KEY_HANDLE,
                source: Box::new(source),
            }),
        }
    }

    /// Keeps the hub connection (the agent reconnects by itself) and feeds it the spool.
    async fn serve(&self, config: AgentConfig) {
        let hub = format!("{}:{}", config.connect_host, config.port);
        let fetcher = self.module_fetcher(&config);
        let (agent, mut events) = crate::agent::spawn(config);
        let (acks_tx, mut acks) = mpsc::unbounded_channel::<(u64, bool)>();
        let mut handed_out = 0usize;
        let mut retry_at: Option<Instant> = None;
        let mut slot_watch = tokio::time::interval(SLOT_WATCH);
        slot_watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if retry_at.is_none() && handed_out < WINDOW {
                let batch = self.lock_spool().take_unsent(WINDOW - handed_out);
                for message in batch {
                    let (body, topic) = hub_message(&message.body);
                    let mut properties = vec![(APP_PROPERTY, message.source.as_str())];
                    if let Some(topic) = &topic {
                        properties.push((TOPIC_PROPERTY, topic.as_str()));
                    }
                    let ack = agent.queue_telemetry(body, &properties);
                    handed_out += 1;
                    let tx = acks_tx.clone();
                    let seq = message.seq;
                    tokio::spawn(async move {
                        let ok = ack.await.is_ok();
                        let _ = tx.send((seq, ok));
                    });
                }
            }
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => match event {
                    Some(AgentEvent::Disconnected { reason, identity_refused: true })
                        if self.settings.dps.is_some() =>
                    {
                        self.forget_assignment(&reason);
                        agent.shutdown().await;
                        return;
                    }
                    Some(event) => self.on_event(&agent, &hub, fetcher.as_ref(), event),
                    None => return,
                },
                Some((seq, delivered)) = acks.recv() => {
                    handed_out = handed_out.saturating_sub(1);
                    let mut spool = self.lock_spool();
                    if delivered {
                        if let Err(error) = spool.acknowledge(seq) {
                            self.log.line(&format!("telemetry spool: recording delivery failed: {}", error_chain(&error)));
                        }
                    } else {
                        spool.release(seq);
                        retry_at = Some(Instant::now() + Duration::from_secs(1));
                    }
                }
                () = self.wake.notified() => {}
                () = retry => retry_at = None,
                _ = slot_watch.tick() => {
                    if let Some(relay) = &self.deployments {
                        relay.report_changes(&agent, false);
                    }
                }
            }
        }
    }

    /// The hub refused the identity DPS assigned (the device was deleted, disabled or moved):
    /// the stored assignment is forgotten, so the next attempt registers again.
    fn forget_assignment(&self, reason: &str) {
        self.log.line(&format!(
            "cloud: the hub refused the device's identity ({reason}); forgetting the DPS assignment and registering again"
        ));
        if let Some(files) = &self.credentials {
            if let Err(error) = provisioning::store(files, None) {
                self.log.line(&format!(
                    "cloud: the DPS assignment could not be forgotten: {}",
                    error_chain(&error)
                ));
            }
        }
    }

    /// Answers a direct method; after `reboot`'s answer, asks init to reboot.
    fn on_method(&self, agent: &crate::AgentHandle, call: &crate::MethodCall) {
        let diagnostics = Diagnostics {
            spooled: self.lock_spool().pending(),
            connections: self.connections.load(std::sync::atomic::Ordering::Relaxed),
            uptime_seconds: self.started.elapsed().as_secs(),
            can_reboot: self.power.is_some(),
        };
        let answer = device_management::answer_method(&call.name, &self.system, &diagnostics);
        self.log.line(&format!(
            "cloud: direct method {:?}: {}",
            call.name, answer.status
        ));
        agent.respond_method(call, answer.status, &answer.body);
        let Some(power) = self.power.as_ref().filter(|_| answer.reboot_after) else {
            return;
        };
        let Ok(power) = power.dup(Rights::Write) else {
            self.log
                .line("cloud: reboot: the power route cannot be used");
            return;
        };
        let log = self.log.clone();
        tokio::spawn(async move {
            tokio::time::sleep(REBOOT_DELAY).await;
            log.line("cloud: asking init to reboot");
            if let Err(error) = power.write(b"reboot\n") {
                log.line(&format!("cloud: reboot refused: {}", error_chain(&error)));
            }
        });
    }

    /// What module downloads go through: the `net` route, TLS trusting what the hub
    /// connection trusts.
    fn module_fetcher(&self, config: &AgentConfig) -> Option<Fetcher> {
        let dialer = self.dialer.clone()?;
        let trust = crate::tls::TlsSettings {
            ca_pem: config.tls.ca_pem.clone(),
            client_identity: None,
        };
        match trust.client_config(&config.connect_host) {
            Ok(tls) => Some(Fetcher { dialer, tls }),
            Err(error) => {
                self.log.line(&format!(
                    "app deployments: no module downloads: {}",
                    error_chain(&error)
                ));
                None
            }
        }
    }

    /// Relays the desired app deployments not relayed yet, each on its own task, and the
    /// desired OS update workflow when it is one not taken on yet, on its own task.
    fn on_desired(
        &self,
        agent: &crate::AgentHandle,
        fetcher: Option<&Fetcher>,
        change: &crate::DesiredChange,
    ) {
        if let Some(relay) = &self.os_updates {
            if let Some(goal) = relay.take_desired(agent, change) {
                tokio::spawn(Arc::clone(relay).process(agent.clone(), fetcher.cloned(), goal));
            }
        }
        let Some(relay) = &self.deployments else {
            return;
        };
        for (slot, token) in relay.new_tokens(agent, change.version, &change.desired) {
            self.log.line(&format!(
                "app deployments: relaying slot {slot}'s token (desired $version {}) to init",
                change.version
            ));
            tokio::spawn(Arc::clone(relay).relay(
                agent.clone(),
                fetcher.cloned(),
                change.version,
                slot,
                token,
            ));
        }
    }

    fn on_event(
        &self,
        agent: &crate::AgentHandle,
        hub: &str,
        fetcher: Option<&Fetcher>,
        event: AgentEvent,
    ) {
        match event {
            AgentEvent::Connected { connection } => {
                self.connections
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let reported = device_management::reported_properties(&self.system);
                match agent.queue_report(&reported) {
                    Ok(acknowledgement) => {
                        let log = self.log.clone();
                        tokio::spawn(async move {
                            match acknowledgement.await {
                                Ok(_) => log.line("cloud: device properties reported"),
                                Err(error) => log.line(&format!(
                                    "cloud: device properties not reported: {}",
                                    error_chain(&error)
                                )),
                            }
                        });
                    }
                    Err(error) => self.log.line(&format!(
                        "cloud: device properties not reported: {}",
                        error_chain(&error)
                    )),
                }
                if let Some(relay) = &self.deployments {
                    relay.report_changes(agent, true);
                }
                if let Some(relay) = &self.os_updates {
                    relay.connected();
                    tokio::spawn(Arc::clone(relay).report_status(agent.clone()));
                }
                let pending = self.lock_spool().pending();
                self.log.line(&format!(
                    "cloud: connected to {hub} as {} (connection {connection}); {pending} telemetry messages to send",
                    self.settings.device_id
                ));
            }
            AgentEvent::Disconnected { reason, .. } => {
                let pending = self.lock_spool().pending();
                self.log.line(&format!(
                    "cloud: offline: {reason}; telemetry is spooled ({pending} pending); reconnecting with backoff"
                ));
            }
            AgentEvent::Throttled { retry_after } => self.log.line(&format!(
                "cloud: throttled by the hub; waiting {} ms",
                retry_after.as_millis()
            )),
            AgentEvent::Error(error) => {
                self.log.line(&format!("cloud: {}", error_chain(&error)));
            }
            AgentEvent::MethodCall(call) => self.on_method(agent, &call),
            AgentEvent::Desired(change) => {
                self.log.line(&format!(
                    "cloud: desired properties at $version {}",
                    change.version
                ));
                self.on_desired(agent, fetcher, &change);
            }
            AgentEvent::FullTwin { .. } | AgentEvent::RenewingToken => {}
        }
    }
}
