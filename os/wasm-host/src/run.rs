//! Running one app: build its WASI context from its grants only, link only granted
//! interfaces, apply its limits, call `_start` (module) or `wasi:cli/run` (component), and
//! turn whatever happened into an [`Outcome`].

use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{CallHook, Engine, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::cache::{AppCode, CompiledApp};
use crate::device::{DeviceBackend, DeviceHost};
use crate::device_p1::{self, HasDevice};
use crate::device_p2;
use crate::error::{boxed, HostError};
use crate::grants::Grants;
use crate::limits::{AppLimiter, AppLimits, LimitExceeded};
use crate::output::{BudgetedOutput, OutputBudget, OutputSink};

/// Core module name of WASI preview 1.
const WASI_P1_MODULE: &str = "wasi_snapshot_preview1";

/// Asks a running app to stop (checked every epoch tick while it runs wasm code).
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicBool>);

impl StopSignal {
    /// A signal not yet raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the signal.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the signal was raised.
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How an app run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The app exited with this code (0 = success).
    Exited(i32),
    /// A limit stopped it.
    Limit(LimitExceeded),
    /// It trapped (out-of-bounds access, unreachable, stack exhausted...).
    Trap(String),
    /// It imports something no route grants; it never started.
    ImportNotGranted {
        /// Import module (or component import name).
        module: String,
        /// Import field (empty for component imports).
        name: String,
    },
}

impl Outcome {
    /// Process exit code for this outcome (see the crate docs for the table).
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Exited(code) => u8::try_from(*code & 0xff).unwrap_or(1),
            Outcome::Trap(_) => 70,
            Outcome::Limit(LimitExceeded::Memory { .. } | LimitExceeded::Table { .. }) => 71,
            Outcome::Limit(LimitExceeded::CpuTime { .. } | LimitExceeded::WallTime { .. }) => 72,
            Outcome::Limit(LimitExceeded::Output { .. }) => 73,
            Outcome::ImportNotGranted { .. } => 74,
            Outcome::Limit(LimitExceeded::Stopped) => 75,
        }
    }

    /// Whether the app ended well (exit 0).
    pub fn is_success(&self) -> bool {
        *self == Outcome::Exited(0)
    }

    /// A one-line reason for anything but a normal exit; `None` for [`Outcome::Exited`].
    pub fn reason(&self) -> Option<String> {
        match self {
            Outcome::Exited(_) => None,
            Outcome::Limit(limit) => Some(limit.to_string()),
            Outcome::Trap(trap) => Some(format!("trapped: {trap}")),
            Outcome::ImportNotGranted { module, name } if name.is_empty() => {
                Some(format!("import {module} is not granted"))
            }
            Outcome::ImportNotGranted { module, name } => {
                Some(format!("import {module}#{name} is not granted"))
            }
        }
    }
}

/// Per-run settings that are not grants.
#[derive(Clone)]
pub struct RunContext {
    /// Limits for this run.
    pub limits: AppLimits,
    /// Where device calls go.
    pub backend: Arc<dyn DeviceBackend>,
    /// Where stdout goes (forced to discard when the grants give no stdio).
    pub stdout: OutputSink,
    /// Where stderr goes (same rule).
    pub stderr: OutputSink,
    /// Stop request for this run.
    pub stop: StopSignal,
}

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Store data of one app instance.
pub struct AppState<W> {
    wasi: W,
    limiter: AppLimiter,
    device: DeviceHost,
    /// Returns from host calls so far (the CPU budget restarts after each).
    host_calls: u64,
    /// Set while the epoch callback runs: its own return to wasm is not an app host call.
    in_epoch_check: bool,
}

/// WASI state of a component.
pub struct P2Wasi {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl<W> HasDevice for AppState<W> {
    fn device(&self) -> &DeviceHost {
        &self.device
    }
}

impl WasiView for AppState<P2Wasi> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi.ctx,
            table: &mut self.wasi.table,
        }
    }
}

enum Prepared {
    Module(wasmtime::InstancePre<AppState<WasiP1Ctx>>),
    Component(CommandPre<AppState<P2Wasi>>),
}

