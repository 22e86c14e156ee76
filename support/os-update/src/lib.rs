//! OS updates the Azure Device Update (ADU) way: the one definition of what the cloud hands
//! a device to replace its OS, shared by the signer (`testudo deploy os`), the relay (the
//! agent, which reads the twin and downloads, untrusted) and the verifier (the updater
//! component, which owns the rootfs slots).
//!
//! - [`manifest`]: ADU's update manifest (version 5) with its one testudo step, handler
//!   [`manifest::HANDLER`]: [`manifest::parse`], [`manifest::for_bundle`],
//!   [`ImportManifest::bundle_step`], [`ImportManifest::is_compatible`].
//! - [`signature`]: ADU's signature chain, RS256 JWS by a signing key whose JWK (`sjwk`) a
//!   root key signs: [`signature::sign`] and [`signature::verify`], which parses nothing of
//!   the manifest before the chain and the manifest's hash have verified; the device's root
//!   keys as a JWK set ([`RootKeys`]).
//! - [`keys`]: the key id (RFC 7638 thumbprint) and the key files of a keys directory
//!   ([`keys::init_dev_update_keys`], [`keys::load_signing_chain`],
//!   [`keys::read_root_jwks`]).
//! - [`twin`]: the `deviceUpdate` twin component: the desired `service`
//!   ([`twin::desired_update`]), its acknowledgement, and the reported `agent`
//!   ([`twin::AgentReport`]).
//! - [`result`]: ADU's result codes and testudo's extended result code per failed step
//!   ([`FailedStep`]).
//! - [`update_scheme`]: the `update` capability the updater component serves to the relay.
//! - `jwk`: RSA public keys as JWKs, and the bounds every RSA key here is held to.
//! - `json`: defensive JSON reading (nesting bound, maps refusing repeated keys).
//! - `error`: [`OsUpdateError`], a variant per failing step.
//!
//! `jwk`, [`keys`] and [`signature`] need OpenSSL and come with the `crypto` feature (on by
//! default); the relay reads the twin and speaks the `update` capability without it.
//!
//! `docs/plan-format.md` (device contract) documents the shapes; decision 0091 the choices.

mod error;
mod json;
/// The one signature algorithm (JWS `alg`) of both tokens of a manifest signature.
pub const ALGORITHM: &str = "RS256";

/// Most bytes of `updateManifestSignature`, checked before anything is decoded. With two
/// 4096-bit keys the chain is about 3 KiB; ADU's own are about 2.5 KiB.
pub const MAX_SIGNATURE_BYTES: usize = 16 * 1024;

#[cfg(feature = "crypto")]
mod jwk;
#[cfg(feature = "crypto")]
pub mod keys;
pub mod manifest;
pub mod result;
#[cfg(feature = "crypto")]
pub mod signature;
pub mod twin;
pub mod update_scheme;

pub use error::{Jws, KeyRole, OsUpdateError, Segment};
#[cfg(feature = "crypto")]
pub use jwk::{MAX_RSA_BITS, MIN_RSA_BITS};
#[cfg(feature = "crypto")]
pub use keys::{key_id, UpdateKeyFiles};
pub use manifest::{BundleStep, FileEntry, ImportManifest, ManifestStep, UpdateId};
pub use result::FailedStep;
#[cfg(feature = "crypto")]
pub use signature::{RootKeys, SigningChain, VerifiedManifest};
