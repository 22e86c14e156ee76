//! `testudo app run`: run one WebAssembly app locally under exactly the grants given on the
//! command line, with the same host and limits as on a device.
//! `testudo app precompile IN.wasm OUT.cwasm`: compile an app ahead of time with the device
//! host's engine settings (for images: OUT is IN's sidecar, `P.wasm` -> `P.cwasm`).
//!
//! Exit codes: the app's own code, or (with a one-line reason on stderr) 70 trap,
//! 71 memory/table limit, 72 CPU-time limit, 73 output limit, 74 import not granted,
//! 76 the app could not be loaded or set up. The table lives in the `testudo-wasm-host` docs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use testudo_wasm_host::grants::{
    parse_dir_grant, parse_env_grant, parse_tcp_grant, SensorGrant, TelemetryGrant,
};
use testudo_wasm_host::limits::{parse_duration, parse_size};
use testudo_wasm_host::{
    compile_app, AppLimits, EngineOptions, Grants, HostEngine, HostError, LocalDevice, ModuleCache,
    OutputSink, PreparedApp, RunContext, StopSignal, EXIT_SETUP_FAILED,
};

/// `testudo app ...`
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one app (WASI preview 1 module or preview 2 component) with only these grants.
    Run(Box<RunArgs>),
    /// Compile an app ahead of time with the device host's engine settings. A device host
    /// loads `P.cwasm` next to `P.wasm` from a read-only filesystem instead of compiling.
    Precompile(PrecompileArgs),
}

/// Arguments of `testudo app precompile`.
#[derive(Debug, clap::Args)]
pub struct PrecompileArgs {
    /// The app (.wasm module or component).
    input: PathBuf,
    /// Where to write the compiled form (written atomically).
    output: PathBuf,
    /// The processor to compile for: `native` (this machine) or the features the device's
    /// processor has beyond its architecture's baseline, comma separated (Cranelift names,
    /// e.g. `sse3,sse41,popcnt`; empty for the bare baseline), as a board's `cpu_features`.
    #[arg(long, default_value = "native")]
    cpu_features: String,
}

/// Arguments of `testudo app run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The app (.wasm module or component).
    app: PathBuf,
    /// Preopen a directory: HOST:GUEST, or HOST:GUEST:ro for read-only.
    #[arg(long = "dir", value_name = "HOST:GUEST[:ro]")]
    dirs: Vec<String>,
    /// Allow outbound TCP to this destination (testudo:device/net and wasi:sockets).
    #[arg(long = "allow-tcp", value_name = "HOST:PORT")]
    allow_tcp: Vec<String>,
    /// Set an environment variable for the app.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Linear memory limit, e.g. 16MiB.
    #[arg(long, value_name = "SIZE", default_value = "64MiB")]
    memory: String,
    /// CPU time budget for the run, e.g. 2s (default: none).
    #[arg(long = "cpu-time", value_name = "DURATION")]
    cpu_time: Option<String>,
    /// Output budget for stdout+stderr, e.g. 1MiB.
    #[arg(long = "output-limit", value_name = "SIZE", default_value = "16MiB")]
    output_limit: String,
    /// Grant sensor reading; the channel reads this fixed value (repeatable).
    #[arg(long = "sensor", value_name = "CHANNEL=VALUE")]
    sensors: Vec<String>,
    /// Grant telemetry publishing; records are appended to FILE as JSON lines.
    #[arg(long = "telemetry-out", value_name = "FILE")]
    telemetry_out: Option<PathBuf>,
    /// Grant telemetry receiving; records are read from FILE (JSON lines: topic, payload).
    #[arg(long = "telemetry-in", value_name = "FILE")]
    telemetry_in: Option<PathBuf>,
    /// The compiled-module cache (default: $XDG_CACHE_HOME or ~/.cache, /testudo/wasm).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Arguments for the app.
    #[arg(last = true)]
    args: Vec<String>,
}

