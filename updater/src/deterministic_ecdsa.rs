//! Reproducible CMS signatures with ECDSA P-256 keys: OpenSSL 3.0 draws the ECDSA nonce at
//! random (deterministic nonces arrived in 3.2), so two signatures of the same bytes differ.
//! This module replaces the signature value OpenSSL put into a one-signer CMS SignedData by
//! the RFC 6979 (deterministic) ECDSA signature of the same message (the signed attributes
//! when there are any, else the content's SHA-256), computed with the RustCrypto `p256`
//! crate. Everything else in the CMS is OpenSSL's, unchanged.
//!
//! Together with no signing time (the bundle writer signs without signed attributes, as
//! OpenSSL 3.0 cannot omit just the time), signing the same content with the same key gives
//! the same DER, which makes a whole bundle reproducible. RSA PKCS#1 v1.5
//! signatures are deterministic already and are left alone, as is any other key type.
//!
//! The DER walk is minimal and defensive: it only accepts the shape OpenSSL just wrote
//! (definite lengths, one SignerInfo, ecdsa-with-SHA256) and
//! otherwise reports what it did not find.

use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use p256::ecdsa::signature::hazmat::PrehashSigner as _;
use sha2::Digest as _;

use crate::error::{Result, UpdaterError};

/// DER of the OID ecdsa-with-SHA256 (1.2.840.10045.4.3.2), as an AlgorithmIdentifier's first
/// element.
const ECDSA_WITH_SHA256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_CONTEXT_0: u8 = 0xa0;

fn malformed(detail: &str) -> UpdaterError {
    UpdaterError::DeterministicSignature {
        detail: detail.to_owned(),
    }
}

/// One DER element: tag, the whole encoding, and its content.
#[derive(Debug, Clone, Copy)]
struct Element<'a> {
    tag: u8,
    whole: &'a [u8],
    content: &'a [u8],
}

/// Parses the element at the start of `bytes` (single-byte tags, definite lengths).
fn element(bytes: &[u8]) -> Result<Element<'_>> {
    let tag = *bytes
        .first()
        .ok_or_else(|| malformed("truncated element"))?;
    if tag & 0x1f == 0x1f {
        return Err(malformed("multi-byte tag"));
    }
    let first = *bytes.get(1).ok_or_else(|| malformed("truncated length"))?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return Err(malformed("indefinite or oversized length"));
        }
        let digits = bytes
            .get(2..2 + count)
            .ok_or_else(|| malformed("truncated length"))?;
        let len = digits
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, 2 + count)
    };
    let end = header
        .checked_add(len)
        .filter(|end| *end <= bytes.len())
        .ok_or_else(|| malformed("element longer than its container"))?;
    Ok(Element {
        tag,
        whole: &bytes[..end],
        content: &bytes[header..end],
    })
}

/// The elements inside a constructed element's content.
fn children(content: &[u8]) -> Result<Vec<Element<'_>>> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let child = element(rest)?;
        rest = &rest[child.whole.len()..];
        out.push(child);
    }
    Ok(out)
}

/// DER encoding of `tag` with `content`.
fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let digits: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | digits.len() as u8);
        out.extend_from_slice(&digits);
    }
    out.extend_from_slice(content);
    out
}

/// Re-encodes `node` with its child at `index` replaced by `replacement` (a whole element).
fn replace_child(node: Element<'_>, index: usize, replacement: &[u8]) -> Result<Vec<u8>> {
    let kids = children(node.content)?;
    let mut content = Vec::with_capacity(node.content.len() + 8);
    for (i, kid) in kids.iter().enumerate() {
        content.extend_from_slice(if i == index { replacement } else { kid.whole });
    }
    Ok(encode(node.tag, &content))
}

fn child_with<'a>(node: Element<'a>, tag: u8, what: &str) -> Result<(usize, Element<'a>)> {
    children(node.content)?
        .into_iter()
        .enumerate()
        .find(|(_, e)| e.tag == tag)
        .ok_or_else(|| malformed(what))
}

/// The P-256 signing key of `key`, or None for any other key type.
fn p256_key(key: &PKey<Private>) -> Option<p256::ecdsa::SigningKey> {
    let ec = key.ec_key().ok()?;
    if ec.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
        return None;
    }
    let scalar = ec.private_key().to_vec_padded(32).ok()?;
    p256::ecdsa::SigningKey::from_slice(&scalar).ok()
}