/// An app linked against exactly its grants, ready to run any number of times.
pub struct PreparedApp {
    name: String,
    engine: Engine,
    grants: Arc<Grants>,
    allowed_addrs: Arc<BTreeSet<SocketAddr>>,
    prepared: Prepared,
}

impl std::fmt::Debug for PreparedApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedApp")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Either a run outcome or the reason the app could not even be set up.
pub type RunResult = Result<Outcome, HostError>;

impl PreparedApp {
    /// Links `app` with exactly `grants`. An import outside them is refused here.
    pub fn prepare(
        engine: &Engine,
        app: &CompiledApp,
        grants: Arc<Grants>,
    ) -> Result<Self, HostError> {
        let name = app.name.clone();
        let allowed_addrs = Arc::new(resolve_destinations(&name, &grants)?);
        let link_error = |error| HostError::Link {
            app: name.clone(),
            source: boxed(error),
        };
        let memory_image_error = |error| HostError::MemoryImage {
            app: name.clone(),
            source: boxed(error),
        };
        let prepared = match &app.code {
            AppCode::Module(module) => {
                for import in module.imports() {
                    let granted = import.module() == WASI_P1_MODULE
                        || device_p1::is_device_import(import.module(), import.name());
                    if !granted {
                        return Err(HostError::ImportNotGranted {
                            app: name.clone(),
                            module: import.module().to_owned(),
                            name: import.name().to_owned(),
                        });
                    }
                }
                // The copy-on-write image of the app's memory is made now rather than at the
                // first instantiation, so the run phase needs no `memfd_create`.
                module
                    .initialize_copy_on_write_image()
                    .map_err(memory_image_error)?;
                let mut linker = wasmtime::Linker::new(engine);
                wasmtime_wasi::p1::add_to_linker_sync(
                    &mut linker,
                    |state: &mut AppState<WasiP1Ctx>| &mut state.wasi,
                )
                .map_err(link_error)?;
                crate::refused_calls::shadow_p1(&mut linker).map_err(link_error)?;
                device_p1::add_to_linker(&mut linker).map_err(link_error)?;
                Prepared::Module(linker.instantiate_pre(module).map_err(link_error)?)
            }
            AppCode::Component(component) => {
                for (import, _) in component.component_type().imports(engine) {
                    let granted =
                        import.starts_with("wasi:") || device_p2::is_device_import(import);
                    if !granted {
                        return Err(HostError::ImportNotGranted {
                            app: name.clone(),
                            module: import.to_owned(),
                            name: String::new(),
                        });
                    }
                }
                component
                    .initialize_copy_on_write_image()
                    .map_err(memory_image_error)?;
                let mut linker = wasmtime::component::Linker::new(engine);
                wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link_error)?;
                crate::refused_calls::shadow_p2(&mut linker).map_err(link_error)?;
                device_p2::add_to_linker(&mut linker).map_err(link_error)?;
                let pre = linker.instantiate_pre(component).map_err(link_error)?;
                Prepared::Component(CommandPre::new(pre).map_err(link_error)?)
            }
        };
        Ok(Self {
            name,
            engine: engine.clone(),
            grants,
            allowed_addrs,
            prepared,
        })
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Instantiates and runs the app to its end on the current thread.
    pub fn run(&self, context: &RunContext) -> RunResult {
        self.run_inner(context, true)
    }

    /// Instantiates the app without running it (start sections and data segments run):
    /// the health check of a new version and the instantiation benchmark.
    pub fn instantiate_only(&self, context: &RunContext) -> RunResult {
        self.run_inner(context, false)
    }

