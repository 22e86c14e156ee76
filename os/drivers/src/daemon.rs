//! What every daemon's `main` does: take the control socket, serve until init closes it.

use std::process::ExitCode;

use testudo_scheme::{provider_control, SchemeProvider, Server};

use crate::DriverError;

/// Exit at once (status 0) on SIGTERM. A daemon holds no buffered state: every reply has
/// been sent and every write reached the kernel before the next request is read.
pub use testudo_scheme::lifecycle::exit_on_sigterm;

/// Serves `provider` on the control socket from init until init closes it.
pub fn serve<P: SchemeProvider>(driver: &'static str, provider: P) -> Result<(), DriverError> {
    exit_on_sigterm();
    let control = provider_control()
        .map_err(|source| DriverError::Serve { driver, source })?
        .ok_or(DriverError::NoControl { driver })?;
    Server::new(provider)
        .with_control(control)
        .run()
        .map_err(|source| DriverError::Serve { driver, source })
}

/// `main` body: serve and map the outcome to an exit code, printing one error line.
pub fn main<P: SchemeProvider>(driver: &'static str, provider: Result<P, DriverError>) -> ExitCode {
    match provider.and_then(|provider| serve(driver, provider)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", testudo_error_chain::error_chain(&error));
            ExitCode::FAILURE
        }
    }
}
