//! `manifest.json`: every input and output of a build with its SHA-256 and size, and every
//! file inside the rootfs (an SBOM of the image), signed with Ed25519.
//!
//! The file is `{"manifest": {...}, "signature": {"algorithm": "ed25519", "public_key": hex,
//! "value": hex}}`. The signature covers the canonical form of `manifest`: compact JSON with
//! object keys sorted (serde_json's `Value` keeps them sorted), so any JSON reader can
//! re-derive the signed bytes. `disk.img` is recorded as a map of its data ranges with their
//! hashes (the rest reads as zeros), not one hash over its mostly empty bytes. All numbers are integers; no timestamps except
//! `source_date_epoch`; no host paths.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::disk::DiskMap;
use crate::error::{ImageError, Result};

/// Manifest format version.
pub const MANIFEST_FORMAT: u32 = 2;

/// One hashed item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Logical name: an output file name, an image path, or `kind:name` for inputs.
    pub name: String,
    /// Lowercase hex SHA-256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// What the hash covers when it is not simply the whole item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The system an image is of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub name: String,
    pub version: String,
    pub compatible: String,
    pub board: String,
}

/// The signed content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// Builder name and version.
    pub builder: String,
    /// The system.
    pub system: SystemInfo,
    /// The build clock.
    pub source_date_epoch: u64,
    /// Inputs, sorted by name.
    pub inputs: Vec<Entry>,
    /// Output files, sorted by name.
    pub outputs: Vec<Entry>,
    /// `disk.img` as its size and data ranges (its `outputs` entry hashes this map).
    pub disk: DiskMap,
    /// Regular files inside the rootfs by absolute image path, sorted.
    pub rootfs: Vec<Entry>,
}

/// The detached-in-place signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSignature {
    /// Always `ed25519`.
    pub algorithm: String,
    /// Hex of the 32-byte public key.
    pub public_key: String,
    /// Hex of the 64-byte signature.
    pub value: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct SignedFile {
    manifest: serde_json::Value,
    signature: ManifestSignature,
}

fn canonical(value: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|source| ImageError::Serialize {
        what: "manifest".into(),
        source,
    })
}

impl ImageManifest {
    /// Sorts every list, so the manifest does not depend on the order things were added.
    pub fn sort(&mut self) {
        for list in [&mut self.inputs, &mut self.outputs, &mut self.rootfs] {
            list.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }

    /// The signed file's bytes (pretty JSON with sorted keys and a final newline).
    pub fn sign(&self, key: &SigningKey) -> Result<Vec<u8>> {
        let value = serde_json::to_value(self).map_err(|source| ImageError::Serialize {
            what: "manifest".into(),
            source,
        })?;
        let signature = key.sign(&canonical(&value)?);
        let file = SignedFile {
            manifest: value,
            signature: ManifestSignature {
                algorithm: "ed25519".into(),
                public_key: hex::encode(key.verifying_key().as_bytes()),
                value: hex::encode(signature.to_bytes()),
            },
        };
        let as_value = serde_json::to_value(&file).map_err(|source| ImageError::Serialize {
            what: "signed manifest".into(),
            source,
        })?;
        let mut bytes =
            serde_json::to_vec_pretty(&as_value).map_err(|source| ImageError::Serialize {
                what: "signed manifest".into(),
                source,
            })?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

/// Checks a signed manifest read from `path`; with `trusted`, the signer must be that key.
/// Returns the manifest.
pub fn verify(bytes: &[u8], path: &Path, trusted: Option<&VerifyingKey>) -> Result<ImageManifest> {
    let path = path.to_path_buf();
    let file: SignedFile =
        serde_json::from_slice(bytes).map_err(|source| ImageError::ManifestParse {
            path: path.clone(),
            source,
        })?;
    if file.signature.algorithm != "ed25519" {
        return Err(ImageError::ManifestAlgorithm {
            path,
            algorithm: file.signature.algorithm,
        });
    }
    let key_bytes: [u8; 32] = hex::decode(&file.signature.public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ImageError::ManifestPublicKey {
            path: path.clone(),
            source: None,
        })?;
    let key =
        VerifyingKey::from_bytes(&key_bytes).map_err(|source| ImageError::ManifestPublicKey {
            path: path.clone(),
            source: Some(source),
        })?;
    if let Some(trusted) = trusted {
        if trusted != &key {
            return Err(ImageError::ManifestUntrustedKey { path });
        }
    }
    let sig_bytes: [u8; 64] = hex::decode(&file.signature.value)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ImageError::ManifestSignatureValue { path: path.clone() })?;
    key.verify(
        &canonical(&file.manifest)?,
        &Signature::from_bytes(&sig_bytes),
    )
    .map_err(|source| ImageError::ManifestSignature {
        path: path.clone(),
        source,
    })?;
    serde_json::from_value(file.manifest)
        .map_err(|source| ImageError::ManifestContent { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ImageManifest {
        ImageManifest {
            format: MANIFEST_FORMAT,
            builder: "testudo-images test".into(),
            system: SystemInfo {
                name: "gateway".into(),
                version: "1.0.0".into(),
                compatible: "c".into(),
                board: "qemu-x86_64".into(),
            },
            source_date_epoch: 1,
            inputs: vec![
                Entry {
                    name: "z".into(),
                    sha256: "00".into(),
                    size: 1,
                    note: None,
                },
                Entry {
                    name: "a".into(),
                    sha256: "11".into(),
                    size: 2,
                    note: None,
                },
            ],
            outputs: vec![],
            disk: DiskMap {
                size: 1 << 20,
                ranges: vec![],
            },
            rootfs: vec![],
        }
    }

    #[test]
    fn signed_manifest_verifies_and_tampering_is_caught() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let mut manifest = sample();
        manifest.sort();
        assert_eq!(manifest.inputs[0].name, "a");
        let bytes = manifest.sign(&key).unwrap();
        let back = verify(&bytes, Path::new("m"), Some(&key.verifying_key())).unwrap();
        assert_eq!(back, manifest);
        let tampered = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("\"size\": 2", "\"size\": 3");
        assert!(matches!(
            verify(tampered.as_bytes(), Path::new("m"), None),
            Err(ImageError::ManifestSignature { .. })
        ));
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert!(matches!(
            verify(&bytes, Path::new("m"), Some(&other.verifying_key())),
            Err(ImageError::ManifestUntrustedKey { .. })
        ));
        assert!(matches!(
            verify(b"{not json", Path::new("m"), None),
            Err(ImageError::ManifestParse { .. })
        ));
    }

    #[test]
    fn signing_is_deterministic() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        assert_eq!(sample().sign(&key).unwrap(), sample().sign(&key).unwrap());
    }
}