    /// Instantiates a core module and calls its export `export(argument)` instead of
    /// `_start` (reactor-style entry points; the host-call benchmark). The CPU and
    /// wall-clock budgets apply to this call.
    pub fn call_export(&self, context: &RunContext, export: &str, argument: i32) -> RunResult {
        let Prepared::Module(pre) = &self.prepared else {
            return Ok(Outcome::Trap(format!(
                "{export}: only core modules have plain exports"
            )));
        };
        let mut builder = self.wasi_builder(context)?;
        let state = AppState {
            wasi: builder.build_p1(),
            limiter: AppLimiter::new(&context.limits),
            device: DeviceHost::new(
                &self.name,
                Arc::clone(&self.grants),
                Arc::clone(&context.backend),
            ),
            host_calls: 0,
            in_epoch_check: false,
        };
        let mut store = self.store(state, context);
        let instance = match pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(error) => return Ok(classify(error)),
        };
        let function = match instance.get_typed_func::<i32, ()>(&mut store, export) {
            Ok(function) => function,
            Err(error) => return Ok(Outcome::Trap(format!("no export {export}(i32): {error}"))),
        };
        Ok(match function.call(&mut store, argument) {
            Ok(()) => Outcome::Exited(0),
            Err(error) => classify(error),
        })
    }

    fn run_inner(&self, context: &RunContext, call: bool) -> RunResult {
        let builder = self.wasi_builder(context)?;
        let limiter = AppLimiter::new(&context.limits);
        let device = DeviceHost::new(
            &self.name,
            Arc::clone(&self.grants),
            Arc::clone(&context.backend),
        );
        match &self.prepared {
            Prepared::Module(pre) => {
                let mut builder = builder;
                let state = AppState {
                    wasi: builder.build_p1(),
                    limiter,
                    device,
                    host_calls: 0,
                    in_epoch_check: false,
                };
                let mut store = self.store(state, context);
                let instance = match pre.instantiate(&mut store) {
                    Ok(instance) => instance,
                    Err(error) => return Ok(classify(error)),
                };
                if !call {
                    return Ok(Outcome::Exited(0));
                }
                let start = match instance.get_typed_func::<(), ()>(&mut store, "_start") {
                    Ok(start) => start,
                    Err(error) => return Ok(Outcome::Trap(format!("no _start: {error}"))),
                };
                Ok(match start.call(&mut store, ()) {
                    Ok(()) => Outcome::Exited(0),
                    Err(error) => classify(error),
                })
            }
            Prepared::Component(pre) => {
                let mut builder = builder;
                let state = AppState {
                    wasi: P2Wasi {
                        ctx: builder.build(),
                        table: ResourceTable::new(),
                    },
                    limiter,
                    device,
                    host_calls: 0,
                    in_epoch_check: false,
                };
                let mut store = self.store(state, context);
                let command = match pre.instantiate(&mut store) {
                    Ok(command) => command,
                    Err(error) => return Ok(classify(error)),
                };
                if !call {
                    return Ok(Outcome::Exited(0));
                }
                Ok(match command.wasi_cli_run().call_run(&mut store) {
                    Ok(Ok(())) => Outcome::Exited(0),
                    Ok(Err(())) => Outcome::Exited(1),
                    Err(error) => classify(error),
                })
            }
        }
    }

    fn store<W: 'static>(&self, state: AppState<W>, context: &RunContext) -> Store<AppState<W>> {
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        if context.limits.cpu_time.is_some() {
            store.call_hook(|mut store, hook| {
                if matches!(hook, CallHook::ReturningFromHost) {
                    let state = store.data_mut();
                    if state.in_epoch_check {
                        state.in_epoch_check = false;
                    } else {
                        state.host_calls += 1;
                    }
                }
                Ok(())
            });
        }
        let mut budget = CallBudget::start(&context.limits, context.stop.clone());
        store.epoch_deadline_callback(move |mut store| {
            let state = store.data_mut();
            state.in_epoch_check = true;
            budget
                .check(state.host_calls)
                .map(|()| UpdateDeadline::Continue(1))
                .map_err(wasmtime::Error::new)
        });
        store
    }

    fn wasi_builder(&self, context: &RunContext) -> Result<WasiCtxBuilder, HostError> {
        let budget = OutputBudget::new(context.limits.output_bytes);
        let (stdout, stderr) = if self.grants.stdio {
            (context.stdout.clone(), context.stderr.clone())
        } else {
            (OutputSink::Discard, OutputSink::Discard)
        };
        let mut builder = WasiCtxBuilder::new();
        builder
            .allow_blocking_current_thread(true)
            .arg(&self.name)
            .args(&self.grants.args)
            .envs(&self.grants.env)
            .stdout(BudgetedOutput::new(stdout, Arc::clone(&budget)))
            .stderr(BudgetedOutput::new(stderr, budget))
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .allow_tcp(!self.allowed_addrs.is_empty());
        let allowed = Arc::clone(&self.allowed_addrs);
        builder.socket_addr_check(move |addr, use_| {
            let ok = matches!(use_, SocketAddrUse::TcpConnect) && allowed.contains(&addr);
            Box::pin(async move { ok })
        });
        for dir in &self.grants.dirs {
            let perms = if dir.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            builder
                .preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|error| HostError::Preopen {
                    app: self.name.clone(),
                    host_path: dir.host.clone(),
                    guest_path: dir.guest.clone(),
                    source: boxed(error),
                })?;
        }
        Ok(builder)
    }
}

