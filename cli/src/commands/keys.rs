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
    /// Create DIR/ca.pem, DIR/signing.pem + signing.key (ECDSA P-256),
    /// DIR/deploy.ed25519 + deploy.ed25519.pub (Ed25519, PEM), and the OS update manifest keys
    /// DIR/update-root.rsa, update-signing.rsa (RSA, PEM) + update-roots.jwks for development.
    Init {
        /// Directory to create the keys in (existing key files are never overwritten; a
        /// directory holding the other keys gets the OS update keys added).
        dir: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        KeysCommand::Init { dir } => {
            // A directory made before the OS update keys existed gets just those added.
            let existing = testudo_updater::keys::DevKeys::paths(&dir);
            let keys = if existing.deploy_key.is_file() && existing.ca_cert.is_file() {
                existing
            } else {
                testudo_updater::keys::init_dev_keys(&dir)
                    .with_context(|| format!("creating development keys in {}", dir.display()))?
            };
            let update = testudo_os_update::keys::init_dev_update_keys(&dir)
                .with_context(|| format!("creating OS update keys in {}", dir.display()))?;
            println!(
                "development keys (NOT for production) in {}:",
                dir.display()
            );
            for path in [
                &keys.ca_cert,
                &keys.signing_cert,
                &keys.signing_key,
                &keys.deploy_key,
                &keys.deploy_pub,
            ]
            .into_iter()
            .chain(update.paths())
            {
                println!("  {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
