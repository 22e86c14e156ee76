//! RAUC's encrypted bundles (`format=crypt`, RAUC 1.8): the squashfs is encrypted with
//! AES-256-CBC in 4 KiB sectors, each with dm-crypt's `plain64` IV (the 512-byte sector
//! number, little endian), under a key the signed manifest carries (`crypt-key=`); the
//! dm-verity tree covers the encrypted bytes; the signature (inline SignedData) is then
//! enveloped in CMS EnvelopedData for each recipient's certificate (`rauc encrypt`), so only a
//! holder of a recipient's private key learns the manifest and with it the payload key.
//!
//! Reading decrypts sector by sector ([`DecryptingReader`]): nothing decrypted is written to
//! disk and memory stays one sector, whatever the payload's size.
//!
//! The device's key may be held in a TPM and never leave it (beyond RAUC, which reads a key
//! file or PKCS#11): a `TSS2 PRIVATE KEY` PEM (the TPM-wrapped blob `tpm2-openssl` makes) is
//! loaded through OpenSSL's `tpm2` provider, which reaches the TPM through its TCTI
//! (`TPM2OPENSSL_TCTI`, default the kernel's resource manager); the envelope's RSA decryption or
//! EC key agreement then happens inside the TPM ([`envelope`] opens the envelope step by step:
//! OpenSSL 3.0's CMS code cannot use a provider's key).

mod envelope;

pub use envelope::{
    open as open_envelope_with_key, parse as parse_envelope, Envelope, EnvelopeError, KeyAgreement,
};

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::symm::{Cipher, Crypter, Mode};
use openssl::x509::X509;

use crate::error::{read_err, write_err, Result, UpdaterError};

/// Bytes per encrypted sector (RAUC's `ENC_SEC_SIZE`).
pub const SECTOR_SIZE: usize = 4096;

/// The AES-256 key of an encrypted payload. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct CryptKey([u8; 32]);

impl std::fmt::Debug for CryptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CryptKey(<hidden>)")
    }
}

impl CryptKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        CryptKey(bytes)
    }

    /// The manifest's `crypt-key=` (64 hex digits).
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(CryptKey(bytes))
    }

    /// The manifest spelling, lower-case hex as RAUC writes it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// dm-crypt's `plain64` IV of the 4 KiB sector `sector`: the number of its first 512-byte
/// sector, little endian, zero-padded to 16 bytes.
fn plain64_iv(sector: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&(sector * (SECTOR_SIZE as u64 / 512)).to_le_bytes());
    iv
}

/// En- or decrypts one sector in place.
fn crypt_sector(key: &CryptKey, sector: u64, mode: Mode, data: &mut [u8]) -> Result<()> {
    let iv = plain64_iv(sector);
    let mut crypter = Crypter::new(Cipher::aes_256_cbc(), mode, &key.0, Some(&iv))
        .map_err(UpdaterError::Crypt)?;
    crypter.pad(false);
    let mut out = [0u8; SECTOR_SIZE + 16];
    let mut done = crypter
        .update(data, &mut out)
        .map_err(UpdaterError::Crypt)?;
    done += crypter
        .finalize(&mut out[done..])
        .map_err(UpdaterError::Crypt)?;
    data.copy_from_slice(&out[..done]);
    Ok(())
}

/// Encrypts the first `size` bytes of `file` (a multiple of [`SECTOR_SIZE`]) in place.
pub fn encrypt_in_place(file: &File, path: &Path, size: u64, key: &CryptKey) -> Result<()> {
    if !size.is_multiple_of(SECTOR_SIZE as u64) {
        return Err(UpdaterError::BundleFormat {
            path: path.to_path_buf(),
            message: format!("payload size {size} is not a multiple of {SECTOR_SIZE}"),
        });
    }
    let mut sector = vec![0u8; SECTOR_SIZE];
    for index in 0..size / SECTOR_SIZE as u64 {
        let offset = index * SECTOR_SIZE as u64;
        file.read_exact_at(&mut sector, offset)
            .map_err(read_err(path))?;
        crypt_sector(key, index, Mode::Encrypt, &mut sector)?;
        file.write_all_at(&sector, offset)
            .map_err(write_err(path))?;
    }
    Ok(())
}

/// The clear bytes of the first `size` bytes of an encrypted file (a multiple of
/// [`SECTOR_SIZE`]), one sector decrypted at a time.
pub struct DecryptingReader {
    file: File,
    size: u64,
    key: CryptKey,
    position: u64,
    /// The index of the sector in `clear`, if any.
    sector: Option<u64>,
    clear: Vec<u8>,
}

