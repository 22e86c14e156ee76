//! Opening a CMS envelope (what `rauc encrypt` makes) step by step, for a key OpenSSL's CMS
//! code cannot use itself: one held in a TPM. OpenSSL 3.0's CMS copies the curve parameters
//! from the private key onto an EC originator's key, which a provider-held key refuses, and
//! picks the default provider for the key operation, which cannot use it. Here the one private
//! operation — the ECDH `derive` of a key-agreement recipient (RFC 5753
//! `KeyAgreeRecipientInfo`) or the RSA decryption of a key-transport recipient
//! (`KeyTransRecipientInfo`, PKCS #1 v1.5) — runs in a context asking for the `tpm2` provider,
//! so inside the TPM; the rest is public: for EC the ANSI X9.63 KDF over the shared secret and
//! `ECC-CMS-SharedInfo` and the AES key unwrap of the content key; then AES-CBC over the content.
//!
//! The envelope is untrusted bytes: [`parse`] reads only what it needs with a strict DER
//! reader (definite lengths only), and every failure is an error, never a panic (fuzz target
//! `updater/fuzz/fuzz_targets/cms_envelope.rs`).

use openssl::ec::{EcKey, EcPoint};
use openssl::hash::{Hasher, MessageDigest};
use openssl::nid::Nid;
use openssl::pkey::{HasPrivate, PKey, PKeyRef};
use openssl::symm::Cipher;

/// What went wrong opening the envelope: the step and what it found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvelopeError(pub String);

fn bad(message: impl Into<String>) -> EnvelopeError {
    EnvelopeError(message.into())
}

/// One DER element: its tag, its content, and the whole encoding.
#[derive(Debug, Clone, Copy)]
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
    encoding: &'a [u8],
}

/// Reads consecutive DER elements from a byte string.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element (single-byte tags, definite lengths of up to 4 bytes).
    fn next(&mut self, what: &str) -> Result<Element<'a>, EnvelopeError> {
        let truncated = || bad(format!("{what}: truncated"));
        let (&tag, after_tag) = self.rest.split_first().ok_or_else(truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(bad(format!("{what}: multi-byte tag")));
        }
        let (&first, mut after_length) = after_tag.split_first().ok_or_else(truncated)?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return Err(bad(format!("{what}: indefinite or oversized length")));
            }
            let bytes = after_length.get(..count).ok_or_else(truncated)?;
            after_length = &after_length[count..];
            bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
        };
        let content = after_length.get(..length).ok_or_else(truncated)?;
        let header = self.rest.len() - after_length.len();
        let encoding = &self.rest[..header + length];
        self.rest = &after_length[length..];
        Ok(Element {
            tag,
            content,
            encoding,
        })
    }

    /// The next element, which must have `tag`.
    fn expect(&mut self, tag: u8, what: &str) -> Result<Element<'a>, EnvelopeError> {
        let element = self.next(what)?;
        if element.tag != tag {
            return Err(bad(format!(
                "{what}: tag 0x{:02x} where 0x{tag:02x} belongs",
                element.tag
            )));
        }
        Ok(element)
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const BIT_STRING: u8 = 0x03;

