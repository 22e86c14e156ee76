//! IoT Hub's service API from the operator's side, for the CLI's commands that drive a device
//! through its twin (`testudo deploy`): against a real hub or the emulator (`testudo hub
//! serve`), which answers the same requests.
//!
//! - [`connection_string`]: a service connection string (`HostName=...;SharedAccessKeyName=
//!   ...;SharedAccessKey=...`), its key never printed.
//! - [`sas`]: the service SAS token.
//! - [`client`]: [`ServiceClient`], blocking HTTPS/1.1 (rustls), one request per connection:
//!   read a twin, patch its desired properties.
//! - `error`: [`ServiceError`], a variant per failing step.

pub mod client;
pub mod connection_string;
mod error;
pub mod sas;

pub use client::ServiceClient;
pub use connection_string::ServiceConnectionString;
pub use error::ServiceError;

/// The service API version the requests name (as the Azure SDKs of 2021 and later).
pub const API_VERSION: &str = "2021-04-12";
