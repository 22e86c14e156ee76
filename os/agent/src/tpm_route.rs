//! SAS signing with the device key in the TPM, reached through the component's `tpm` route
//! (the `tpm` driver forwards raw TPM 2.0 commands: `write` one command, `read` its response).
//!
//! tss-esapi only talks through its own TCTIs (device node, swtpm/mssim TCP, tabrmd), none of
//! which can carry commands over a scheme handle, so the one command the agent needs at run
//! time is marshalled here by hand: `TPM2_HMAC` (TPM 2.0 Part 3, 15.5) with the persistent key
//! created by [`crate::tpm::import_hmac_key`] (`userWithAuth`, empty auth value), authorised
//! with a password session (`TPM_RS_PW`, empty password). The key never leaves the TPM.

use testudo_scheme::Handle;

use crate::error::{AgentError, Result};
use crate::sas::SasSigner;

const TPM_ST_SESSIONS: u16 = 0x8002;
const TPM_CC_HMAC: u32 = 0x0000_0155;
const TPM_RS_PW: u32 = 0x4000_0009;
const TPM_ALG_SHA256: u16 = 0x000B;
/// Largest `TPM2B_MAX_BUFFER` (`MAX_DIGEST_BUFFER` on every TPM in practice).
pub const MAX_HMAC_INPUT: usize = 1024;
const MAX_RESPONSE: usize = 4096;

/// The `TPM2_HMAC` command for `message` with the key at `key_handle`.
pub fn hmac_command(key_handle: u32, message: &[u8]) -> Option<Vec<u8>> {
    if message.len() > MAX_HMAC_INPUT {
        return None;
    }
    let mut body = Vec::with_capacity(32 + message.len());
    body.extend_from_slice(&TPM_CC_HMAC.to_be_bytes());
    body.extend_from_slice(&key_handle.to_be_bytes());
    // Authorization area: one password session with an empty password.
    body.extend_from_slice(&9u32.to_be_bytes());
    body.extend_from_slice(&TPM_RS_PW.to_be_bytes());
    body.extend_from_slice(&0u16.to_be_bytes()); // nonceCaller
    body.push(0); // sessionAttributes
    body.extend_from_slice(&0u16.to_be_bytes()); // hmac (the password)
    body.extend_from_slice(&(message.len() as u16).to_be_bytes());
    body.extend_from_slice(message);
    body.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    let size = (body.len() + 6) as u32;
    let mut command = Vec::with_capacity(body.len() + 6);
    command.extend_from_slice(&TPM_ST_SESSIONS.to_be_bytes());
    command.extend_from_slice(&size.to_be_bytes());
    command.extend_from_slice(&body);
    Some(command)
}

fn be_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Parses a `TPM2_HMAC` response: the 32-byte HMAC, or what is wrong with the response.
pub fn parse_hmac_response(response: &[u8]) -> std::result::Result<[u8; 32], String> {
    let size = be_u32(response, 2).ok_or("a response shorter than its header")?;
    if size as usize != response.len() {
        return Err(format!(
            "a response of {} bytes declaring {size}",
            response.len()
        ));
    }
    let code = be_u32(response, 6).ok_or("a response shorter than its header")?;
    if code != 0 {
        return Err(format!("response code {code:#x}"));
    }
    // tag, size, code, parameterSize, then TPM2B_DIGEST.
    let digest_size = be_u16(response, 14).ok_or("a truncated response")?;
    if digest_size != 32 {
        return Err(format!("a {digest_size}-byte HMAC (SHA-256 has 32)"));
    }
    response
        .get(16..48)
        .and_then(|digest| <[u8; 32]>::try_from(digest).ok())
        .ok_or_else(|| "a truncated HMAC".to_owned())
}

/// Signs SAS tokens with `TPM2_HMAC` through the `tpm` route.
#[derive(Debug)]
pub struct TpmRouteSigner {
    tpm: Handle,
    key_handle: u32,
}

impl TpmRouteSigner {
    /// A signer using the key persisted at `key_handle`, through `tpm`.
    pub fn new(tpm: Handle, key_handle: u32) -> Self {
        Self { tpm, key_handle }
    }
}

impl SasSigner for TpmRouteSigner {
    fn hmac_sha256(&self, message: &[u8]) -> Result<[u8; 32]> {
        let command = hmac_command(self.key_handle, message).ok_or(AgentError::TpmKey {
            handle: self.key_handle,
            reason: format!(
                "a {}-byte message is longer than one TPM2_HMAC takes ({MAX_HMAC_INPUT})",
                message.len()
            ),
        })?;
        let transport = |source| AgentError::TpmRoute {
            operation: "TPM2_HMAC",
            source,
        };
        self.tpm.write(&command).map_err(transport)?;
        let mut response = vec![0u8; MAX_RESPONSE];
        let n = self.tpm.read(&mut response).map_err(transport)?;
        response.truncate(n);
        parse_hmac_response(&response).map_err(|detail| AgentError::TpmRouteAnswer {
            operation: "TPM2_HMAC",
            key_handle: self.key_handle,
            detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_is_marshalled_as_part_3_says() {
        let command = hmac_command(0x8100_0100, b"abc").expect("fits");
        let expected: Vec<u8> = [
            &[0x80, 0x02][..],               // TPM_ST_SESSIONS
            &[0, 0, 0, 34],                  // commandSize
            &[0, 0, 0x01, 0x55],             // TPM_CC_HMAC
            &[0x81, 0, 0x01, 0],             // key handle
            &[0, 0, 0, 9],                   // authorizationSize
            &[0x40, 0, 0, 9, 0, 0, 0, 0, 0], // TPM_RS_PW, empty nonce, attrs, empty password
            &[0, 3, b'a', b'b', b'c'],       // buffer
            &[0, 0x0b],                      // TPM_ALG_SHA256
        ]
        .concat();
        assert_eq!(command, expected);
        assert!(hmac_command(1, &[0; MAX_HMAC_INPUT + 1]).is_none());
    }

    #[test]
    fn responses_are_checked_not_trusted() {
        let mut good = vec![0x80, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 34, 0, 32];
        good.extend_from_slice(&[7u8; 32]);
        good.extend_from_slice(&[0, 0, 1, 0, 0]);
        let size = good.len() as u32;
        good[2..6].copy_from_slice(&size.to_be_bytes());
        assert_eq!(parse_hmac_response(&good), Ok([7u8; 32]));

        let error = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x8b];
        assert_eq!(
            parse_hmac_response(&error),
            Err("response code 0x18b".to_owned())
        );
        for cut in [0, 5, 10, 20, good.len() - 1] {
            assert!(parse_hmac_response(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut lying = good.clone();
        lying[15] = 200;
        assert!(parse_hmac_response(&lying).is_err());
    }
}
