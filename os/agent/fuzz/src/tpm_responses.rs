//! Everything the TPM answers through the `tpm` route is untrusted: the response parser, the
//! parsers of each command's parameters (driven through whole command sequences: making sure
//! of the EK and SRK, importing DPS's key, with every response being the fuzz input), the
//! `TPM2_Sign` signature parser (the device certificate's key) and the parser of DPS's
//! `authenticationKey` must not panic on any bytes.

use testudo_agent::tpm_commands::{
    ensure_keys, import_authentication_key, parse_authentication_key,
    parse_ecdsa_signature_response, parse_hmac_response, parse_response, TpmTransport,
    TransportError,
};

/// Answers every command with the same bytes.
struct Answers<'a>(&'a [u8]);

impl TpmTransport for Answers<'_> {
    fn transact(&mut self, _command: &[u8]) -> Result<Vec<u8>, TransportError> {
        Ok(self.0.to_vec())
    }
}

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    for handles in 0..=2 {
        if let Ok(response) = parse_response("fuzz", data, handles) {
            assert_eq!(response.handles.len(), handles);
            assert_eq!(&data[6..10], &[0, 0, 0, 0]);
        }
    }
    let _ = parse_hmac_response(data);
    if let Ok((r, s)) = parse_ecdsa_signature_response(data) {
        assert!((1..=32).contains(&r.len()) && (1..=32).contains(&s.len()));
    }
    if let Ok(key) = parse_authentication_key(data) {
        assert!(!key.public.is_empty());
    }
    let _ = ensure_keys(&mut Answers(data));
    let _ = import_authentication_key(&mut Answers(data), 0x8100_0100, data);
}
