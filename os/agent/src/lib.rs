//! testudo's cloud agent: keeps a device connected to Azure IoT Hub (or `testudo hub`) over
//! MQTT 3.1.1 + TLS and its device twin in sync.
//!
//! - [`connection_string`] parses device connection strings; [`sas`] builds SAS tokens with a
//!   [`sas::SasSigner`] — a software key or a key held in the TPM ([`tpm`]).
//! - [`agent`] runs one device ([`config::AgentConfig`]): connect, subscribe, GET the twin,
//!   deliver desired changes in strict `$version` order ([`twin::DesiredTracker`]), send reported
//!   patches and telemetry from a bounded offline queue ([`queue`]), renew tokens, reconnect with
//!   backoff and jitter ([`backoff`]), and wait out throttling. The application holds a
//!   [`handle::AgentHandle`] and reads [`handle::AgentEvent`]s.
//! - [`echo`] is the plumbing example (report device info, echo desired properties);
//!   [`options`] turns command-line choices into a configuration; [`tls`] builds rustls configs.
//! - [`dps`] registers a device with the Device Provisioning Service over MQTT; TPM attestation
//!   goes over HTTPS ([`dps_tpm`] on a host, [`dps_tpm_route`] on a device, both speaking
//!   [`dps_http`]).
//! - [`topics`] holds IoT Hub's topic names and parses what the hub publishes.
//! - [`component`] is the agent as a testudo component (what `testudo-init` starts): it serves
//!   [`app_schemes`] (`telemetry`, `identity`) from the plan's [`cloud`] section, keeps
//!   telemetry in a persistent [`spool`] in its storage route, and reaches the hub only through
//!   its `net` route ([`dial`]); it logs through [`component_log`] and reports the device and
//!   answers its direct methods through [`device_management`].
//! - [`os_updates`] relays Azure Device Update OS updates from the twin's `deviceUpdate`
//!   component to the updater component's `update` capability (acknowledge, stage, download
//!   into the updater's staging file, install, reboot, cancel; that the hub is reached, part
//!   of a trial slot's health) and reports the updater's status in ADU's shape.
//! - [`module_fetch`] downloads an app's WASM module a verified deployment names, over HTTPS
//!   through the same `net` route, resuming interrupted transfers, in bounded memory, its size
//!   and sha256 checked as it streams; and the rest of an OS update bundle from a byte on,
//!   unchecked (the updater checks it).

pub mod agent;
pub mod app_deployments;
pub mod app_schemes;
pub mod backoff;
pub mod cloud;
pub mod component;
pub mod component_log;
pub mod config;
pub mod connection_string;
pub mod device_management;
pub mod dial;
pub mod dps;
pub mod dps_http;
pub mod dps_tpm;
pub mod dps_tpm_route;
pub mod echo;
pub mod error;
pub mod handle;
pub mod http_head;
pub mod module_fetch;
pub mod mqtt_loop;
pub mod options;
pub mod os_updates;
pub mod provisioning;
pub mod queue;
pub mod sas;
pub mod spool;
pub mod tls;
pub mod topics;
pub mod tpm;
pub mod tpm_commands;
pub mod tpm_route;
pub mod tpm_x509;
pub mod twin;

pub use agent::{
    spawn, Acknowledgement, AgentConfig, AgentEvent, AgentHandle, Authentication, MethodCall,
};
pub use connection_string::{ConnectionString, Credential};
pub use error::{AgentError, Result};
pub use module_fetch::{fetch_module, ModuleRequest, ModuleSink};
pub use sas::{SasSigner, SoftwareKey};
pub use tls::TlsSettings;
pub use twin::{ChangeKind, DesiredChange};