impl DecryptingReader {
    /// Reads `file`'s first `size` bytes, encrypted under `key`.
    pub fn new(file: File, size: u64, key: CryptKey) -> Self {
        DecryptingReader {
            file,
            size,
            key,
            position: 0,
            sector: None,
            clear: vec![0u8; SECTOR_SIZE],
        }
    }

    fn load(&mut self, sector: u64) -> std::io::Result<()> {
        if self.sector == Some(sector) {
            return Ok(());
        }
        self.sector = None;
        self.file
            .read_exact_at(&mut self.clear, sector * SECTOR_SIZE as u64)?;
        crypt_sector(&self.key, sector, Mode::Decrypt, &mut self.clear)
            .map_err(std::io::Error::other)?;
        self.sector = Some(sector);
        Ok(())
    }
}

impl Read for DecryptingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.position >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let sector = self.position / SECTOR_SIZE as u64;
        self.load(sector)?;
        let start = (self.position % SECTOR_SIZE as u64) as usize;
        let n = buf.len().min(SECTOR_SIZE - start);
        buf[..n].copy_from_slice(&self.clear[start..start + n]);
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for DecryptingReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let position = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
        };
        let position = position.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        self.position = position;
        Ok(position)
    }
}

/// A device's decryption identity: the private key of a recipient certificate (RAUC's
/// `[encryption] key=`), with the certificate when given (`cert=`: OpenSSL then tries only the
/// recipient info issued to it).
pub struct Decryptor {
    key: PKey<Private>,
    cert: Option<X509>,
    /// Where the key was loaded from, for errors.
    key_path: PathBuf,
    /// Whether the key is a TPM's (loaded through the `tpm2` provider).
    in_tpm: bool,
}

/// The PEM label of a TPM-wrapped key (`tpm2-openssl`, `tpm2-tss-engine`).
const TSS2_PEM_LABEL: &[u8] = b"-----BEGIN TSS2 PRIVATE KEY-----";

/// OpenSSL's `tpm2` provider (and `default`, which loading a provider otherwise disables),
/// loaded once into the default library context.
fn tpm2_provider(key: &Path) -> Result<()> {
    use openssl::provider::Provider;
    use std::sync::OnceLock;
    static PROVIDERS: OnceLock<std::result::Result<[Provider; 2], openssl::error::ErrorStack>> =
        OnceLock::new();
    let loaded = PROVIDERS.get_or_init(|| {
        let tpm2 = Provider::load(None, "tpm2")?;
        let default = Provider::load(None, "default")?;
        Ok([tpm2, default])
    });
    match loaded {
        Ok(_) => Ok(()),
        Err(source) => Err(UpdaterError::LoadCrypto {
            what: "OpenSSL's tpm2 provider (Debian package tpm2-openssl) for the TPM-held key",
            path: key.to_path_buf(),
            source: source.clone(),
        }),
    }
}

