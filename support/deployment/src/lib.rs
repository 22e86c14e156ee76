//! The signed app deployment document: the one definition of what the cloud tells a device
//! to run in an app slot, shared by the signer (`testudo deploy`) and the verifier on the
//! device (init, which owns the slots). The agent relays it through the device twin's
//! desired properties and is not trusted with it.
//!
//! - [`document`]: the document ([`Deployment`]: slot, system, serial, and an app to
//!   deploy with the routes it asks for, or a removal) and its JSON form.
//! - [`jws`]: the token, a compact JWS signed with Ed25519 (`alg` [`ALGORITHM`], `typ`
//!   [`TOKEN_TYPE`]): [`sign`] and [`verify`], which reads nothing of the document before the
//!   signature has verified.
//! - [`keys`]: the key id (RFC 7638 thumbprint), JWK form, and the PEM files of the deploy
//!   key.
//! - [`device`]: the pure checks init makes against its own state
//!   ([`check_against_device`]) and the fetched module ([`App::check_module`]).
//! - [`session`]: what init answers the relay of a token over its `deployment` capability
//!   ([`SessionState`]).
//! - [`twin`]: where tokens sit in the device twin's desired properties
//!   ([`twin::desired_deployments`]) and the shape of what the device reports
//!   ([`twin::reported_patch`]).
//! - `error`: [`DeploymentError`], a variant per failing step, and [`Refusal`], each reason
//!   a verified deployment does not fit the device.
//!
//! `docs/plan-format.md` (device contract) documents the format; decision 0084 the choices.

pub mod device;
pub mod document;
mod error;
pub mod jws;
pub mod keys;
pub mod session;
pub mod twin;

#[cfg(test)]
mod tests;

/// The deploy key's halves (Ed25519), as the functions here take and return them.
pub use ed25519_dalek::{SigningKey, VerifyingKey};

pub use device::{check_against_device, ModuleDigest, ModuleHasher};
pub use document::{Action, App, AppRelease, Deployment};
pub use error::{DeploymentError, Refusal, Segment};
pub use jws::{sign, verify, VerifiedDeployment};
pub use keys::{
    key_id, public_jwk, public_key_from_pem, read_public_key, read_signing_key,
    signing_key_from_pem,
};
pub use session::SessionState;

/// The document format this build reads and writes (the document's `format`). Bump on any
/// change of meaning; a device refuses other formats by number.
pub const FORMAT: u32 = 1;

/// The one signature algorithm (JWS `alg`): Ed25519 (RFC 8037). Every other value, `none`
/// included, is refused.
pub const ALGORITHM: &str = "EdDSA";

/// The token type (JWS `typ`), required and compared exactly: a token signed with the deploy
/// key for another purpose (the image manifest is signed with it too, though not as a JWS)
/// is never taken for a deployment.
pub const TOKEN_TYPE: &str = "testudo-deployment+jws";

/// Most bytes of a token, checked before anything is decoded. The twin's desired properties
/// are at most 32 KiB in all, and a device has a token per app slot besides its other
/// desired properties: 8 KiB leaves room for three slots and the rest. A token for the
/// gateway example's slot (four routes, a URL) is about 1.2 KiB; 8 KiB holds some fifty
/// routes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Deepest nesting of objects and arrays in the header and the document (`{}` is 1): the
/// document's deepest value, a route's `allow` list, is at 4. Checked before parsing.
pub const MAX_NESTING: usize = 4;