/// DER contents of the object identifiers this module knows.
mod oids {
    /// id-envelopedData 1.2.840.113549.1.7.3
    pub const ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
    /// rsaEncryption 1.2.840.113549.1.1.1 (PKCS #1 v1.5 key transport)
    pub const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// dhSinglePass-stdDH-sha1kdf-scheme 1.3.133.16.840.63.0.2 (OpenSSL's and so `rauc
    /// encrypt`'s default)
    pub const ECDH_SHA1_KDF: &[u8] = &[0x2b, 0x81, 0x05, 0x10, 0x86, 0x48, 0x3f, 0x00, 0x02];
    /// dhSinglePass-stdDH-sha256kdf-scheme 1.3.132.1.11.1
    pub const ECDH_SHA256_KDF: &[u8] = &[0x2b, 0x81, 0x04, 0x01, 0x0b, 0x01];
    /// dhSinglePass-stdDH-sha384kdf-scheme 1.3.132.1.11.2
    pub const ECDH_SHA384_KDF: &[u8] = &[0x2b, 0x81, 0x04, 0x01, 0x0b, 0x02];
    /// dhSinglePass-stdDH-sha512kdf-scheme 1.3.132.1.11.3
    pub const ECDH_SHA512_KDF: &[u8] = &[0x2b, 0x81, 0x04, 0x01, 0x0b, 0x03];
    /// The AES arc 2.16.840.1.101.3.4.1: id-aes{128,192,256}-wrap end in 5, 25, 45,
    /// aes-{128,192,256}-cbc in 2, 22, 42.
    pub const AES_PREFIX: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01];
}

/// One key-agreement recipient of an envelope, as read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAgreement<'a> {
    /// The originator's (ephemeral) public point, uncompressed.
    pub originator_point: &'a [u8],
    /// `ukm`, the user keying material, when present.
    pub ukm: Option<&'a [u8]>,
    /// The KDF's hash (`sha1`, `sha256`, `sha384`, `sha512`).
    pub kdf_digest: &'static str,
    /// The key-wrap AlgorithmIdentifier, whole (it goes into `ECC-CMS-SharedInfo`).
    pub wrap_algorithm: &'a [u8],
    /// The wrap key's length in bytes (16, 24, 32).
    pub wrap_key_len: usize,
    /// The recipients' wrapped content keys: `(rid encoding, encrypted key)`.
    pub encrypted_keys: Vec<(&'a [u8], &'a [u8])>,
}

/// What [`parse`] finds in an EnvelopedData ContentInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// Its key-agreement recipient infos.
    pub agreements: Vec<KeyAgreement<'a>>,
    /// The RSA-encrypted content keys of its key-transport recipient infos (rsaEncryption).
    pub transported_keys: Vec<&'a [u8]>,
    /// The content cipher's key length in bytes (AES-CBC: 16, 24, 32).
    pub content_key_len: usize,
    /// The content cipher's IV.
    pub iv: &'a [u8],
    /// The encrypted content (primitive or chunked, joined).
    pub encrypted_content: Vec<u8>,
}

/// Reads the EnvelopedData ContentInfo `der`.
pub fn parse(der: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    let mut outer = Reader::new(der);
    let content_info = outer.expect(SEQUENCE, "ContentInfo")?;
    let mut fields = Reader::new(content_info.content);
    if fields.expect(OID, "contentType")?.content != oids::ENVELOPED_DATA {
        return Err(bad("contentType: not EnvelopedData"));
    }
    let explicit = fields.expect(0xa0, "content")?;
    let enveloped = Reader::new(explicit.content).expect(SEQUENCE, "EnvelopedData")?;
    let mut fields = Reader::new(enveloped.content);
    fields.expect(INTEGER, "version")?;
    if fields.peek_tag() == Some(0xa0) {
        fields.next("originatorInfo")?;
    }
    let recipients = fields.expect(SET, "recipientInfos")?;
    let mut agreements = Vec::new();
    let mut transported_keys = Vec::new();
    let mut infos = Reader::new(recipients.content);
    while !infos.is_empty() {
        let info = infos.next("RecipientInfo")?;
        match info.tag {
            SEQUENCE => transported_keys.extend(key_transport(info.content)?),
            0xa1 => agreements.push(key_agreement(info.content)?),
            _ => {}
        }
    }
    let (content_key_len, iv, encrypted_content) =
        encrypted_content_info(fields.expect(SEQUENCE, "encryptedContentInfo")?.content)?;
    Ok(Envelope {
        agreements,
        transported_keys,
        content_key_len,
        iv,
        encrypted_content,
    })
}