impl std::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    /// Loads the private key `key` (PEM) and the certificate `cert` (PEM), if given.
    pub fn load(key: &Path, cert: Option<&Path>) -> Result<Self> {
        let pem = std::fs::read(key).map_err(read_err(key))?;
        let in_tpm = pem
            .windows(TSS2_PEM_LABEL.len())
            .any(|window| window == TSS2_PEM_LABEL);
        if in_tpm {
            tpm2_provider(key)?;
        }
        let private =
            PKey::private_key_from_pem(&pem).map_err(|source| UpdaterError::LoadCrypto {
                what: "decryption key",
                path: key.to_path_buf(),
                source,
            })?;
        let cert = match cert {
            Some(path) => {
                let pem = std::fs::read(path).map_err(read_err(path))?;
                Some(
                    X509::from_pem(&pem).map_err(|source| UpdaterError::LoadCrypto {
                        what: "decryption certificate",
                        path: path.to_path_buf(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Ok(Decryptor {
            key: private,
            cert,
            key_path: key.to_path_buf(),
            in_tpm,
        })
    }

    /// Whether the key is held in a TPM.
    pub fn in_tpm(&self) -> bool {
        self.in_tpm
    }

    /// The content of the EnvelopedData `der` of bundle `path`: the signed CMS inside.
    pub fn open_envelope(&self, der: &[u8], path: &Path) -> Result<Vec<u8>> {
        let fail = |source| UpdaterError::DecryptSignature {
            path: path.to_path_buf(),
            key: self.key_path.clone(),
            source,
        };
        if self.in_tpm {
            return envelope::open(der, &self.key).map_err(|source| {
                UpdaterError::DecryptEnvelope {
                    path: path.to_path_buf(),
                    key: self.key_path.clone(),
                    source,
                }
            });
        }
        let cms = CmsContentInfo::from_der(der).map_err(fail)?;
        // Without a certificate OpenSSL tries every recipient; what a wrong key yields is then
        // caught when the signature inside does not parse or verify.
        match &self.cert {
            Some(cert) => cms.decrypt(&self.key, cert),
            None => cms.decrypt_without_cert_check(&self.key),
        }
        .map_err(fail)
    }
}

/// Envelopes the signed CMS `signed_der` for `recipients`, as `rauc encrypt` does
/// (AES-256-CBC content encryption, binary content).
pub fn envelope(signed_der: &[u8], recipients: &[X509]) -> Result<Vec<u8>> {
    let mut stack = Stack::new().map_err(UpdaterError::Crypt)?;
    for cert in recipients {
        stack.push(cert.clone()).map_err(UpdaterError::Crypt)?;
    }
    let cms = CmsContentInfo::encrypt(
        &stack,
        signed_der,
        Cipher::aes_256_cbc(),
        CMSOptions::BINARY,
    )
    .map_err(UpdaterError::Crypt)?;
    cms.to_der().map_err(UpdaterError::Crypt)
}

/// Envelopes the signature of the crypt bundle `input` (verified against `keyring` first) for
/// every certificate in the PEM files `recipients`, writing the result to `out` (through a
/// temporary file beside it), as `rauc encrypt` does. The payload is copied unchanged.
/// Returns how many recipients the envelope has.
pub fn encrypt_bundle(
    input: &Path,
    keyring: &crate::Keyring,
    recipients: &[PathBuf],
    out: &Path,
) -> Result<usize> {
    use std::io::Write;
    let bundle = crate::bundle::open(input, keyring)?;
    if bundle.manifest.format != crate::BundleFormat::Crypt {
        return Err(UpdaterError::BundleFormat {
            path: input.to_path_buf(),
            message: format!(
                "only a format=crypt bundle can be encrypted (this one is {})",
                bundle.manifest.format.as_str()
            ),
        });
    }
    let mut certs = Vec::new();
    for path in recipients {
        let pem = std::fs::read(path).map_err(read_err(path))?;
        let found = X509::stack_from_pem(&pem).map_err(|source| UpdaterError::LoadCrypto {
            what: "recipient certificate",
            path: path.clone(),
            source,
        })?;
        if found.is_empty() {
            return Err(UpdaterError::BundleFormat {
                path: path.clone(),
                message: "holds no certificate".to_string(),
            });
        }
        certs.extend(found);
    }
    if certs.is_empty() {
        return Err(UpdaterError::BundleFormat {
            path: input.to_path_buf(),
            message: "no recipient to encrypt for".to_string(),
        });
    }
    let file = File::open(input).map_err(read_err(input))?;
    let frame = crate::bundle::read_frame(&file, input)?;
    let enveloped = envelope(&frame.der, &certs)?;
    let dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".testudo-encrypt-")
        .tempfile_in(&dir)
        .map_err(write_err(&dir))?;
    std::io::copy(&mut (&file).take(frame.payload_size), temp.as_file_mut())
        .map_err(write_err(out))?;
    let writer = temp.as_file_mut();
    writer.write_all(&enveloped).map_err(write_err(out))?;
    writer
        .write_all(&(enveloped.len() as u64).to_be_bytes())
        .map_err(write_err(out))?;
    writer.sync_all().map_err(write_err(out))?;
    temp.persist(out)
        .map_err(|error| write_err(out)(error.error))?;
    Ok(certs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain64_counts_512_byte_sectors_little_endian() {
        assert_eq!(plain64_iv(0), [0u8; 16]);
        let mut expected = [0u8; 16];
        expected[0] = 8;
        assert_eq!(plain64_iv(1), expected);
        expected[0] = 0;
        expected[1] = 2;
        assert_eq!(plain64_iv(64), expected);
    }

    #[test]
    fn decrypting_reader_reads_and_seeks_what_was_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payload");
        let clear: Vec<u8> = (0..3 * SECTOR_SIZE).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &clear).unwrap();
        let key = CryptKey::from_bytes([9u8; 32]);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        encrypt_in_place(&file, &path, clear.len() as u64, &key).unwrap();
        let stored = std::fs::read(&path).unwrap();
        assert_ne!(stored[..SECTOR_SIZE], clear[..SECTOR_SIZE]);
        // Equal clear sectors encrypt differently (the IV is the sector number).
        assert_ne!(stored[..16], stored[SECTOR_SIZE..SECTOR_SIZE + 16]);

        let mut reader = DecryptingReader::new(file, clear.len() as u64, key);
        let mut all = Vec::new();
        reader.read_to_end(&mut all).unwrap();
        assert_eq!(all, clear);
        reader.seek(SeekFrom::Start(5000)).unwrap();
        let mut some = [0u8; 100];
        reader.read_exact(&mut some).unwrap();
        assert_eq!(some[..], clear[5000..5100]);
        assert!(reader.seek(SeekFrom::Current(-100_000)).is_err());
    }
}
