//! `testudo agent`: run the cloud agent (echo example) for one device, or import its key into
//! the TPM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use testudo_agent::options::{parse_handle, ImportKeyOptions, RunOptions};

/// Arguments of `testudo agent`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: AgentCommand,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Create an ECDSA P-256 key inside the TPM and a self-signed device certificate for it;
    /// writes the certificate and prints its SHA-256 thumbprint (register that with the hub).
    CreateX509Key {
        /// TCTI, e.g. `swtpm:host=127.0.0.1,port=2321`.
        #[cfg_attr(
            feature = "images",
            arg(
                long,
                required_unless_present = "vm_state",
                conflicts_with = "vm_state"
            )
        )]
        #[cfg_attr(not(feature = "images"), arg(long, required = true))]
        tpm: Option<String>,
        /// Or the TPM of the VM whose state directory this is (as `testudo vm run --state`
        /// keeps it), before its first boot: what a factory does for an image.
        #[cfg(feature = "images")]
        #[arg(long)]
        vm_state: Option<PathBuf>,
        /// Persistent handle (hex).
        #[arg(long, default_value = testudo_agent::options::X509_KEY_HANDLE, value_parser = parse_handle)]
        key_handle: u32,
        /// Certificate common name (the device id).
        #[arg(long)]
        device_id: String,
        /// Where to write the PEM certificate.
        #[arg(long)]
        cert_out: PathBuf,
    },
    /// Connect to the hub, report device info and echo desired properties until Ctrl-C.
    Run(RunOptions),
    /// Import a base64 device key (from a file) into the TPM as a persistent HMAC key.
    ImportKey(ImportKeyOptions),
}

/// Runs `testudo agent ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        AgentCommand::CreateX509Key {
            tpm,
            #[cfg(feature = "images")]
            vm_state,
            key_handle,
            device_id,
            cert_out,
        } => {
            // The VM's TPM served on the host for as long as this lives.
            #[cfg(feature = "images")]
            let vm_tpm = match &vm_state {
                Some(state) => Some(
                    testudo_images::vm_tpm::open_vm_tpm(state)
                        .with_context(|| format!("opening the TPM in {}", state.display()))?,
                ),
                None => None,
            };
            #[cfg(feature = "images")]
            let tpm = tpm.or_else(|| vm_tpm.as_ref().map(|opened| opened.tcti.clone()));
            let tpm = tpm.context("say which TPM: --tpm TCTI or --vm-state DIR")?;
            testudo_agent::tpm_x509::create_ecdsa_key(&tpm, key_handle)
                .context("creating the device key in the TPM")?;
            let key = testudo_agent::tpm_x509::TpmEcdsaKey::open(&tpm, key_handle)
                .context("opening the device key")?;
            let cert = key
                .device_certificate(&device_id)
                .context("creating the device certificate")?;
            std::fs::write(&cert_out, &cert.pem)
                .with_context(|| format!("writing {}", cert_out.display()))?;
            println!("{}", cert.sha256_thumbprint);
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::ImportKey(options) => {
            options
                .import()
                .context("importing the device key into the TPM")?;
            println!("{}", options.imported_message());
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Run(options) => {
            let config = options.into_config().context("configuring the agent")?;
            testudo_agent::echo::run_until_interrupted(config, |line| eprintln!("{line}"))
                .context("running the agent")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
