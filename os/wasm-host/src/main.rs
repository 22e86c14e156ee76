//! `testudo-wasm-host`: runs one WASM component of a plan (see the crate docs for arguments
//! and exit codes), precompiles an app for an image (`precompile`), or turns a preview 1
//! module into a component (`componentize`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use testudo_error_chain::error_chain;
use testudo_wasm_host::cache::{load_app, CodeOrigin, CodeSources};
use testudo_wasm_host::componentize::componentize;
use testudo_wasm_host::precompile::sidecar_path;
use testudo_wasm_host::provided::{ProvidedTelemetry, ProvidingDevice};
use testudo_wasm_host::scheme_device::{LogWriter, SchemeDevice};
use testudo_wasm_host::DeviceBackend;
use testudo_wasm_host::{
    AppLimits, EngineOptions, HostEngine, HostError, LocalDevice, ModuleCache, OutputSink,
    PlanPaths, PlannedApp, PreparedApp, RunContext, StopSignal, EXIT_SETUP_FAILED,
};

#[derive(Debug, Parser)]
#[command(
    name = testudo_plan::layout::rootfs::WASM_HOST_BINARY,
    about = "Runs one WASM app of a testudo plan"
)]
struct Args {
    #[command(subcommand)]
    tool: Option<Tool>,
    /// The plan (JSON).
    #[arg(long)]
    plan: Option<PathBuf>,
    /// The component to run.
    #[arg(long)]
    component: Option<String>,
    /// Directory the plan's module paths are relative to.
    #[arg(long, default_value = ".")]
    app_root: PathBuf,
    /// Root of storage providers' per-consumer directories.
    #[arg(long, default_value = testudo_plan::layout::wasm_sandbox::DATA)]
    storage_root: PathBuf,
    /// The .cwasm cache directory.
    #[arg(long, default_value = testudo_plan::layout::wasm_sandbox::CACHE)]
    cache: PathBuf,
    /// Local device backend directory (sensors/<channel>, telemetry.jsonl).
    #[arg(long)]
    device_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Tool {
    /// Compile an app ahead of time with this host's engine settings; the host loads
    /// `P.cwasm` next to `P.wasm` when it is on a read-only filesystem.
    Precompile {
        /// The module or component (.wasm).
        input: PathBuf,
        /// Where to write the compiled form (.cwasm), atomically.
        output: PathBuf,
        /// The processor to compile for: `native` (this machine, every feature it has) or
        /// the features the code may assume beyond the architecture's baseline, comma
        /// separated (Cranelift names, e.g. `sse3,sse41,popcnt`; empty for the bare baseline).
        #[arg(long, default_value = "native")]
        cpu_features: String,
    },
    /// Turn a WASI preview 1 module into a component with the testudo:device world.
    Componentize {
        /// The core module.
        input: PathBuf,
        /// Where to write the component.
        output: PathBuf,
        /// The WIT directory (wasm-apps/wit).
        #[arg(long)]
        wit: PathBuf,
        /// The world.
        #[arg(long, default_value = "app")]
        world: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("testudo-wasm-host: {}", error_chain(&error));
            ExitCode::from(EXIT_SETUP_FAILED)
        }
    }
}

