//! Every environment variable init passes to a component. Each is written here once; no
//! other crate spells one of these names as a literal (`cargo xtask test` checks it).

/// The component's own name in the plan.
pub const COMPONENT: &str = "TESTUDO_COMPONENT";

/// The routed handles: `NAME=FD,…`, one per route, by the route's local name, at fds 3, 4, …
/// in the order of the names.
pub const HANDLES: &str = "TESTUDO_HANDLES";

/// The fd of a provider's control socket (only for components that provide capabilities):
/// init sends new root handles on it, each with its grant.
pub const SCHEME_FD: &str = "TESTUDO_SCHEME_FD";

/// The plan's `cloud` section, given to the component that provides the `identity`
/// interface (the cloud agent): the IoT Hub host name.
pub const CLOUD_HUB: &str = "TESTUDO_CLOUD_HUB";
/// The device id (and DPS registration id).
pub const CLOUD_DEVICE_ID: &str = "TESTUDO_CLOUD_DEVICE_ID";
/// How the device proves its identity: `tpm_sas`, `sas` or `x509`.
pub const CLOUD_IDENTITY: &str = "TESTUDO_CLOUD_IDENTITY";
/// The DPS id scope (absent when the device is not provisioned through DPS).
pub const CLOUD_DPS_SCOPE: &str = "TESTUDO_CLOUD_DPS_SCOPE";
/// The MQTT port to dial (default 8883). Not set by init: a test setup whose hub listens
/// elsewhere puts it in the component's `env` (the `net` route's `allow` list must name the
/// same `HOST:PORT`).
pub const CLOUD_PORT: &str = "TESTUDO_CLOUD_PORT";

/// Every variable of this contract, for tools that check where they are spelled.
pub const ALL: &[&str] = &[
    COMPONENT,
    HANDLES,
    SCHEME_FD,
    CLOUD_HUB,
    CLOUD_DEVICE_ID,
    CLOUD_IDENTITY,
    CLOUD_DPS_SCOPE,
    CLOUD_PORT,
];
