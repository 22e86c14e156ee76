//! `testudo hub`: the local Azure IoT Hub emulator (a faithful fake; Azure cannot run here).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use testudo_hub::{control, Emulator, EmulatorConfig};

/// Arguments of `testudo hub`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: HubCommand,
}

#[derive(Debug, Subcommand)]
enum HubCommand {
    /// Serve MQTT/TLS (devices, DPS) and HTTPS (service API) until SIGTERM or Ctrl-C.
    Serve {
        /// State directory (created; `ca.pem` is written there on first start).
        #[arg(long)]
        state: PathBuf,
        /// Hub host name the TLS certificate is issued for.
        #[arg(long, default_value = "localhost")]
        host: String,
        /// MQTT/TLS port (the official device SDK always dials 8883).
        #[arg(long, default_value_t = 8883)]
        mqtt_port: u16,
        /// HTTPS service API port.
        #[arg(long, default_value_t = 443)]
        https_port: u16,
    },
    /// Device registry.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// Print the service connection string (policy iothubowner).
    ConnectionString {
        /// State directory.
        #[arg(long)]
        state: PathBuf,
    },
    /// Print a device twin (service view), after patching desired properties if given.
    Twin {
        /// State directory.
        #[arg(long)]
        state: PathBuf,
        /// Device id.
        id: String,
        /// Desired-properties patch (JSON object; `null` deletes a key).
        #[arg(long)]
        desired: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Register a device with fresh symmetric keys; prints its connection string.
    Add {
        /// State directory.
        #[arg(long)]
        state: PathBuf,
        /// Device id.
        id: String,
    },
}

/// Runs `testudo hub ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        HubCommand::Serve {
            state,
            host,
            mqtt_port,
            https_port,
        } => {
            let hub = Emulator::start(EmulatorConfig {
                state_dir: state.clone(),
                host,
                mqtt_port,
                https_port,
            })
            .with_context(|| format!("cannot start the hub emulator on {}", state.display()))?;
            println!(
                "hub emulator (a local fake of Azure IoT Hub) serving {}",
                hub.host
            );
            println!("mqtt: {}", hub.mqtt_addr);
            println!("https: {}", hub.https_addr);
            println!("ca: {}", state.join("ca.pem").display());
            println!("service: {}", hub.service_connection_string());
            hub.wait_for_termination_signal()
                .context("cannot wait for a termination signal")?;
            hub.shutdown();
            eprintln!("hub emulator stopped");
            Ok(ExitCode::SUCCESS)
        }
        HubCommand::Device {
            command: DeviceCommand::Add { state, id },
        } => {
            let connection_string = control::add_device(&state, &id)
                .with_context(|| format!("cannot add device {id}"))?;
            println!("{connection_string}");
            Ok(ExitCode::SUCCESS)
        }
        HubCommand::ConnectionString { state } => {
            let connection_string = control::service_connection_string(&state)
                .with_context(|| format!("cannot read the hub in {}", state.display()))?;
            println!("{connection_string}");
            Ok(ExitCode::SUCCESS)
        }
        HubCommand::Twin { state, id, desired } => {
            let desired = desired
                .map(|text| serde_json::from_str::<serde_json::Value>(&text))
                .transpose()
                .context("--desired is not valid JSON")?;
            let twin = control::twin(&state, &id, desired.as_ref())
                .with_context(|| format!("cannot access the twin of {id}"))?;
            println!("{}", serde_json::to_string_pretty(&twin)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
