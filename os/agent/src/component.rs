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
//! Routes it looks for, by local name: `log`, `storage`, `net`, `tpm`. How it proves its
//! identity follows the plan's `cloud.identity`:
//! - `tpm_sas`: SAS tokens signed in the TPM through the `tpm` route
//!   ([`TpmRouteSigner`]) with the key persisted at `0x81000100` (`testudo-agent
//!   import-key` at provisioning);
//! - `sas`: the base64 key in the storage file `device-key`;
//! - `x509`: `device-cert.pem` and `device-key.pem` in storage.
//!
//! The hub's CA certificate is the storage file `hub-ca.pem`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;
use testudo_plan::interfaces;
use testudo_plan::layout::agent_storage::{
    CERT as CERT_FILE, CERT_KEY as CERT_KEY_FILE, HUB_CA as CA_FILE, SAS_KEY as SAS_KEY_FILE,
};
use testudo_scheme::{granted_handles, provider_control, Handle, Rights, Server, CONTROL_ENV};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use crate::agent::{error_chain, AgentConfig, AgentEvent, Authentication};
use crate::app_schemes::{hub_message, AppSchemes};
use crate::backoff::Backoff;
use crate::cloud::CloudSettings;
use crate::component_log::ComponentLog;
use crate::dial::{Dialer, NetRouteDialer};
use crate::error::{AgentError, Result};
use crate::sas::SasSigner;
use crate::sas::SoftwareKey;
use crate::spool::{MemoryFiles, Spool, SpoolFiles, SpoolLimits, StorageFiles};
use crate::tls::{ClientIdentity, TlsSettings};
use crate::tpm::DEFAULT_KEY_HANDLE;
use crate::tpm_route::TpmRouteSigner;

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

extern "C" fn exit_now(_signal: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(0) }
}

/// Runs the component until init closes the control socket. Errors only when it cannot serve
/// at all (no control socket, the runtime cannot start).
pub fn run() -> Result<()> {
    // Every accepted message is in the spool before its write is acknowledged, so stopping at
    // any instant loses nothing: exit at once on SIGTERM.
    // SAFETY: installs an async-signal-safe handler for SIGTERM.
    unsafe {
        libc::signal(libc::SIGTERM, exit_now as *const () as libc::sighandler_t);
    }
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

    let settings = CloudSettings::from_env().unwrap_or_else(|reason| {
        log.line(&format!("cloud settings ignored: {reason}"));
        CloudSettings::unconfigured()
    });
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
        tpm: tpm.map(|tpm| Arc::new(TpmRouteSigner::new(tpm, DEFAULT_KEY_HANDLE))),
        spool,
        wake,
        log: log.clone(),
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
    tpm: Option<Arc<TpmRouteSigner>>,
    spool: SharedSpool,
    wake: Arc<Notify>,
    log: Arc<ComponentLog>,
}