/// Resolves every routed `host:port` once, for `wasi:sockets` checks.
fn resolve_destinations(app: &str, grants: &Grants) -> Result<BTreeSet<SocketAddr>, HostError> {
    let mut addrs = BTreeSet::new();
    for destination in &grants.net {
        let resolved =
            destination
                .to_socket_addrs()
                .map_err(|source| HostError::NetDestination {
                    app: app.to_owned(),
                    destination: destination.clone(),
                    source: Some(source),
                })?;
        addrs.extend(resolved);
    }
    Ok(addrs)
}

/// CPU and wall-clock budgets plus the stop request; checked each epoch tick on the app's
/// own thread (so thread CPU time is the app's).
///
/// The CPU budget bounds the CPU time the app spends *without returning to the host*: it
/// restarts whenever the app has made a host call (WASI or `testudo:device`) since the last
/// check. A runaway loop is stopped after the budget; a long-running app that reads, sleeps
/// and publishes is not. The wall-clock budget covers the whole call into the app.
struct CallBudget {
    stop: StopSignal,
    cpu_limit: Option<Duration>,
    wall_limit: Option<Duration>,
    cpu_start: Duration,
    host_calls_seen: u64,
    wall_start: Instant,
}

impl CallBudget {
    fn start(limits: &AppLimits, stop: StopSignal) -> Self {
        Self {
            stop,
            cpu_limit: limits.cpu_time,
            wall_limit: limits.wall_time,
            // Read only when there is a CPU budget (a syscall: the vDSO has no thread clocks).
            cpu_start: match limits.cpu_time {
                Some(_) => thread_cpu_time(),
                None => Duration::ZERO,
            },
            host_calls_seen: 0,
            wall_start: Instant::now(),
        }
    }

    fn check(&mut self, host_calls: u64) -> Result<(), LimitExceeded> {
        if self.stop.is_raised() {
            return Err(LimitExceeded::Stopped);
        }
        if let Some(limit) = self.cpu_limit {
            let now = thread_cpu_time();
            if host_calls != self.host_calls_seen {
                self.host_calls_seen = host_calls;
                self.cpu_start = now;
            }
            if now.saturating_sub(self.cpu_start) > limit {
                return Err(LimitExceeded::CpuTime { limit });
            }
        }
        if let Some(limit) = self.wall_limit {
            if self.wall_start.elapsed() > limit {
                return Err(LimitExceeded::WallTime { limit });
            }
        }
        Ok(())
    }
}

/// CPU time used by the calling thread.
fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// Turns an error out of instantiation or a call into an outcome.
fn classify(error: wasmtime::Error) -> Outcome {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return Outcome::Exited(exit.0);
    }
    if let Some(limit) = error.downcast_ref::<LimitExceeded>() {
        return Outcome::Limit(limit.clone());
    }
    for cause in error.chain() {
        if let Some(limit) = cause.downcast_ref::<LimitExceeded>() {
            return Outcome::Limit(limit.clone());
        }
        if let Some(exit) = cause.downcast_ref::<I32Exit>() {
            return Outcome::Exited(exit.0);
        }
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return Outcome::Trap(first_line(&trap.to_string()));
    }
    Outcome::Trap(first_line(&error.to_string()))
}

/// Reasons are reported as one line.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}
