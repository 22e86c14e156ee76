//! Subcommand definitions and dispatch. One file per subcommand (or subcommand group).
//!
//! To add a subcommand: add its file, a variant to [`Command`] (behind the subsystem's cargo
//! feature) and one arm in [`run`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[cfg(feature = "agent")]
mod agent;
#[cfg(feature = "config")]
mod audit;
#[cfg(feature = "images")]
mod build;
#[cfg(feature = "updater")]
mod bundle;
#[cfg(feature = "config")]
mod check;
#[cfg(any(
    feature = "config",
    feature = "images",
    feature = "runtime",
    feature = "deploy"
))]
mod config_input;
#[cfg(feature = "deploy")]
mod deploy;
#[cfg(feature = "deploy")]
mod deploy_os;
#[cfg(feature = "config")]
mod graph;
#[cfg(feature = "hub")]
mod hub;
#[cfg(feature = "updater")]
mod keys;
#[cfg(feature = "config")]
mod plan;
#[cfg(feature = "runtime")]
mod run;
#[cfg(feature = "updater")]
mod update;
#[cfg(feature = "images")]
mod vm;

#[cfg(feature = "wasm")]
mod app;

/// testudo: declarative, capability-routed system images for IoT gateways.
#[derive(Debug, Parser)]
#[command(name = "testudo", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Whether the command only reads and prints, so that a closed output pipe (`testudo …
    /// | head`) may end it at once, as it ends `cat`. Not the commands that write slots,
    /// images or twins, run devices or serve: they see the write error instead, and
    /// finish or clean up what they started.
    pub fn only_prints(&self) -> bool {
        match &self.command {
            #[cfg(feature = "config")]
            Command::Check(_) | Command::Plan(_) | Command::Graph(_) | Command::Audit(_) => true,
            #[cfg(feature = "updater")]
            Command::Bundle(_) => true,
            _ => false,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// WebAssembly apps: run one locally under exactly the given grants (`testudo app run`),
    /// or compile one ahead of time for an image (`testudo app precompile`).
    #[cfg(feature = "wasm")]
    App {
        #[command(subcommand)]
        command: app::Command,
    },
    /// Cloud agent: connect a device to IoT Hub (echo example), import its key into the TPM.
    #[cfg(feature = "agent")]
    Agent(agent::Args),
    /// Validate a system config; prints a one-line summary or every located error.
    #[cfg(feature = "config")]
    Check(check::Args),
    /// Write the canonical plan JSON (the input of every later stage).
    #[cfg(feature = "config")]
    Plan(plan::Args),
    /// Draw the capability graph as SVG (built in) or Graphviz DOT.
    #[cfg(feature = "config")]
    Graph(graph::Args),
    /// Per component: capabilities granted vs. all, trusted base, reduction.
    #[cfg(feature = "config")]
    Audit(audit::Args),
    /// Create, inspect and extract RAUC-compatible signed update bundles.
    #[cfg(feature = "updater")]
    Bundle(bundle::Args),
    /// Create development signing keys.
    #[cfg(feature = "updater")]
    Keys(keys::Args),
    /// A/B updates on the device: install, status, mark slots good/bad/active.
    #[cfg(feature = "updater")]
    Update(update::Args),
    /// Local Azure IoT Hub emulator (a fake for tests): serve, registry, twins.
    #[cfg(feature = "hub")]
    Hub(hub::Args),
    /// Build a system's image: rootfs.img, disk.img, update.raucb, signed manifest.json.
    #[cfg(feature = "images")]
    Build(build::Args),
    /// Boot an image in QEMU (OVMF, swtpm, serial console on stdout).
    #[cfg(feature = "images")]
    Vm(vm::Args),
    /// Run a whole system on this host, each component sandboxed; prints `ready` when up.
    #[cfg(feature = "runtime")]
    Run(run::Args),
    /// Deploy a signed WASM app into a device's app slot through its twin; show its status.
    #[cfg(feature = "deploy")]
    Deploy(deploy::Args),
}

/// Runs the parsed command line; the returned code is the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        #[cfg(feature = "wasm")]
        Command::App { command } => app::run(command),
        #[cfg(feature = "agent")]
        Command::Agent(args) => agent::run(args),
        #[cfg(feature = "config")]
        Command::Check(args) => check::run(args),
        #[cfg(feature = "config")]
        Command::Plan(args) => plan::run(args),
        #[cfg(feature = "config")]
        Command::Graph(args) => graph::run(args),
        #[cfg(feature = "config")]
        Command::Audit(args) => audit::run(args),
        #[cfg(feature = "updater")]
        Command::Bundle(args) => bundle::run(args),
        #[cfg(feature = "updater")]
        Command::Keys(args) => keys::run(args),
        #[cfg(feature = "updater")]
        Command::Update(args) => update::run(args),
        #[cfg(feature = "hub")]
        Command::Hub(args) => hub::run(args),
        #[cfg(feature = "images")]
        Command::Build(args) => build::run(args),
        #[cfg(feature = "images")]
        Command::Vm(args) => vm::run(args),
        #[cfg(feature = "runtime")]
        Command::Run(args) => run::run(args),
        #[cfg(feature = "deploy")]
        Command::Deploy(args) => deploy::run(args),
    }
}