/// Returns `cms` (DER of a ContentInfo with one SignerInfo, as OpenSSL's `CMS_sign` writes
/// it) with the ECDSA signature made deterministic when `key` is a P-256 key; unchanged for
/// any other key. `content_sha256` is the SHA-256 of the signed content, which the signature
/// covers when the SignerInfo has no signed attributes.
pub fn make_deterministic(
    cms: Vec<u8>,
    key: &PKey<Private>,
    content_sha256: &[u8; 32],
) -> Result<Vec<u8>> {
    let Some(signing_key) = p256_key(key) else {
        return Ok(cms);
    };
    // ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT SignedData }
    let content_info = element(&cms)?;
    let (explicit_index, explicit) = child_with(content_info, TAG_CONTEXT_0, "no [0] content")?;
    let signed_data = element(explicit.content)?;
    // SignedData: version, digestAlgorithms, encapContentInfo, [0] certs, [1] crls, signerInfos.
    let kids = children(signed_data.content)?;
    let infos_index = kids
        .len()
        .checked_sub(1)
        .ok_or_else(|| malformed("empty SignedData"))?;
    let signer_infos = kids[infos_index];
    if signer_infos.tag != TAG_SET {
        return Err(malformed("no signerInfos SET"));
    }
    let infos = children(signer_infos.content)?;
    let [signer_info] = infos.as_slice() else {
        return Err(malformed("not exactly one SignerInfo"));
    };
    let signer_info = *signer_info;
    if signer_info.tag != TAG_SEQUENCE {
        return Err(malformed("SignerInfo is not a SEQUENCE"));
    }
    // SignerInfo: version, sid, digestAlgorithm, [0] signedAttrs, signatureAlgorithm,
    // signature, [1] unsignedAttrs.
    let attrs = child_with(signer_info, TAG_CONTEXT_0, "")
        .ok()
        .map(|(_, e)| e);
    let (sig_index, _) = child_with(signer_info, TAG_OCTET_STRING, "no signature value")?;
    let algorithm = children(signer_info.content)?
        .get(sig_index.wrapping_sub(1))
        .copied()
        .ok_or_else(|| malformed("no signature algorithm"))?;
    if !algorithm.content.starts_with(ECDSA_WITH_SHA256) {
        return Err(malformed("signature algorithm is not ecdsa-with-SHA256"));
    }
    // The signature covers the signed attributes DER-encoded as a SET when there are any,
    // else the content itself (RFC 5652 5.4).
    let prehash: [u8; 32] = match attrs {
        Some(attrs) => sha2::Sha256::digest(encode(TAG_SET, attrs.content)).into(),
        None => *content_sha256,
    };
    let signature: p256::ecdsa::Signature = signing_key
        .sign_prehash(&prehash)
        .map_err(|e| malformed(&format!("ECDSA signing failed: {e}")))?;
    let value = encode(TAG_OCTET_STRING, signature.to_der().as_bytes());

    let signer_info = replace_child(signer_info, sig_index, &value)?;
    let signer_infos = encode(TAG_SET, &signer_info);
    let signed_data = replace_child(signed_data, infos_index, &signer_infos)?;
    let explicit = encode(explicit.tag, &signed_data);
    replace_child(content_info, explicit_index, &explicit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_encode_short_and_long_forms() {
        assert_eq!(encode(0x04, &[1, 2]), [0x04, 2, 1, 2]);
        let long = encode(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let parsed = element(&long).unwrap();
        assert_eq!(parsed.content.len(), 300);
    }

    #[test]
    fn p256_cms_signatures_repeat_and_verify() {
        use crate::keys::{issue, KeyKind, Validity};
        use openssl::cms::{CMSOptions, CmsContentInfo};
        let ca = issue("test ca", KeyKind::EcP256, Validity::days(1), true, None).unwrap();
        let signer = issue(
            "test signer",
            KeyKind::EcP256,
            Validity::days(1),
            false,
            Some(&ca),
        )
        .unwrap();
        let digest: [u8; 32] = sha2::Sha256::digest(b"manifest").into();
        let sign = |flags: CMSOptions| {
            let cms = CmsContentInfo::sign(
                Some(&signer.cert),
                Some(&signer.key),
                None,
                Some(b"manifest".as_slice()),
                flags,
            )
            .unwrap();
            cms.to_der().unwrap()
        };
        let mut store = openssl::x509::store::X509StoreBuilder::new().unwrap();
        store.add_cert(ca.cert.clone()).unwrap();
        let store = store.build();
        let verify = |der: &[u8]| {
            let mut cms = CmsContentInfo::from_der(der).unwrap();
            let mut content = Vec::new();
            cms.verify(
                None,
                Some(&store),
                None,
                Some(&mut content),
                CMSOptions::BINARY,
            )
            .unwrap();
            assert_eq!(content, b"manifest");
        };
        for flags in [
            CMSOptions::BINARY | CMSOptions::NOSMIMECAP | CMSOptions::NOATTR,
            CMSOptions::BINARY | CMSOptions::NOSMIMECAP,
        ] {
            let (a, b) = (sign(flags), sign(flags));
            assert_ne!(a, b, "OpenSSL 3.0 ECDSA is randomised");
            let a = make_deterministic(a, &signer.key, &digest).unwrap();
            let b = make_deterministic(b, &signer.key, &digest).unwrap();
            if flags.contains(CMSOptions::NOATTR) {
                assert_eq!(a, b);
            }
            verify(&a);
        }
        // RSA signatures are left as OpenSSL made them (PKCS#1 v1.5 is deterministic).
        let rsa = issue("rsa", KeyKind::Rsa2048, Validity::days(1), false, Some(&ca)).unwrap();
        assert_eq!(
            make_deterministic(b"x".to_vec(), &rsa.key, &digest).unwrap(),
            b"x"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let key = PKey::from_ec_key(
            openssl::ec::EcKey::generate(
                &openssl::ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        for bytes in [
            vec![],
            vec![0x30],
            vec![0x30, 0x85, 1, 1, 1, 1, 1],
            vec![0x30, 0x05, 0x02, 0x01],
            vec![0x30, 0x03, 0xa0, 0x01, 0x00],
        ] {
            assert!(make_deterministic(bytes, &key, &[0; 32]).is_err());
        }
    }
}
