//! The TPM reached through the component's `tpm` route (the `tpm` driver forwards raw TPM 2.0
//! commands: `write` one command, `read` its response), and SAS signing with the device key
//! held there.
//!
//! tss-esapi only talks through its own TCTIs (device node, swtpm/mssim TCP, tabrmd), none of
//! which can carry commands over a scheme handle, so the commands are marshalled by hand in
//! [`crate::tpm_commands`]; [`TpmRoute`] is their transport. Signing is `TPM2_HMAC` with the
//! persistent key (put there by [`crate::tpm::import_hmac_key`] at the factory, or imported
//! from DPS by TPM attestation), authorised with a password session (`TPM_RS_PW`, empty
//! password). The key never leaves the TPM.

use std::sync::{Arc, Mutex, PoisonError};

use testudo_scheme::Handle;

use crate::error::{AgentError, Result};
use crate::sas::SasSigner;
use crate::tpm_commands::{self, TpmTransport, TransportError, MAX_MESSAGE};
use crate::tpm_x509::{der_ecdsa_signature, EcdsaP256Key};

pub use crate::tpm_commands::{hmac_command, parse_hmac_response, MAX_HMAC_INPUT};

/// The `tpm` route. One command and its response at a time: the lock spans the `write` and
/// the `read`, so callers sharing the route never read each other's responses.
#[derive(Debug)]
pub struct TpmRoute {
    handle: Mutex<Handle>,
}

impl TpmRoute {
    /// The route on `handle` (the component's `tpm` handle).
    pub fn new(handle: Handle) -> Self {
        Self {
            handle: Mutex::new(handle),
        }
    }
}

impl TpmTransport for &TpmRoute {
    fn transact(&mut self, command: &[u8]) -> std::result::Result<Vec<u8>, TransportError> {
        let handle = self.handle.lock().unwrap_or_else(PoisonError::into_inner);
        handle.write(command)?;
        // The driver holds the whole response (at most MAX_MESSAGE): one read takes it; a
        // longer one is cut and then refused as a response whose size lies.
        let mut response = vec![0u8; MAX_MESSAGE];
        let n = handle.read(&mut response)?;
        response.truncate(n);
        Ok(response)
    }
}

/// Signs SAS tokens with `TPM2_HMAC` through the `tpm` route.
#[derive(Debug)]
pub struct TpmRouteSigner {
    tpm: Arc<TpmRoute>,
    key_handle: u32,
}

impl TpmRouteSigner {
    /// A signer using the key persisted at `key_handle`, through `tpm`.
    pub fn new(tpm: Arc<TpmRoute>, key_handle: u32) -> Self {
        Self { tpm, key_handle }
    }
}

impl SasSigner for TpmRouteSigner {
    fn hmac_sha256(&self, message: &[u8]) -> Result<[u8; 32]> {
        tpm_commands::hmac(&mut &*self.tpm, self.key_handle, message).map_err(|source| {
            AgentError::TpmRoute {
                step: "signing with the device key",
                handle: self.key_handle,
                source,
            }
        })
    }
}

/// The device's X.509 key, an ECDSA P-256 key persisted in the TPM (at
/// [`crate::tpm::X509_KEY_HANDLE`] by `testudo agent create-x509-key` at the factory), signing
/// TLS handshakes through the `tpm` route with `TPM2_Sign`.
#[derive(Debug)]
pub struct TpmRouteEcdsaKey {
    tpm: Arc<TpmRoute>,
    key_handle: u32,
}

impl TpmRouteEcdsaKey {
    /// The key persisted at `key_handle`, through `tpm`.
    pub fn new(tpm: Arc<TpmRoute>, key_handle: u32) -> Self {
        Self { tpm, key_handle }
    }
}

impl EcdsaP256Key for TpmRouteEcdsaKey {
    fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>> {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(message).into();
        let (r, s) = tpm_commands::sign_ecdsa(&mut &*self.tpm, self.key_handle, &digest).map_err(
            |source| AgentError::TpmRoute {
                step: "signing with the device certificate's key",
                handle: self.key_handle,
                source,
            },
        )?;
        Ok(der_ecdsa_signature(&r, &s))
    }
}