/// Runs `testudo app ...`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run_app(*args),
        Command::Precompile(args) => {
            // The error names the file and the step; `main` prints its chain on one line.
            let cpu = testudo_wasm_host::precompile::CpuTarget::parse(&args.cpu_features);
            testudo_wasm_host::precompile::precompile_file(&args.input, &args.output, &cpu)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_app(args: RunArgs) -> anyhow::Result<ExitCode> {
    let name = args.app.file_stem().map_or_else(
        || "app".to_owned(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    match prepare_and_run(&name, args) {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(error) => {
            let code = match error.downcast_ref::<HostError>() {
                Some(HostError::ImportNotGranted { .. }) => 74,
                _ => EXIT_SETUP_FAILED,
            };
            eprintln!("testudo: {error:#}");
            Ok(ExitCode::from(code))
        }
    }
}

fn prepare_and_run(name: &str, args: RunArgs) -> anyhow::Result<u8> {
    let (grants, device) = grants_from_args(&args)?;
    let limits = AppLimits {
        memory_bytes: parse_size(&args.memory)
            .with_context(|| format!("--memory {}: expected e.g. 16MiB", args.memory))?,
        cpu_time: args
            .cpu_time
            .as_deref()
            .map(|text| {
                parse_duration(text).with_context(|| format!("--cpu-time {text}: expected e.g. 2s"))
            })
            .transpose()?,
        output_bytes: parse_size(&args.output_limit)
            .with_context(|| format!("--output-limit {}: expected e.g. 1MiB", args.output_limit))?,
        ..AppLimits::default()
    };
    let bytes = std::fs::read(&args.app).map_err(|source| HostError::ReadApp {
        path: args.app.clone(),
        source,
    })?;
    let engine = HostEngine::new(&EngineOptions::default())?;
    let cache = ModuleCache::new(args.cache.clone().unwrap_or_else(default_cache_dir));
    let compiled = compile_app(engine.engine(), Some(&cache), name, &bytes)?;
    let prepared = PreparedApp::prepare(engine.engine(), &compiled, Arc::new(grants))?;
    let outcome = prepared.run(&RunContext {
        limits,
        backend: Arc::new(device),
        stdout: OutputSink::Stdout,
        stderr: OutputSink::Stderr,
        stop: StopSignal::new(),
    })?;
    if let Some(reason) = outcome.reason() {
        eprintln!("testudo: app {name}: {reason}");
    }
    Ok(outcome.exit_code())
}

fn grants_from_args(args: &RunArgs) -> anyhow::Result<(Grants, LocalDevice)> {
    let mut grants = Grants {
        stdio: true,
        args: args.args.clone(),
        ..Grants::default()
    };
    for dir in &args.dirs {
        grants.dirs.push(parse_dir_grant(dir)?);
    }
    for destination in &args.allow_tcp {
        grants.net.insert(parse_tcp_grant(destination)?);
    }
    for env in &args.env {
        grants.env.push(parse_env_grant(env)?);
    }
    grants.env.sort();
    let mut device = LocalDevice::new();
    if !args.sensors.is_empty() {
        let mut channels = std::collections::BTreeSet::new();
        for sensor in &args.sensors {
            let (channel, value) = sensor
                .split_once('=')
                .and_then(|(channel, value)| Some((channel, value.parse::<f64>().ok()?)))
                .with_context(|| format!("--sensor {sensor}: expected CHANNEL=NUMBER"))?;
            channels.insert(channel.to_owned());
            device = device.with_sensor(channel, value);
        }
        grants.sensor = Some(SensorGrant {
            route: "cli".to_owned(),
            channels,
        });
    }
    if args.telemetry_out.is_some() || args.telemetry_in.is_some() {
        grants.telemetry = Some(TelemetryGrant {
            publish: args.telemetry_out.as_ref().map(|_| "cli".to_owned()),
            receive: args.telemetry_in.as_ref().map(|_| "cli".to_owned()),
        });
    }
    if let Some(path) = &args.telemetry_out {
        device = device.with_telemetry_file(path.clone());
    }
    if let Some(path) = &args.telemetry_in {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading telemetry input {}", path.display()))?;
        for (number, line) in text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
        {
            let record =
                testudo_wasm_host::device::parse_record_json_line(line).with_context(|| {
                    format!(
                        "{}:{}: expected {{\"topic\":..,\"payload\":..}}",
                        path.display(),
                        number + 1
                    )
                })?;
            device.push_inbox(record);
        }
    }
    Ok((grants, device))
}

fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("testudo")
        .join("wasm")
}