/// The AES key length named by the last arc of an AES OID under `prefix` (`arcs` lists the
/// arcs for 128, 192, 256 bits).
fn aes_key_len(oid: &[u8], arcs: [u8; 3], what: &str) -> Result<usize, EnvelopeError> {
    let (last, prefix) = oid
        .split_last()
        .ok_or_else(|| bad(format!("{what}: empty OID")))?;
    if prefix != oids::AES_PREFIX {
        return Err(bad(format!("{what}: not an AES algorithm")));
    }
    match arcs.iter().position(|arc| arc == last) {
        Some(index) => Ok(16 + 8 * index),
        None => Err(bad(format!("{what}: unsupported AES mode"))),
    }
}

/// The encrypted key of a `KeyTransRecipientInfo` (its content), if it is RSA PKCS #1 v1.5.
fn key_transport(content: &[u8]) -> Result<Option<&[u8]>, EnvelopeError> {
    let mut fields = Reader::new(content);
    fields.expect(INTEGER, "ktri version")?;
    fields.next("ktri rid")?;
    let algorithm = fields.expect(SEQUENCE, "ktri keyEncryptionAlgorithm")?;
    let oid = Reader::new(algorithm.content).expect(OID, "ktri keyEncryptionAlgorithm")?;
    let key = fields.expect(OCTET_STRING, "ktri encryptedKey")?;
    Ok((oid.content == oids::RSA_ENCRYPTION).then_some(key.content))
}

/// `KeyAgreeRecipientInfo` content (after the `[1]` tag).
fn key_agreement(content: &[u8]) -> Result<KeyAgreement<'_>, EnvelopeError> {
    let mut fields = Reader::new(content);
    fields.expect(INTEGER, "kari version")?;
    let originator = fields.expect(0xa0, "originator")?;
    let key = Reader::new(originator.content).expect(0xa1, "originatorKey")?;
    let mut key_fields = Reader::new(key.content);
    key_fields.expect(SEQUENCE, "originatorKey algorithm")?;
    let bits = key_fields.expect(BIT_STRING, "originatorKey publicKey")?;
    let originator_point = match bits.content.split_first() {
        Some((0, point)) if !point.is_empty() => point,
        _ => return Err(bad("originatorKey publicKey: not a whole-byte point")),
    };
    let ukm = if fields.peek_tag() == Some(0xa1) {
        let explicit = fields.next("ukm")?;
        Some(
            Reader::new(explicit.content)
                .expect(OCTET_STRING, "ukm")?
                .content,
        )
    } else {
        None
    };
    let algorithm = fields.expect(SEQUENCE, "keyEncryptionAlgorithm")?;
    let mut algorithm_fields = Reader::new(algorithm.content);
    let scheme = algorithm_fields
        .expect(OID, "key agreement scheme")?
        .content;
    let kdf_digest = match scheme {
        s if s == oids::ECDH_SHA1_KDF => "sha1",
        s if s == oids::ECDH_SHA256_KDF => "sha256",
        s if s == oids::ECDH_SHA384_KDF => "sha384",
        s if s == oids::ECDH_SHA512_KDF => "sha512",
        _ => {
            return Err(bad(
                "key agreement scheme: not standard ECDH with an X9.63 KDF",
            ))
        }
    };
    let wrap = algorithm_fields.expect(SEQUENCE, "key wrap algorithm")?;
    let wrap_oid = Reader::new(wrap.content).expect(OID, "key wrap algorithm")?;
    let wrap_key_len = aes_key_len(wrap_oid.content, [5, 25, 45], "key wrap algorithm")?;
    let keys = fields.expect(SEQUENCE, "recipientEncryptedKeys")?;
    let mut encrypted_keys = Vec::new();
    let mut entries = Reader::new(keys.content);
    while !entries.is_empty() {
        let entry = entries.expect(SEQUENCE, "RecipientEncryptedKey")?;
        let mut entry_fields = Reader::new(entry.content);
        let rid = entry_fields.next("rid")?;
        let key = entry_fields.expect(OCTET_STRING, "encryptedKey")?;
        encrypted_keys.push((rid.encoding, key.content));
    }
    Ok(KeyAgreement {
        originator_point,
        ukm,
        kdf_digest,
        wrap_algorithm: wrap.encoding,
        wrap_key_len,
        encrypted_keys,
    })
}

