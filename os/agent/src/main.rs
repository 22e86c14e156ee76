//! `testudo-agent`: runs the cloud agent for one device with the echo example (reports device
//! info, echoes desired properties), or imports the device key into the TPM.
//!
//! Started by `testudo-init` (no arguments, a provider control socket in `TESTUDO_SCHEME_FD`)
//! or as `testudo-agent component`, it is the gateway's agent component: it serves
//! `telemetry` and `identity` and talks to the hub through its routes
//! (see [`testudo_agent::component`]).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use testudo_agent::agent::error_chain;
use testudo_agent::options::{ImportKeyOptions, RunOptions};

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
    Run(RunOptions),
    /// Import a base64 device key (read from a file) into the TPM as a persistent HMAC key.
    ImportKey(ImportKeyOptions),
    /// Run as a testudo component (what testudo-init starts): serve `telemetry` and
    /// `identity`, reach the hub through the `net` route.
    Component,
}

fn run_component() -> ExitCode {
    match testudo_agent::component::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    // testudo-init starts components with the plan's arguments (none for the agent).
    if std::env::args_os().len() == 1 && std::env::var_os(testudo_scheme::CONTROL_ENV).is_some() {
        return run_component();
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Component => run_component(),
        Command::ImportKey(options) => match options.import() {
            Ok(()) => {
                println!("{}", options.imported_message());
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {}", error_chain(&err));
                ExitCode::FAILURE
            }
        },
        Command::Run(options) => {
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