impl Cloud {
    /// Never returns: the component stops when init closes the control socket.
    async fn run(self) {
        let mut attempt = 0u32;
        let mut last_reason = String::new();
        loop {
            match self.config() {
                Ok(config) => {
                    self.log.line(&format!(
                        "cloud: connecting to {}:{} as {} through the net route",
                        config.connect_host, config.port, config.device_id
                    ));
                    self.serve(config).await;
                    // Only reached if the agent task ended (it does not on its own): start over.
                    self.log
                        .line("cloud: the hub connection task ended; starting it again");
                    last_reason.clear();
                    tokio::time::sleep(CREDENTIAL_BACKOFF.random_delay(attempt)).await;
                    attempt = attempt.saturating_add(1);
                }
                Err(reason) => {
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

    fn read_credential(&self, name: &str) -> std::result::Result<Option<Vec<u8>>, String> {
        let Some(files) = &self.credentials else {
            return Ok(None);
        };
        files.read_file(name).map_err(|e| error_chain(&e))
    }

    /// The connection configuration, or why there is none yet.
    fn config(&self) -> std::result::Result<AgentConfig, String> {
        let settings = &self.settings;
        if let Some(missing) = settings.missing() {
            return Err(missing.to_owned());
        }
        let Some(dialer) = &self.dialer else {
            return Err("no `net` route: the hub cannot be reached".to_owned());
        };
        if self.credentials.is_none() {
            return Err("no `storage` route: no CA or credentials to connect with".to_owned());
        }
        let ca = self
            .read_credential(CA_FILE)?
            .ok_or_else(|| format!("no hub CA certificate ({CA_FILE} in the agent's storage)"))?;
        let mut tls = TlsSettings {
            ca_pem: ca,
            client_identity: None,
        };
        let auth = match settings.identity.as_str() {
            "tpm_sas" => Authentication::Sas {
                signer: self.tpm_signer()?,
                token_ttl: Duration::from_secs(3600),
            },
            "sas" => {
                let Some(key) = self.read_credential(SAS_KEY_FILE)? else {
                    return Err(format!(
                        "no SAS key ({SAS_KEY_FILE} in the agent's storage)"
                    ));
                };
                let key = String::from_utf8_lossy(&key).trim().to_owned();
                let signer = SoftwareKey::from_base64(&key, &settings.device_id)
                    .map_err(|e| error_chain(&e))?;
                Authentication::Sas {
                    signer: Arc::new(signer),
                    token_ttl: Duration::from_secs(3600),
                }
            }
            "x509" => {
                let cert = self.read_credential(CERT_FILE)?;
                let key = self.read_credential(CERT_KEY_FILE)?;
                let (Some(cert), Some(key)) = (cert, key) else {
                    return Err(format!(
                        "no client certificate ({CERT_FILE} and {CERT_KEY_FILE} in the agent's storage)"
                    ));
                };
                tls.client_identity = Some(ClientIdentity::Pem { cert, key });
                Authentication::X509
            }
            other => return Err(format!("unknown identity kind {other:?} in the plan")),
        };
        // Check the TLS material now so a bad file is reported as such, not as a dial error.
        tls.client_config(&settings.hub)
            .map_err(|e| error_chain(&e))?;
        let mut config = AgentConfig::new(&settings.hub, &settings.device_id, tls, auth);
        config.port = settings.port;
        config.dialer = Some(dialer.clone());
        config.sign_inline = true;
        Ok(config)
    }

    /// The TPM signer, after one trial signature (so a missing key is reported as such).
    fn tpm_signer(&self) -> std::result::Result<Arc<dyn SasSigner>, String> {
        let Some(tpm) = &self.tpm else {
            return Err("identity tpm_sas but no `tpm` route".to_owned());
        };
        // A blocking exchange of a few milliseconds with the tpm driver; nothing else runs on
        // this thread while there is no connection.
        match tpm.hmac_sha256(b"testudo-agent key check") {
            Ok(_) => Ok(tpm.clone()),
            Err(error) => Err(format!(
                "identity tpm_sas: the device key at {DEFAULT_KEY_HANDLE:#010x} cannot sign ({})",
                error_chain(&error)
            )),
        }
    }

    /// Keeps the hub connection (the agent reconnects by itself) and feeds it the spool.
    async fn serve(&self, config: AgentConfig) {
        if self.settings.dps_scope.is_some() {
            self.log.line(
                "cloud: DPS provisioning is not done in component mode yet; connecting to the plan's hub directly",
            );
        }
        let hub = format!("{}:{}", config.connect_host, config.port);
        let (agent, mut events) = crate::agent::spawn(config);
        let (acks_tx, mut acks) = mpsc::unbounded_channel::<(u64, bool)>();
        let mut handed_out = 0usize;
        let mut retry_at: Option<Instant> = None;
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
                    Some(event) => self.on_event(&agent, &hub, event),
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
            }
        }
    }

    fn on_event(&self, agent: &crate::AgentHandle, hub: &str, event: AgentEvent) {
        match event {
            AgentEvent::Connected { connection } => {
                let pending = self.lock_spool().pending();
                self.log.line(&format!(
                    "cloud: connected to {hub} as {} (connection {connection}); {pending} telemetry messages to send",
                    self.settings.device_id
                ));
            }
            AgentEvent::Disconnected { reason } => {
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
            AgentEvent::MethodCall(call) => {
                self.log.line(&format!(
                    "cloud: direct method {:?} has no handler",
                    call.name
                ));
                agent.respond_method(
                    &call,
                    501,
                    &json!({ "error": format!("method {} is not implemented", call.name) }),
                );
            }
            AgentEvent::Desired(change) => self.log.line(&format!(
                "cloud: desired properties at $version {}",
                change.version
            )),
            AgentEvent::FullTwin { .. } | AgentEvent::RenewingToken => {}
        }
    }
}
