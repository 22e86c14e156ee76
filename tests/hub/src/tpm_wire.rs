//! The TPM 2.0 side of DPS TPM attestation, in pure Rust: parsing the EK and SRK a device
//! sends (`TPM2B_PUBLIC`, RSA 2048, SHA-256 name algorithm), and building the
//! `authenticationKey` blob DPS answers with.
//!
//! That blob is what Azure's device clients (`aziot-tpmd`) unmarshal, in this order:
//! 1. `TPM2B_ID_OBJECT` + 2. `TPM2B_ENCRYPTED_SECRET`: a credential made for the EK with
//!    TPM2_MakeCredential semantics (TPM 2.0 part 1, "Credential Protection"): a random seed
//!    encrypted to the EK with RSA-OAEP(SHA-256, label `IDENTITY\0`); the credential (a
//!    16-byte AES key, the *inner wrapping key*) encrypted with AES-CFB under
//!    `KDFa(seed, "STORAGE", name of the SRK)` and integrity-protected by an HMAC under
//!    `KDFa(seed, "INTEGRITY")`. Only the TPM holding that EK can recover it, and only when
//!    the object being activated is the SRK the device named.
//! 3. `TPM2B_PRIVATE` + 4. `TPM2B_ENCRYPTED_SECRET`: the device's HMAC key as a duplication
//!    blob for TPM2_Import under the SRK (part 1, "Duplication"): the `TPMT_SENSITIVE` with an
//!    inner integrity digest, AES-CFB-encrypted with the inner wrapping key, then the outer
//!    wrap (seed encrypted to the SRK with label `DUPLICATE\0`, AES-CFB + HMAC as above, bound
//!    to the key's name).
//! 5. `TPM2B_PUBLIC` of the HMAC key (keyed hash, HMAC-SHA256, `userWithAuth | sign | noDA`,
//!    empty auth policy: the TPM can sign with it but will neither unseal nor duplicate it).
//!
//! Untrusted input (the device's public areas) is parsed defensively: every length is checked
//! and anything but the exact structure is refused with a reason.

use aes::cipher::{AsyncStreamCipher, KeyIvInit};
use hmac::{Hmac, Mac};
use rsa::{BigUint, Oaep, RsaPublicKey};
use sha2::{Digest, Sha256};
use testudo_tpm_wire::{name_of, ALG_HMAC, ALG_KEYEDHASH, ALG_SHA256};

pub use testudo_tpm_wire::{parse_rsa_storage_key, RsaStorageKey};

/// `TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA | TPMA_OBJECT_SIGN_ENCRYPT`.
const HMAC_KEY_ATTRIBUTES: u32 = (1 << 6) | (1 << 10) | (1 << 18);
/// SHA-256 digest size.
const DIGEST_SIZE: usize = 32;
/// Size of the inner wrapping key (AES-128, what the device passes to TPM2_Import).
pub const INNER_KEY_SIZE: usize = 16;

