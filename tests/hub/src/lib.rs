//! Local Azure IoT Hub emulator (a faithful fake: Azure cannot run here).
//!
//! Speaks IoT Hub's device protocol (MQTT 3.1.1 over TLS), the service REST API subset
//! (registry, twins, direct methods) over HTTPS, DPS symmetric-key and X.509 provisioning over
//! MQTT, and DPS TPM attestation over HTTPS ([`tpm_wire`] builds the TPM blobs), closely enough that Microsoft's own Python SDKs work against it unchanged.
//!
//! Rust API for other crates' tests (the emulator runs on its own runtime thread, so it
//! works from sync and async tests alike; bind port 0 and read the addresses back):
//!
//! ```no_run
//! use testudo_hub::{Emulator, EmulatorConfig, Faults};
//! # fn main() -> Result<(), testudo_hub::HubError> {
//! let dir = std::env::temp_dir().join("hub-doc");
//! let hub = Emulator::start(EmulatorConfig::new(&dir))?; // host "localhost", free ports
//! let device = hub.add_device("dev1")?;                  // SAS keys + connection string
//! // connect to hub.mqtt_addr with TLS name hub.host, trusting hub.ca_pem
//! hub.set_desired("dev1", &serde_json::json!({"interval": 5}))?; // pushed if connected
//! let twin = hub.twin("dev1")?;                          // service view, with $metadata
//! hub.set_faults(Faults { throttle: true, ..Faults::default() });
//! hub.drop_connections(Some("dev1"));
//! hub.shutdown();                                        // state stays in dir: restartable
//! # let _ = (device, twin); Ok(()) }
//! ```
//!
//! Fault injection is described in [`faults`]; the state directory layout in [`store`].

pub mod artifacts;
pub mod clock;
pub mod control;
mod dps;
pub mod dps_https;
pub mod emulator;
pub mod error;
pub mod faults;
pub mod hub;
pub mod mqtt;
pub mod registry;
pub mod sas;
pub mod service;
pub mod session;
pub mod store;
pub mod test_client;
pub mod tls;
pub mod tpm_wire;
pub mod twin;
pub mod x509_ca;

pub use emulator::{DeviceCredentials, Emulator, EmulatorConfig, RunningHub};
pub use error::{HubError, PacketError, TwinError};
pub use faults::Faults;
pub use hub::{Hub, MethodResponse, TelemetryMessage};

/// Formats an error with its chain of causes, `a: b: c`.
pub use testudo_error_chain::error_chain;
