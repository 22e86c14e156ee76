//! `testudo keys init DIR`: development keys (clearly marked, never for production).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// Create DIR/ca.pem, DIR/signing.pem + signing.key (ECDSA P-256) and
    /// DIR/deploy.ed25519 + deploy.ed25519.pub (Ed25519, PEM) for development.
    Init {
        /// Directory to create the keys in (existing key files are never overwritten).
        dir: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        KeysCommand::Init { dir } => {
            let keys = testudo_updater::keys::init_dev_keys(&dir)
                .with_context(|| format!("creating development keys in {}", dir.display()))?;
            println!("development keys (NOT for production) written:");
            for path in [
                &keys.ca_cert,
                &keys.signing_cert,
                &keys.signing_key,
                &keys.deploy_key,
                &keys.deploy_pub,
            ] {
                println!("  {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
