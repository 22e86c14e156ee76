//! The fuzz keys: a fixed root key and signing key (RSA 2048, PKCS#8 PEM in `keys/`, made
//! for fuzzing only and trusted nowhere else), so corpus files can hold whole signatures
//! that verify, and the device's root key set of the fuzz targets.

use std::sync::OnceLock;

use openssl::pkey::{PKey, Private};
use testudo_os_update::keys::{key_id, public_half};
use testudo_os_update::{RootKeys, SigningChain};

const ROOT_PEM: &str = include_str!("../keys/root.pem");
const SIGNING_PEM: &str = include_str!("../keys/signing.pem");

/// A manifest the fuzz device would install (its bundle step, compatibility
/// `{"manufacturer":"testudo","model":"testudo-fuzz"}`).
pub const VALID_MANIFEST: &str = r#"{"manifestVersion":"5","updateId":{"provider":"testudo","name":"fuzz","version":"1.0.0"},"compatibility":[{"manufacturer":"testudo","model":"testudo-fuzz"}],"instructions":{"steps":[{"type":"inline","handler":"testudo/bundle:1","files":["bundle"],"handlerProperties":{"installedCriteria":"1.0.0"}}]},"files":{"bundle":{"fileName":"update.raucb","sizeInBytes":4096,"hashes":{"sha256":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}}},"createdDateTime":"2026-12-04T00:00:00Z"}"#;

fn private(pem: &str) -> PKey<Private> {
    PKey::private_key_from_pem(pem.as_bytes()).expect("the fuzz keys are PKCS#8 PEM")
}

/// The fuzz signing chain, each key under its RFC 7638 key id (read once).
pub fn chain() -> &'static SigningChain {
    static CHAIN: OnceLock<SigningChain> = OnceLock::new();
    CHAIN.get_or_init(read_chain)
}

fn read_chain() -> SigningChain {
    let root = private(ROOT_PEM);
    let signing = private(SIGNING_PEM);
    let kid = |key: &PKey<Private>| {
        key_id(&public_half(key).expect("a public half")).expect("an RSA key id")
    };
    SigningChain {
        root_kid: kid(&root),
        signing_kid: kid(&signing),
        root,
        signing,
    }
}

/// The fuzz device's root key set: the fuzz root key (read once).
pub fn roots() -> &'static RootKeys {
    static ROOTS: OnceLock<RootKeys> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let chain = chain();
        let root = public_half(&chain.root).expect("a public half");
        let jwks =
            RootKeys::to_jwks(&[(chain.root_kid.clone(), root)]).expect("the fuzz root key set");
        RootKeys::from_jwks(jwks.as_bytes()).expect("the fuzz root key set reads")
    })
}