/// `(content key length, IV, encrypted content)` of an `EncryptedContentInfo`.
fn encrypted_content_info(content: &[u8]) -> Result<(usize, &[u8], Vec<u8>), EnvelopeError> {
    let mut fields = Reader::new(content);
    fields.expect(OID, "encrypted contentType")?;
    let algorithm = fields.expect(SEQUENCE, "contentEncryptionAlgorithm")?;
    let mut algorithm_fields = Reader::new(algorithm.content);
    let oid = algorithm_fields.expect(OID, "contentEncryptionAlgorithm")?;
    let key_len = aes_key_len(oid.content, [2, 22, 42], "contentEncryptionAlgorithm")?;
    let iv = algorithm_fields.expect(OCTET_STRING, "content IV")?.content;
    if iv.len() != 16 {
        return Err(bad("content IV: not 16 bytes"));
    }
    let encrypted = fields.next("encryptedContent")?;
    let bytes = match encrypted.tag {
        0x80 => encrypted.content.to_vec(),
        0xa0 => {
            let mut joined = Vec::new();
            let mut chunks = Reader::new(encrypted.content);
            while !chunks.is_empty() {
                joined.extend_from_slice(chunks.expect(OCTET_STRING, "content chunk")?.content);
            }
            joined
        }
        _ => return Err(bad("encryptedContent: absent or of another kind")),
    };
    Ok((key_len, iv, bytes))
}

/// DER length octets of `len`.
fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes: Vec<u8> = len
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_length(content.len()));
    out.extend_from_slice(content);
    out
}

/// `ECC-CMS-SharedInfo` (RFC 5753 7.2) for `agreement`.
fn shared_info(agreement: &KeyAgreement<'_>) -> Vec<u8> {
    let mut content = agreement.wrap_algorithm.to_vec();
    if let Some(ukm) = agreement.ukm {
        content.extend(der(0xa0, &der(OCTET_STRING, ukm)));
    }
    let bits = u32::try_from(agreement.wrap_key_len * 8).unwrap_or(0);
    content.extend(der(0xa2, &der(OCTET_STRING, &bits.to_be_bytes())));
    der(SEQUENCE, &content)
}

/// ANSI X9.63 KDF: `len` bytes of hash(Z || counter || shared info), counter from 1.
fn x963_kdf(
    digest: MessageDigest,
    secret: &[u8],
    info: &[u8],
    len: usize,
) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::with_capacity(len);
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut hasher = Hasher::new(digest).map_err(|e| bad(format!("KDF: {e}")))?;
        for part in [secret, &counter.to_be_bytes(), info] {
            hasher.update(part).map_err(|e| bad(format!("KDF: {e}")))?;
        }
        out.extend_from_slice(&hasher.finish().map_err(|e| bad(format!("KDF: {e}")))?);
        counter += 1;
    }
    out.truncate(len);
    Ok(out)
}

