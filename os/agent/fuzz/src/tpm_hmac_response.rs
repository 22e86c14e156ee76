//! TPM responses arrive through the `tpm` route: parsing a TPM2_HMAC response must not panic
//! on any bytes, and accepts only a well-formed success response.

use testudo_agent::tpm_route::parse_hmac_response;

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    if parse_hmac_response(data).is_ok() {
        assert!(data.len() >= 48);
        assert_eq!(&data[6..10], &[0, 0, 0, 0]);
    }
}