fn sized(bytes: &[u8]) -> Vec<u8> {
    // Every buffer built here is far below 64 KiB (RSA 2048 secrets, 32-byte digests).
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// KDFa (TPM 2.0 part 1, 11.4.10.2) with HMAC-SHA256: counter mode, `label` NUL-terminated.
pub fn kdfa(key: &[u8], label: &str, context_u: &[u8], context_v: &[u8], bits: u32) -> Vec<u8> {
    let bytes = (bits as usize).div_ceil(8);
    let mut out = Vec::with_capacity(bytes + DIGEST_SIZE);
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut mac = hmac_sha256(key);
        mac.update(&counter.to_be_bytes());
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend_from_slice(&mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// AES-CFB encryption with a zero IV, as the TPM uses for credential and duplication blobs.
fn aes_cfb_encrypt(key: &[u8], data: &mut [u8]) -> Result<(), String> {
    let iv = [0u8; 16];
    match key.len() {
        16 => cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(key, &iv)
            .map_err(|e| e.to_string())?
            .encrypt(data),
        32 => cfb_mode::Encryptor::<aes::Aes256>::new_from_slices(key, &iv)
            .map_err(|e| e.to_string())?
            .encrypt(data),
        other => return Err(format!("no AES variant for a {other}-byte key")),
    }
    Ok(())
}

/// RSA-OAEP(SHA-256) encryption of `seed` to `key` with a TPM label (`IDENTITY`, `DUPLICATE`).
fn encrypt_seed(key: &RsaStorageKey, label: &str, seed: &[u8]) -> Result<Vec<u8>, String> {
    let exponent = if key.exponent == 0 {
        65537
    } else {
        key.exponent
    };
    let public = RsaPublicKey::new(
        BigUint::from_bytes_be(&key.modulus),
        BigUint::from(exponent),
    )
    .map_err(|e| format!("unusable RSA key: {e}"))?;
    public
        .encrypt(
            &mut rand_core::OsRng,
            Oaep::new_with_label::<Sha256, _>(format!("{label}\0")),
            seed,
        )
        .map_err(|e| format!("RSA-OAEP encryption failed: {e}"))
}

/// Symmetric encryption + outer HMAC shared by MakeCredential and the duplication outer wrap:
/// returns `TPM2B_DIGEST(hmac) || AES-CFB(plaintext)`.
fn protect(
    seed: &[u8],
    symmetric_bits: u16,
    name: &[u8],
    mut plaintext: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let symmetric_key = kdfa(seed, "STORAGE", name, &[], u32::from(symmetric_bits));
    aes_cfb_encrypt(&symmetric_key, &mut plaintext)?;
    let hmac_key = kdfa(seed, "INTEGRITY", &[], &[], (DIGEST_SIZE * 8) as u32);
    let mut mac = hmac_sha256(&hmac_key);
    mac.update(&plaintext);
    mac.update(name);
    let mut out = sized(&mac.finalize().into_bytes());
    out.extend_from_slice(&plaintext);
    Ok(out)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::fill(&mut bytes[..]);
    bytes
}

/// TPM2_MakeCredential: protects `credential` (at most 32 bytes) for the TPM holding `ek`,
/// releasable only by ActivateCredential on the object named `object_name`. Returns the
/// marshalled `TPM2B_ID_OBJECT` and `TPM2B_ENCRYPTED_SECRET`.
pub fn make_credential(
    ek: &RsaStorageKey,
    credential: &[u8],
    object_name: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), String> {
    if credential.len() > DIGEST_SIZE {
        return Err("credential longer than a digest".into());
    }
    let seed = random_bytes::<DIGEST_SIZE>();
    let secret = encrypt_seed(ek, "IDENTITY", &seed)?;
    let id_object = protect(&seed, ek.symmetric_bits, object_name, sized(credential))?;
    Ok((sized(&id_object), sized(&secret)))
}

/// An HMAC-SHA256 key prepared for TPM2_Import: its `TPM2B_PUBLIC`, and the duplication blob
/// (`TPM2B_PRIVATE`) with its outer seed (`TPM2B_ENCRYPTED_SECRET`).
#[derive(Debug, Clone)]
pub struct DuplicatedKey {
    /// `TPM2B_PUBLIC` of the key.
    pub public: Vec<u8>,
    /// `TPM2B_PRIVATE`: inner- and outer-wrapped sensitive area.
    pub private: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET`: the outer seed encrypted to the parent.
    pub seed: Vec<u8>,
}

/// Wraps the HMAC key `key` for import under `parent` (the SRK), inner-wrapped with the
/// AES-128-CFB key `inner_key`.
pub fn duplicate_hmac_key(
    parent: &RsaStorageKey,
    inner_key: &[u8; INNER_KEY_SIZE],
    key: &[u8],
) -> Result<DuplicatedKey, String> {
    if key.is_empty() || key.len() > 128 {
        return Err(format!("HMAC key of {} bytes (1..=128 allowed)", key.len()));
    }
    let obfuscation = random_bytes::<DIGEST_SIZE>();
    // TPMT_PUBLIC: keyed hash, SHA-256 name, attributes, empty policy, HMAC-SHA256 scheme,
    // unique = H(obfuscation || key).
    let mut public = Vec::new();
    public.extend_from_slice(&ALG_KEYEDHASH.to_be_bytes());
    public.extend_from_slice(&ALG_SHA256.to_be_bytes());
    public.extend_from_slice(&HMAC_KEY_ATTRIBUTES.to_be_bytes());
    public.extend_from_slice(&sized(&[]));
    public.extend_from_slice(&ALG_HMAC.to_be_bytes());
    public.extend_from_slice(&ALG_SHA256.to_be_bytes());
    let mut unique = Sha256::new();
    unique.update(obfuscation);
    unique.update(key);
    public.extend_from_slice(&sized(&unique.finalize()));
    let name = name_of(&public);

    // TPMT_SENSITIVE: type, empty authValue, seedValue (obfuscation), the key bits.
    let mut sensitive = ALG_KEYEDHASH.to_be_bytes().to_vec();
    sensitive.extend_from_slice(&sized(&[]));
    sensitive.extend_from_slice(&sized(&obfuscation));
    sensitive.extend_from_slice(&sized(key));
    let sensitive = sized(&sensitive);

    // Inner wrap: TPM2B_DIGEST(H(sized sensitive || name)) || sized sensitive, AES-CFB.
    let mut integrity = Sha256::new();
    integrity.update(&sensitive);
    integrity.update(&name);
    let mut inner = sized(&integrity.finalize());
    inner.extend_from_slice(&sensitive);
    aes_cfb_encrypt(inner_key, &mut inner)?;

    // Outer wrap under the parent.
    let seed = random_bytes::<DIGEST_SIZE>();
    let encrypted_seed = encrypt_seed(parent, "DUPLICATE", &seed)?;
    let private = protect(&seed, parent.symmetric_bits, &name, inner)?;
    Ok(DuplicatedKey {
        public: sized(&public),
        private: sized(&private),
        seed: sized(&encrypted_seed),
    })
}

/// Builds the `authenticationKey` blob DPS returns for TPM attestation: the inner wrapping
/// key as a credential for `ek` bound to `srk`, then `key` duplicated under `srk` (see the
/// module documentation for the layout).
pub fn authentication_key_blob(
    ek: &RsaStorageKey,
    srk: &RsaStorageKey,
    key: &[u8],
) -> Result<Vec<u8>, String> {
    let inner_key = random_bytes::<INNER_KEY_SIZE>();
    let (id_object, secret) = make_credential(ek, &inner_key, &srk.name)?;
    let duplicated = duplicate_hmac_key(srk, &inner_key, key)?;
    let mut blob = id_object;
    blob.extend_from_slice(&secret);
    blob.extend_from_slice(&duplicated.private);
    blob.extend_from_slice(&duplicated.seed);
    blob.extend_from_slice(&duplicated.public);
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use testudo_tpm_wire::{ALG_AES, ALG_CFB, ALG_NULL, ALG_RSA, ATTR_DECRYPT, ATTR_RESTRICTED};

    fn rsa_public(attributes: u32) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(&ALG_RSA.to_be_bytes());
        t.extend_from_slice(&ALG_SHA256.to_be_bytes());
        t.extend_from_slice(&attributes.to_be_bytes());
        t.extend_from_slice(&sized(&[0xAA; 32]));
        t.extend_from_slice(&ALG_AES.to_be_bytes());
        t.extend_from_slice(&128u16.to_be_bytes());
        t.extend_from_slice(&ALG_CFB.to_be_bytes());
        t.extend_from_slice(&ALG_NULL.to_be_bytes());
        t.extend_from_slice(&2048u16.to_be_bytes());
        t.extend_from_slice(&0u32.to_be_bytes());
        let mut modulus = vec![0xC5; 256];
        modulus[255] = 0x01;
        t.extend_from_slice(&sized(&modulus));
        sized(&t)
    }

    #[test]
    fn parses_an_rsa_storage_key_and_names_it() {
        let bytes = rsa_public(ATTR_RESTRICTED | ATTR_DECRYPT);
        let key = parse_rsa_storage_key(&bytes).unwrap();
        assert_eq!(key.modulus.len(), 256);
        assert_eq!(key.symmetric_bits, 128);
        assert_eq!(&key.name[..2], &[0x00, 0x0B]);
        assert_eq!(&key.name[2..], Sha256::digest(&bytes[2..]).as_slice());
    }

    #[test]
    fn refuses_malformed_public_areas() {
        let good = rsa_public(ATTR_RESTRICTED | ATTR_DECRYPT);
        for cut in 0..good.len() {
            assert!(parse_rsa_storage_key(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(parse_rsa_storage_key(&trailing).is_err());
        let signing = rsa_public(1 << 18);
        assert!(parse_rsa_storage_key(&signing)
            .unwrap_err()
            .to_string()
            .contains("restricted decryption"));
    }

    #[test]
    fn kdfa_matches_the_counter_mode_definition() {
        // One block: HMAC(key, 00000001 || "STORAGE\0" || ctx || 00000080), truncated to 16.
        let mut mac = hmac_sha256(b"seed");
        mac.update(&[0, 0, 0, 1]);
        mac.update(b"STORAGE\0");
        mac.update(b"name");
        mac.update(&128u32.to_be_bytes());
        let expected = mac.finalize().into_bytes();
        assert_eq!(
            kdfa(b"seed", "STORAGE", b"name", &[], 128),
            expected[..16].to_vec()
        );
        assert_eq!(kdfa(b"seed", "INTEGRITY", &[], &[], 512).len(), 64);
    }
}