/// The envelope's content, opened with `key` (an EC or RSA private key, possibly held in a
/// TPM), trying every recipient entry of the key's kind: the key wrap's integrity check (EC)
/// or the padding (RSA, then the content's) tells the entry made for this key.
pub fn open<T: HasPrivate>(der_bytes: &[u8], key: &PKeyRef<T>) -> Result<Vec<u8>, EnvelopeError> {
    let envelope = parse(der_bytes)?;
    let candidates: Vec<Result<Option<Vec<u8>>, EnvelopeError>> = match key.id() {
        openssl::pkey::Id::EC => envelope
            .agreements
            .iter()
            .map(|agreement| unwrap_content_key(agreement, key))
            .collect(),
        openssl::pkey::Id::RSA => envelope
            .transported_keys
            .iter()
            .map(|encrypted| {
                private_operation(key, PrivateOperation::RsaDecrypt(encrypted))
                    .map(Some)
                    .map_err(|e| bad(format!("RSA decryption of the content key: {e}")))
            })
            .collect(),
        _ => return Err(bad("the key is neither EC nor RSA")),
    };
    let mut last = bad("no recipient entry for this kind of key");
    for candidate in candidates {
        let content_key = match candidate {
            Ok(Some(content_key)) => content_key,
            Ok(None) => continue,
            Err(error) => {
                last = error;
                continue;
            }
        };
        let cipher = match content_key.len() {
            len if len != envelope.content_key_len => {
                last = bad("content key: wrong length for the content cipher");
                continue;
            }
            16 => Cipher::aes_128_cbc(),
            24 => Cipher::aes_192_cbc(),
            _ => Cipher::aes_256_cbc(),
        };
        match openssl::symm::decrypt(
            cipher,
            &content_key,
            Some(envelope.iv),
            &envelope.encrypted_content,
        ) {
            Ok(content) => return Ok(content),
            Err(e) => last = bad(format!("decrypting the content: {e}")),
        }
    }
    Err(last)
}

extern "C" {
    fn EVP_PKEY_CTX_new_from_pkey(
        libctx: *mut openssl_sys::OSSL_LIB_CTX,
        pkey: *mut openssl_sys::EVP_PKEY,
        propquery: *const std::ffi::c_char,
    ) -> *mut openssl_sys::EVP_PKEY_CTX;
}

/// The one operation with the device's private key.
enum PrivateOperation<'a> {
    /// ECDH with this peer.
    Derive(&'a PKeyRef<openssl::pkey::Public>),
    /// RSA PKCS #1 v1.5 decryption of these bytes.
    RsaDecrypt(&'a [u8]),
}

/// Runs `operation` with `key` in a context asking for the `tpm2` provider first, so a key the
/// TPM holds is used by the TPM (a context made from the key alone lets OpenSSL 3.0 pick the
/// default provider, which cannot use it); a software key is used by the default provider.
fn private_operation<T: HasPrivate>(
    key: &PKeyRef<T>,
    operation: PrivateOperation<'_>,
) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    use foreign_types::ForeignTypeRef;
    struct Context(*mut openssl_sys::EVP_PKEY_CTX);
    impl Drop for Context {
        fn drop(&mut self) {
            // SAFETY: a context this function created and nothing else frees.
            unsafe { openssl_sys::EVP_PKEY_CTX_free(self.0) }
        }
    }
    let check = |result: std::ffi::c_int| match result {
        1 => Ok(()),
        _ => Err(openssl::error::ErrorStack::get()),
    };
    // SAFETY: `key` is a live EVP_PKEY for the call; the query is a NUL-terminated literal.
    let raw = unsafe {
        EVP_PKEY_CTX_new_from_pkey(
            std::ptr::null_mut(),
            key.as_ptr(),
            c"?provider=tpm2".as_ptr(),
        )
    };
    if raw.is_null() {
        return Err(openssl::error::ErrorStack::get());
    }
    let context = Context(raw);
    let mut len = 0usize;
    // SAFETY: `context` is a valid context for the calls; the peer and the input bytes are live
    // for them; `len` and the output buffer are ours, the buffer sized by the first call.
    unsafe {
        let mut out = match operation {
            PrivateOperation::Derive(peer) => {
                check(openssl_sys::EVP_PKEY_derive_init(context.0))?;
                check(openssl_sys::EVP_PKEY_derive_set_peer(
                    context.0,
                    peer.as_ptr(),
                ))?;
                check(openssl_sys::EVP_PKEY_derive(
                    context.0,
                    std::ptr::null_mut(),
                    &mut len,
                ))?;
                let mut out = vec![0u8; len];
                check(openssl_sys::EVP_PKEY_derive(
                    context.0,
                    out.as_mut_ptr(),
                    &mut len,
                ))?;
                out
            }
            PrivateOperation::RsaDecrypt(input) => {
                check(openssl_sys::EVP_PKEY_decrypt_init(context.0))?;
                check(openssl_sys::EVP_PKEY_CTX_set_rsa_padding(
                    context.0,
                    openssl_sys::RSA_PKCS1_PADDING,
                ))?;
                let (input, input_len) = (input.as_ptr(), input.len());
                check(openssl_sys::EVP_PKEY_decrypt(
                    context.0,
                    std::ptr::null_mut(),
                    &mut len,
                    input,
                    input_len,
                ))?;
                let mut out = vec![0u8; len];
                check(openssl_sys::EVP_PKEY_decrypt(
                    context.0,
                    out.as_mut_ptr(),
                    &mut len,
                    input,
                    input_len,
                ))?;
                out
            }
        };
        out.truncate(len);
        Ok(out)
    }
}

