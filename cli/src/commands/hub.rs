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
        /// HTTPS service API and DPS port.
        #[arg(long, default_value_t = 443)]
        https_port: u16,
        /// DPS ID scope devices register under [default: kept, or random on first start].
        #[arg(long)]
        id_scope: Option<String>,
        /// Issue the server certificate with the CA in this directory (`ca.pem`,
        /// `ca.key.pem`), e.g. tests/hub/dev-ca, instead of the state directory's own.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// DPS enrollments: which devices may provision themselves, and how they prove it.
    Enrollment {
        #[command(subcommand)]
        command: EnrollmentCommand,
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

#[derive(Debug, Subcommand)]
enum EnrollmentCommand {
    /// Enroll a device (or, with --group, a group of devices); prints the enrollment.
    Add {
        /// State directory.
        #[arg(long)]
        state: PathBuf,
        /// Registration id (the device id the device registers as), or the group's id.
        id: String,
        /// TPM attestation: a file with the TPM's endorsement key, as `testudo vm tpm-ek`
        /// prints it (base64 `TPM2B_PUBLIC`).
        #[arg(long, group = "attestation")]
        tpm_ek: Option<PathBuf>,
        /// Symmetric-key attestation with this base64 key, or a fresh one when no key is given.
        #[arg(long, group = "attestation", num_args = 0..=1, default_missing_value = "")]
        symmetric_key: Option<String>,
        /// X.509 attestation: the device's certificate (PEM); its SHA-256 thumbprint is enrolled.
        #[arg(long, group = "attestation")]
        x509_cert: Option<PathBuf>,
        /// X.509 enrollment group: the CA certificate (PEM) that issues the devices'
        /// certificates; each device registers under its certificate's common name.
        #[arg(long, group = "attestation")]
        x509_ca: Option<PathBuf>,
        /// An enrollment group (symmetric key): each device's key is derived from the group's.
        #[arg(long, requires = "symmetric_key")]
        group: bool,
    },
    /// List every enrollment (JSON).
    List {
        /// State directory.
        #[arg(long)]
        state: PathBuf,
    },
    /// Remove an enrollment or enrollment group.
    Remove {
        /// State directory.
        #[arg(long)]
        state: PathBuf,
        /// Registration id or group id.
        id: String,
    },
}

/// The enrollment the `add` flags describe.
fn new_enrollment(
    tpm_ek: Option<PathBuf>,
    symmetric_key: Option<String>,
    x509_cert: Option<PathBuf>,
    x509_ca: Option<PathBuf>,
    group: bool,
) -> anyhow::Result<control::NewEnrollment> {
    if let Some(path) = tpm_ek {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the endorsement key {}", path.display()))?;
        return Ok(control::NewEnrollment::Tpm {
            endorsement_key: text.trim().to_owned(),
        });
    }
    if let Some(key) = symmetric_key {
        return Ok(control::NewEnrollment::SymmetricKey {
            key: (!key.is_empty()).then_some(key),
            group,
        });
    }
    if let Some(path) = x509_cert {
        let pem = std::fs::read(&path)
            .with_context(|| format!("cannot read the certificate {}", path.display()))?;
        let thumbprint = control::certificate_thumbprint(&pem)
            .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
        return Ok(control::NewEnrollment::X509 { thumbprint });
    }
    if let Some(path) = x509_ca {
        let ca_pem = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
        return Ok(control::NewEnrollment::X509Ca { ca_pem });
    }
    anyhow::bail!("say how the device proves itself: --tpm-ek FILE, --symmetric-key [KEY], --x509-cert FILE or --x509-ca FILE")
}

/// Runs `testudo hub enrollment ...`.
fn enrollment(command: EnrollmentCommand) -> anyhow::Result<ExitCode> {
    match command {
        EnrollmentCommand::Add {
            state,
            id,
            tpm_ek,
            symmetric_key,
            x509_cert,
            x509_ca,
            group,
        } => {
            let enrollment = new_enrollment(tpm_ek, symmetric_key, x509_cert, x509_ca, group)?;
            let added = control::add_enrollment(&state, &id, &enrollment)
                .with_context(|| format!("cannot enroll {id}"))?;
            println!("{}", serde_json::to_string_pretty(&added)?);
        }
        EnrollmentCommand::List { state } => {
            let list = control::enrollments(&state)
                .with_context(|| format!("cannot read the enrollments in {}", state.display()))?;
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        EnrollmentCommand::Remove { state, id } => {
            let removed = control::remove_enrollment(&state, &id)
                .with_context(|| format!("cannot remove the enrollment {id}"))?;
            if !removed {
                eprintln!("no enrollment {id}");
                return Ok(ExitCode::FAILURE);
            }
            eprintln!("removed enrollment {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `testudo hub ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        HubCommand::Serve {
            state,
            host,
            mqtt_port,
            https_port,
            id_scope,
            ca,
        } => {
            let hub = Emulator::start(EmulatorConfig {
                state_dir: state.clone(),
                host,
                mqtt_port,
                https_port,
                id_scope,
                ca_dir: ca,
            })
            .with_context(|| format!("cannot start the hub emulator on {}", state.display()))?;
            println!(
                "hub emulator (a local fake of Azure IoT Hub) serving {}",
                hub.host
            );
            println!("mqtt: {}", hub.mqtt_addr);
            println!("https: {}", hub.https_addr);
            println!("ca: {}", state.join("ca.pem").display());
            println!("dps id scope: {}", hub.id_scope());
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
        HubCommand::Enrollment { command } => enrollment(command),
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
