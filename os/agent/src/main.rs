//! `testudo-agent`: runs the cloud agent for one device with the echo example (reports device
//! info, echoes desired properties), or imports the device key into the TPM.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use testudo_agent::agent::error_chain;
use testudo_agent::options::RunOptions;
use testudo_agent::tpm;

/// testudo cloud agent.
#[derive(Debug, Parser)]
#[command(name = "testudo-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect and run the echo example until stopped.
    Run(RunArgs),
    /// Import a base64 device key (read from a file) into the TPM as a persistent HMAC key.
    ImportKey {
        /// TCTI, e.g. `swtpm:host=127.0.0.1,port=2321` or `device:/dev/tpmrm0`.
        #[arg(long)]
        tpm: String,
        /// Persistent handle.
        #[arg(long, default_value = "0x81000100", value_parser = parse_handle)]
        key_handle: u32,
        /// File holding the base64 key.
        #[arg(long)]
        key_file: PathBuf,
    },
}

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Device connection string.
    #[arg(long)]
    connection_string: Option<String>,
    /// Hub host name (with --device-id, when the key is in the TPM or X.509 is used).
    #[arg(long)]
    hub: Option<String>,
    /// Device id.
    #[arg(long)]
    device_id: Option<String>,
    /// PEM CA certificate of the hub.
    #[arg(long)]
    ca: PathBuf,
    /// TPM TCTI: sign SAS tokens in the TPM.
    #[arg(long)]
    tpm: Option<String>,
    /// Persistent handle of the key in the TPM.
    #[arg(long, default_value = "0x81000100", value_parser = parse_handle)]
    key_handle: u32,
    /// PEM client certificate (X.509 authentication).
    #[arg(long)]
    client_cert: Option<PathBuf>,
    /// PEM client private key (omit with --tpm: the key is the TPM's ECDSA key at --key-handle).
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// MQTT port (default 8883).
    #[arg(long)]
    mqtt_port: Option<u16>,
    /// SAS token lifetime in seconds.
    #[arg(long)]
    token_ttl: Option<u64>,
}

fn parse_handle(text: &str) -> Result<u32, String> {
    let digits = text.trim_start_matches("0x");
    u32::from_str_radix(digits, 16).map_err(|e| format!("not a hex handle: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::ImportKey {
            tpm: tcti,
            key_handle,
            key_file,
        } => {
            let result = std::fs::read_to_string(&key_file)
                .map_err(|e| format!("reading {}: {e}", key_file.display()))
                .and_then(|text| {
                    tpm::import_base64_hmac_key(&tcti, key_handle, &text)
                        .map_err(|e| error_chain(&e))
                });
            match result {
                Ok(()) => {
                    println!("imported key into {tcti} at {key_handle:#010x}");
                    ExitCode::SUCCESS
                }
                Err(message) => {
                    eprintln!("error: {message}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            let options = RunOptions {
                connection_string: args.connection_string,
                hub: args.hub,
                device_id: args.device_id,
                ca: args.ca,
                tpm: args.tpm,
                key_handle: args.key_handle,
                client_cert: args.client_cert,
                client_key: args.client_key,
                mqtt_port: args.mqtt_port,
                connect_host: None,
                token_ttl_secs: args.token_ttl,
            };
            let config = match options.into_config() {
                Ok(config) => config,
                Err(err) => {
                    eprintln!("error: {}", error_chain(&err));
                    return ExitCode::FAILURE;
                }
            };
            if let Err(err) =
                testudo_agent::echo::run_until_interrupted(config, |line| eprintln!("{line}"))
            {
                eprintln!("error: starting the async runtime: {err}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
    }
}