/// The curve of an uncompressed point by its length (P-256, P-384, P-521: what RAUC's
/// recipients use).
fn curve_of(point: &[u8]) -> Result<openssl::ec::EcGroup, EnvelopeError> {
    let nid = match point.len() {
        65 => Nid::X9_62_PRIME256V1,
        97 => Nid::SECP384R1,
        133 => Nid::SECP521R1,
        other => {
            return Err(bad(format!(
                "originator key: a {other}-byte point on no known curve"
            )))
        }
    };
    openssl::ec::EcGroup::from_curve_name(nid).map_err(|e| bad(format!("originator key: {e}")))
}

/// The content key of `agreement` for `key`: `Ok(None)` when it has no entry.
fn unwrap_content_key<T: HasPrivate>(
    agreement: &KeyAgreement<'_>,
    key: &PKeyRef<T>,
) -> Result<Option<Vec<u8>>, EnvelopeError> {
    if agreement.encrypted_keys.is_empty() {
        return Ok(None);
    }
    fn crypto(step: &'static str) -> impl Fn(openssl::error::ErrorStack) -> EnvelopeError {
        move |e| bad(format!("{step}: {e}"))
    }
    let group = curve_of(agreement.originator_point)?;
    let group = group.as_ref();
    let mut context = openssl::bn::BigNumContext::new().map_err(crypto("key agreement"))?;
    let point = EcPoint::from_bytes(group, agreement.originator_point, &mut context)
        .map_err(crypto("originator key"))?;
    // Through its SubjectPublicKeyInfo, so OpenSSL decodes it into a provider's key: a
    // provider-held private key (the TPM's) derives only with such a peer.
    let peer = EcKey::from_public_key(group, &point)
        .and_then(|key| key.public_key_to_der())
        .and_then(|spki| PKey::public_key_from_der(&spki))
        .map_err(crypto("originator key"))?;
    let secret =
        private_operation(key, PrivateOperation::Derive(&peer)).map_err(crypto("key agreement"))?;
    let digest = match agreement.kdf_digest {
        "sha384" => MessageDigest::sha384(),
        "sha512" => MessageDigest::sha512(),
        "sha256" => MessageDigest::sha256(),
        _ => MessageDigest::sha1(),
    };
    let kek = x963_kdf(
        digest,
        &secret,
        &shared_info(agreement),
        agreement.wrap_key_len,
    )?;
    let wrap_key = openssl::aes::AesKey::new_decrypt(&kek)
        .map_err(|_| bad("key wrap: the derived key is unusable"))?;
    let mut last = bad("key unwrap failed");
    for (_, wrapped) in &agreement.encrypted_keys {
        if wrapped.len() < 24 || wrapped.len() % 8 != 0 {
            last = bad("encryptedKey: not a wrapped key");
            continue;
        }
        let mut content_key = vec![0u8; wrapped.len() - 8];
        match openssl::aes::unwrap_key(&wrap_key, None, &mut content_key, wrapped) {
            Ok(len) => {
                content_key.truncate(len);
                return Ok(Some(content_key));
            }
            Err(_) => last = bad("key unwrap: the integrity check failed (another key)"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::cms::{CMSOptions, CmsContentInfo};
    use openssl::ec::EcGroup;
    use openssl::stack::Stack;
    use openssl::x509::X509;

    fn recipient(name: &str) -> (PKey<openssl::pkey::Private>, X509) {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        certified(
            name,
            PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap(),
        )
    }

    fn rsa_recipient(name: &str) -> (PKey<openssl::pkey::Private>, X509) {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        certified(name, PKey::from_rsa(rsa).unwrap())
    }

    fn certified(
        name: &str,
        key: PKey<openssl::pkey::Private>,
    ) -> (PKey<openssl::pkey::Private>, X509) {
        let mut builder = openssl::x509::X509Builder::new().unwrap();
        let mut subject = openssl::x509::X509NameBuilder::new().unwrap();
        subject.append_entry_by_text("CN", name).unwrap();
        let subject = subject.build();
        builder.set_subject_name(&subject).unwrap();
        builder.set_issuer_name(&subject).unwrap();
        builder.set_pubkey(&key).unwrap();
        builder
            .set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        builder
            .set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        builder.sign(&key, MessageDigest::sha256()).unwrap();
        (key, builder.build())
    }

    fn envelope_for(certs: &[&X509], content: &[u8]) -> Vec<u8> {
        let mut stack = Stack::new().unwrap();
        for cert in certs {
            stack.push((*cert).clone()).unwrap();
        }
        CmsContentInfo::encrypt(&stack, content, Cipher::aes_256_cbc(), CMSOptions::BINARY)
            .unwrap()
            .to_der()
            .unwrap()
    }

    #[test]
    fn opens_what_openssl_enveloped_for_one_of_two_recipients_and_refuses_a_stranger() {
        let (key, cert) = recipient("device");
        let (_, other) = recipient("other");
        let (stranger, _) = recipient("stranger");
        let content = b"the signed CMS inside".repeat(100);
        let der = envelope_for(&[&other, &cert], &content);
        assert_eq!(open(&der, &key).unwrap(), content);
        assert!(open(&der, &stranger).is_err());
        // OpenSSL's own CMS code agrees.
        let cms = CmsContentInfo::from_der(&der).unwrap();
        assert_eq!(cms.decrypt_without_cert_check(&key).unwrap(), content);
    }

    #[test]
    fn opens_an_rsa_recipient_among_ec_ones_and_refuses_another_rsa_key() {
        let (key, cert) = rsa_recipient("rsa device");
        let (_, ec) = recipient("ec device");
        let (stranger, _) = rsa_recipient("rsa stranger");
        let content = b"signed".repeat(300);
        let der = envelope_for(&[&ec, &cert], &content);
        assert_eq!(open(&der, &key).unwrap(), content);
        assert!(open(&der, &stranger).is_err());
    }

    #[test]
    fn every_truncation_and_flipped_byte_is_an_error_not_a_panic() {
        let (key, cert) = recipient("device");
        let der = envelope_for(&[&cert], b"content");
        for len in 0..der.len() {
            assert!(open(&der[..len], &key).is_err(), "prefix {len}");
        }
        // A flipped byte of the structure, the originator key or the wrapped key is refused;
        // one of the CBC content may decrypt to other bytes (an envelope has no integrity of
        // its own: the signature inside is what is checked next). None may panic.
        let mut refused = 0;
        for at in 0..der.len() {
            let mut flipped = der.clone();
            flipped[at] ^= 0x01;
            refused += usize::from(open(&flipped, &key).is_err());
        }
        assert!(
            refused > der.len() / 2,
            "only {refused} of {} flips refused",
            der.len()
        );
    }
}
