//! The TPM 2.0 wire format both sides of DPS TPM attestation speak (TPM 2.0 Part 2): the
//! device, which marshals its commands by hand over the `tpm` route
//! (`testudo_agent::tpm_commands`), and the DPS emulator, which reads the public areas a
//! device sends and builds the blobs it answers with (`testudo_hub::tpm_wire`).
//!
//! - [`Reader`]: a cursor over untrusted bytes; every length is checked and nothing reads past
//!   the end.
//! - [`put_u16`], [`put_u32`], [`put_sized`]: big-endian integers and `TPM2B_*` buffers.
//! - [`parse_rsa_storage_key`]: an RSA 2048 restricted decryption key's `TPM2B_PUBLIC` (an EK
//!   or SRK), what DPS can wrap secrets to; the device refuses an SRK this parser refuses
//!   before it asks DPS, and the emulator refuses such a key in a registration.

use sha2::{Digest as _, Sha256};

/// `TPM_ALG_RSA`.
pub const ALG_RSA: u16 = 0x0001;
/// `TPM_ALG_HMAC`.
pub const ALG_HMAC: u16 = 0x0005;
/// `TPM_ALG_AES`.
pub const ALG_AES: u16 = 0x0006;
/// `TPM_ALG_KEYEDHASH`.
pub const ALG_KEYEDHASH: u16 = 0x0008;
/// `TPM_ALG_SHA256`.
pub const ALG_SHA256: u16 = 0x000B;
/// `TPM_ALG_NULL`.
pub const ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_ECDSA`.
pub const ALG_ECDSA: u16 = 0x0018;
/// `TPM_ALG_CFB`.
pub const ALG_CFB: u16 = 0x0043;
/// `TPMA_OBJECT_RESTRICTED`.
pub const ATTR_RESTRICTED: u32 = 1 << 16;
/// `TPMA_OBJECT_DECRYPT`.
pub const ATTR_DECRYPT: u32 = 1 << 17;

/// Bytes that are not the structure they should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A field runs past the end of the bytes.
    #[error("{field} needs {needed} bytes, {left} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Its size.
        needed: usize,
        /// What was left.
        left: usize,
    },
    /// Bytes follow the structure.
    #[error("{count} bytes after {structure}")]
    Trailing {
        /// What ended.
        structure: &'static str,
        /// How many bytes follow it.
        count: usize,
    },
    /// A buffer is larger than a `TPM2B_*` size (`u16`) can say.
    #[error("a {len}-byte {field} does not fit a TPM2B")]
    TooLarge {
        /// The field being written.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A field holds a value the structure does not allow here.
    #[error("{field} is {found}, not {expected}")]
    Unexpected {
        /// The field.
        field: &'static str,
        /// What it holds.
        found: String,
        /// What it must hold.
        expected: &'static str,
    },
}

/// A cursor over untrusted bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// What is not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Truncated {
                field,
                needed: n,
                left: self.bytes.len(),
            });
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A `TPM2B_*`'s bytes (without the size).
    pub fn sized(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let size = self.u16(field)?;
        self.take(usize::from(size), field)
    }

    /// A `TPM2B_*` with its size prefix (how DPS wants public areas).
    pub fn sized_with_prefix(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let start = self.bytes;
        let body = self.sized(field)?;
        Ok(&start[..2 + body.len()])
    }

    /// Refuses bytes left after `structure`.
    pub fn end(&self, structure: &'static str) -> Result<(), WireError> {
        match self.bytes.len() {
            0 => Ok(()),
            count => Err(WireError::Trailing { structure, count }),
        }
    }
}

/// Appends a big-endian `u16`.
pub fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// Appends a big-endian `u32`.
pub fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// Appends `bytes` as a `TPM2B_*` (`u16` size, then the bytes).
pub fn put_sized(out: &mut Vec<u8>, field: &'static str, bytes: &[u8]) -> Result<(), WireError> {
    let len = u16::try_from(bytes.len()).map_err(|_| WireError::TooLarge {
        field,
        len: bytes.len(),
    })?;
    put_u16(out, len);
    out.extend_from_slice(bytes);
    Ok(())
}

/// An RSA restricted decryption key (EK or SRK) as a `TPM2B_PUBLIC` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaStorageKey {
    /// TPM name: `TPM_ALG_SHA256 || SHA-256(TPMT_PUBLIC)`.
    pub name: Vec<u8>,
    /// Big-endian modulus.
    pub modulus: Vec<u8>,
    /// Public exponent (0 in the structure means 65537).
    pub exponent: u32,
    /// AES key size of the key's symmetric definition, in bits (128 or 256).
    pub symmetric_bits: u16,
}

impl RsaStorageKey {
    /// Whether both describe the same RSA key (templates may differ in policy or attributes;
    /// an enrollment is about the key).
    pub fn same_key(&self, other: &RsaStorageKey) -> bool {
        self.modulus == other.modulus && self.exponent == other.exponent
    }
}

fn expect<T: PartialEq + std::fmt::LowerHex>(
    field: &'static str,
    found: T,
    allowed: &[T],
    expected: &'static str,
) -> Result<T, WireError> {
    if allowed.contains(&found) {
        Ok(found)
    } else {
        Err(WireError::Unexpected {
            field,
            found: format!("{found:#x}"),
            expected,
        })
    }
}

/// Parses a `TPM2B_PUBLIC` holding an RSA 2048 restricted decryption key with SHA-256 name
/// algorithm and AES-CFB symmetric definition (what EK and SRK templates produce).
pub fn parse_rsa_storage_key(tpm2b_public: &[u8]) -> Result<RsaStorageKey, WireError> {
    let mut outer = Reader::new(tpm2b_public);
    let tpmt = outer.sized("TPM2B_PUBLIC.size")?;
    outer.end("TPM2B_PUBLIC")?;
    let mut r = Reader::new(tpmt);
    expect(
        "type",
        r.u16("type")?,
        &[ALG_RSA],
        "RSA (only RSA keys can be wrapped to)",
    )?;
    expect("nameAlg", r.u16("nameAlg")?, &[ALG_SHA256], "SHA-256")?;
    let attributes = r.u32("objectAttributes")?;
    let wanted = ATTR_RESTRICTED | ATTR_DECRYPT;
    expect(
        "objectAttributes & (restricted | decrypt)",
        attributes & wanted,
        &[wanted],
        "both (a restricted decryption key)",
    )?;
    r.sized("authPolicy")?;
    expect(
        "symmetric.algorithm",
        r.u16("symmetric.algorithm")?,
        &[ALG_AES],
        "AES",
    )?;
    let symmetric_bits = expect(
        "symmetric.keyBits",
        r.u16("symmetric.keyBits")?,
        &[128, 256],
        "128 or 256",
    )?;
    expect(
        "symmetric.mode",
        r.u16("symmetric.mode")?,
        &[ALG_CFB],
        "CFB",
    )?;
    expect("scheme", r.u16("scheme")?, &[ALG_NULL], "NULL")?;
    expect("keyBits", r.u16("keyBits")?, &[2048], "2048")?;
    let exponent = r.u32("exponent")?;
    let modulus = r.sized("unique")?;
    expect("modulus size", modulus.len(), &[256], "256 bytes")?;
    r.end("TPMT_PUBLIC")?;
    Ok(RsaStorageKey {
        name: name_of(tpmt),
        modulus: modulus.to_vec(),
        exponent,
        symmetric_bits,
    })
}

/// The TPM name of an object with SHA-256 name algorithm and this `TPMT_PUBLIC`.
pub fn name_of(tpmt_public: &[u8]) -> Vec<u8> {
    let mut name = ALG_SHA256.to_be_bytes().to_vec();
    name.extend_from_slice(&Sha256::digest(tpmt_public));
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `TPM2B_PUBLIC` of an RSA 2048 storage key (the SRK template with a modulus).
    fn storage_key() -> Vec<u8> {
        let mut tpmt = Vec::new();
        put_u16(&mut tpmt, ALG_RSA);
        put_u16(&mut tpmt, ALG_SHA256);
        put_u32(&mut tpmt, 0x0003_0472);
        put_sized(&mut tpmt, "authPolicy", &[]).unwrap();
        for field in [ALG_AES, 128, ALG_CFB, ALG_NULL, 2048] {
            put_u16(&mut tpmt, field);
        }
        put_u32(&mut tpmt, 0);
        put_sized(&mut tpmt, "unique", &[0xC5; 256]).unwrap();
        let mut out = Vec::new();
        put_sized(&mut out, "TPM2B_PUBLIC", &tpmt).unwrap();
        out
    }

    #[test]
    fn a_storage_key_parses_and_is_named_by_its_public_area() {
        let bytes = storage_key();
        let key = parse_rsa_storage_key(&bytes).unwrap();
        assert_eq!(key.modulus, [0xC5; 256]);
        assert_eq!(key.symmetric_bits, 128);
        assert_eq!(key.name, name_of(&bytes[2..]));
        assert_eq!(&key.name[..2], &[0x00, 0x0B]);
    }

    #[test]
    fn anything_else_is_refused_naming_the_field() {
        let good = storage_key();
        for cut in 0..good.len() {
            assert!(parse_rsa_storage_key(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut ecc = good.clone();
        ecc[3] = 0x23; // TPM_ALG_ECC
        let error = parse_rsa_storage_key(&ecc).unwrap_err().to_string();
        assert!(error.starts_with("type is 0x23, not RSA"), "{error}");
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            parse_rsa_storage_key(&trailing).unwrap_err(),
            WireError::Trailing {
                structure: "TPM2B_PUBLIC",
                count: 1
            }
        );
        let mut signing = good;
        signing[7] &= !0x02; // clear decrypt (bit 17)
        let error = parse_rsa_storage_key(&signing).unwrap_err().to_string();
        assert!(error.contains("restricted decryption key"), "{error}");
    }

    #[test]
    fn buffers_are_sized_or_refused() {
        let mut out = Vec::new();
        put_sized(&mut out, "x", b"abc").unwrap();
        assert_eq!(out, [0, 3, b'a', b'b', b'c']);
        let mut reader = Reader::new(&out);
        assert_eq!(reader.sized_with_prefix("x").unwrap(), &out[..]);
        reader.end("x").unwrap();
        assert!(matches!(
            put_sized(&mut out, "big", &vec![0; 70_000]),
            Err(WireError::TooLarge {
                field: "big",
                len: 70_000
            })
        ));
    }
}