fn run(args: Args) -> Result<u8, HostError> {
    if let Some(Tool::Precompile {
        input,
        output,
        cpu_features,
    }) = &args.tool
    {
        let cpu = testudo_wasm_host::precompile::CpuTarget::parse(cpu_features);
        testudo_wasm_host::precompile::precompile_file(input, output, &cpu)?;
        return Ok(0);
    }
    if let Some(Tool::Componentize {
        input,
        output,
        wit,
        world,
    }) = args.tool
    {
        let module = std::fs::read(&input).map_err(|source| HostError::ReadApp {
            path: input.clone(),
            source,
        })?;
        let component = componentize(&input.display().to_string(), &module, &wit, &world)?;
        std::fs::write(&output, component).map_err(|source| HostError::Write {
            path: output,
            source,
        })?;
        return Ok(0);
    }
    // Stopped by init: exit at once rather than after its grace period. An app keeps no state
    // in the host; what it wrote is in its log and storage already, and a stop in the middle
    // of a call ends it as the kill after the grace period would.
    testudo_scheme::lifecycle::exit_on_sigterm();
    let (Some(plan_path), Some(component)) = (args.plan, args.component) else {
        eprintln!("testudo-wasm-host: --plan and --component are required");
        return Ok(2);
    };
    let plan_bytes = std::fs::read(&plan_path).map_err(|source| HostError::ReadPlan {
        path: plan_path.clone(),
        source: source.into(),
    })?;
    let plan =
        testudo_plan::Plan::from_bytes(&plan_bytes).map_err(|source| HostError::ReadPlan {
            path: plan_path.clone(),
            source: source.into(),
        })?;
    let planned = PlannedApp::from_plan(
        &plan,
        &component,
        &PlanPaths {
            app_root: args.app_root,
            storage_root: args.storage_root,
        },
    )?;
    for dir in &planned.grants.dirs {
        testudo_wasm_host::cache::create_dir_all(&dir.host).map_err(|source| HostError::Write {
            path: dir.host.clone(),
            source,
        })?;
    }
    let engine = HostEngine::new(&EngineOptions::one_app(planned.limits.memory_bytes))?;
    let bytes = std::fs::read(&planned.module).map_err(|source| HostError::ReadApp {
        path: planned.module.clone(),
        source,
    })?;
    let cache = ModuleCache::new(args.cache);
    let sidecar = sidecar_path(&planned.module);
    let compiled = load_app(
        engine.engine(),
        CodeSources {
            cache: Some(&cache),
            sidecar: Some(&sidecar),
        },
        &component,
        &bytes,
    )?;
    if let Some(reason) = &compiled.cache_write_failed {
        eprintln!("testudo-wasm-host: app {component}: compiled module not cached ({reason})");
    }
    if let Some(reason) = &compiled.sidecar_rejected {
        eprintln!(
            "testudo-wasm-host: app {component}: precompiled {} not used ({reason}); using the cache",
            sidecar.display()
        );
    }
    let prepared =
        match PreparedApp::prepare(engine.engine(), &compiled, Arc::new(planned.grants.clone())) {
            Ok(prepared) => prepared,
            Err(error @ HostError::ImportNotGranted { .. }) => {
                eprintln!("testudo-wasm-host: {}", error_chain(&error));
                return Ok(74);
            }
            Err(error) => return Err(error),
        };
    let handles_passed = std::env::var_os(testudo_scheme::HANDLES_ENV).is_some();
    // The local device of `--device-dir` reads and appends files while the app runs.
    let uses_files =
        !planned.grants.dirs.is_empty() || (!handles_passed && args.device_dir.is_some());
    let (mut backend, stdout, stderr) = device_backend(&planned, handles_passed, args.device_dir)?;
    if let Some(control) =
        testudo_scheme::provider_control().map_err(|source| HostError::Handles { source })?
    {
        let provided =
            ProvidedTelemetry::new(planned.provided_telemetry.iter().map(String::as_str));
        provided.serve(&component, control)?;
        if let Some(capability) = &planned.publishes_into_provided {
            backend = Arc::new(ProvidingDevice::new(provided, capability.clone(), backend));
        }
    }
    let context = RunContext {
        limits: AppLimits::from_plan(&planned.limits),
        backend,
        stdout,
        stderr,
        stop: StopSignal::new(),
    };
    let policy = testudo_wasm_host::run_phase::enter_run_phase(uses_files)?;
    // Where the code of the app about to run came from, and the filter it runs under, once per
    // start: shows whether an image's precompiled sidecars are used on the device.
    eprintln!(
        "testudo-wasm-host: app {component}: code {}; seccomp {}",
        match compiled.origin {
            CodeOrigin::Sidecar => format!("precompiled {}", sidecar.display()),
            CodeOrigin::Cache => "from the cache".to_owned(),
            CodeOrigin::Compiled => "compiled now".to_owned(),
        },
        policy.name()
    );
    let supervisor = testudo_wasm_host::supervise::Supervisor::start(prepared, context)?;
    Ok(supervisor.wait().map_or(0, |outcome| outcome.exit_code()))
}

/// Scheme handles when `testudo-init` passed them (`TESTUDO_HANDLES`), otherwise the local
/// backend (`--device-dir`, or nothing at all).
fn device_backend(
    planned: &PlannedApp,
    handles_passed: bool,
    device_dir: Option<PathBuf>,
) -> Result<(Arc<dyn DeviceBackend>, OutputSink, OutputSink), HostError> {
    if handles_passed {
        let mut handles = testudo_scheme::granted_handles()
            .map_err(|source| HostError::Handles { source })?
            .into_map();
        let (stdout, stderr) = match planned
            .log_route
            .as_ref()
            .and_then(|name| handles.remove(name))
        {
            Some(log) => {
                let writer: Arc<std::sync::Mutex<dyn std::io::Write + Send>> =
                    Arc::new(std::sync::Mutex::new(LogWriter(log)));
                (
                    OutputSink::Writer(Arc::clone(&writer)),
                    OutputSink::Writer(writer),
                )
            }
            None => (OutputSink::Discard, OutputSink::Discard),
        };
        return Ok((
            Arc::new(SchemeDevice::new(handles, planned.net_routes.clone())),
            stdout,
            stderr,
        ));
    }
    let mut device = LocalDevice::new();
    if let Some(dir) = device_dir {
        device = device
            .with_sensor_dir(dir.join("sensors"))
            .with_telemetry_file(dir.join("telemetry.jsonl"));
    }
    Ok((Arc::new(device), OutputSink::Stdout, OutputSink::Stderr))
}
