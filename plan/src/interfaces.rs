//! The interface names of the capabilities testudo's own components provide, and what a
//! handle of each means. A route's `interface` must equal its provider's (checked by
//! `testudo check`); components and the WASM host match routes by these names. Each name is
//! written here once; no other crate spells one as a literal (`cargo xtask test` checks it).
//!
//! Conventions (stable; the WASM host maps its host functions onto them):
//!
//! - [`LOG`]: `write` one or more UTF-8 lines; the provider prefixes them with the consumer's
//!   name. `read` is refused.
//! - [`STORAGE`]: the root handle is the consumer's own directory. `open("name", rights)`
//!   opens (write rights: creates) a file; names are a single path component, no `/`, `.`
//!   or `..`. `read`/`write` move sequentially from offset 0; `open("name?truncate",
//!   Write|ReadWrite)` truncates first. `fstat` gives the size. `fsync` on a file makes its
//!   data durable (`fdatasync`), on the root handle the directory's entries (`fsync` of the
//!   directory); a file the driver creates has its directory entry made durable before
//!   `open` returns. `open("name?replace", Write)` starts an atomic replacement: writes go to
//!   a new hidden file, and its `fsync` puts it in place of `name` (rename, directory synced);
//!   closed without `fsync`, it is discarded. After a power cut `name` is old or new, whole.
//! - [`SENSOR`]: `read` on the root handle returns one reading as a UTF-8 line
//!   `<name> <value> <unit>\n` (e.g. `temperature 21.5 C`).
//! - [`TELEMETRY`]: `write` one message (a JSON document) per call.
//! - [`IDENTITY`]: `read` returns the device's cloud identity, one JSON object and a newline.
//! - [`TPM`]: `write` one TPM 2.0 command, then `read` its response.
//! - [`NET`]: `open_raw("tcp/HOST:PORT", ReadWrite)` returns a connected TCP socket if
//!   `HOST:PORT` is in the route's `allow` list; anything else is refused with `EACCES`.
//! - [`STATUS`] (served by init): `read` on the root handle returns one line per component,
//!   `name state restarts`, the state one of [`ComponentState`]'s labels
//!   ([`parse_status_line`]).
//! - [`POWER`] (served by init): `write` `reboot` or `poweroff` (one word, optionally with a
//!   newline) on the root handle; init acknowledges the write, then stops every component in
//!   reverse start order, syncs and unmounts the data partition and reboots or powers off.
//! - [`DEPLOYMENT`] (served by init, which owns the app slots): `read` on the root handle
//!   returns every slot's report, one JSON object (`{"<slot>": SlotReport}`, the shape of
//!   `testudo_deployment::twin::SlotReport`) and a newline. `open("<slot>", ReadWrite)` starts a
//!   deployment session for that slot: its first `write` is one signed token, whole; init
//!   verifies it before anything else happens. Each `read` then returns the session's state
//!   as one JSON object and a newline (`testudo_deployment::session::SessionState`): refused
//!   (with the reason), unchanged, the module wanted (URL, size, sha256), applying, started,
//!   applied or rolled back. While the module is wanted, further `write`s are its bytes in
//!   order (never more than its size) and `fsync` hands it over: init checks size and hash,
//!   stores it beside the slot's current app and switches. The holder only relays: init
//!   decides what runs.
//! - [`UPDATE`] (served by the updater component, which owns the rootfs slots and the boot
//!   selection): `write` one request, a JSON object whole
//!   (`testudo_os_update::update_scheme::UpdateRequest`: `stage` a workflow with its Azure
//!   Device Update manifest and signature, `install`, `reboot`, `cancel`, `connected`); `read`
//!   returns the status, one JSON object and a newline (`UpdateStatus`). While the phase is
//!   `downloading`, `open_raw("staged", Write)` gives a write-only descriptor of the staging
//!   file; the holder writes the bundle's bytes at their offsets and then asks to `install`.
//!   A request refused as a whole answers an errno: `ESRCH` (not the current workflow),
//!   `EAGAIN` (not in the phase the request needs), `EBUSY` (an install or a trial runs),
//!   `EINVAL` (not a request). The holder only relays: the updater verifies the manifest's
//!   signature before the download and the bundle (manifest hash, CMS signature, verity)
//!   before it writes the other slot.
//!
//! Components that expect a route of one of these interfaces look it up under the
//! interface's name as the local name (the agent's `uses.tpm`, `uses.net`, ...).

/// Log lines.
pub const LOG: &str = "log";
/// A private directory of files on the data partition.
pub const STORAGE: &str = "storage";
/// TPM 2.0 commands.
pub const TPM: &str = "tpm";
/// Outbound TCP connections to allowed destinations.
pub const NET: &str = "net";
/// Sensor readings.
pub const SENSOR: &str = "sensor";
/// Messages for the cloud (or for another app that consumes them).
pub const TELEMETRY: &str = "telemetry";
/// The device's cloud identity.
pub const IDENTITY: &str = "identity";
/// Init's view of every component's state.
pub const STATUS: &str = "status";
/// Power control, served by init: reboot or power off the device.
pub const POWER: &str = "power";
/// Signed app deployments into the plan's app slots, served by init.
pub const DEPLOYMENT: &str = "deployment";
/// OS updates into the other rootfs slot, served by the updater component.
pub const UPDATE: &str = "update";

/// The path a `net` handle opens for a TCP connection to `destination` (`HOST:PORT`).
pub fn net_tcp_path(destination: &str) -> String {
    format!("{NET_TCP_PREFIX}{destination}")
}

/// The prefix of [`net_tcp_path`]; the `net` provider strips it.
pub const NET_TCP_PREFIX: &str = "tcp/";

/// Every interface of this contract.
pub const ALL: &[&str] = &[
    LOG, STORAGE, TPM, NET, SENSOR, TELEMETRY, IDENTITY, STATUS, POWER, DEPLOYMENT, UPDATE,
];

/// A component's state as the [`STATUS`] interface reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ComponentState {
    /// Waiting for its dependencies or its first start (`waiting`).
    Waiting,
    /// Running (`running`).
    Running,
    /// Ended and waiting to be restarted (`backoff`).
    Backoff,
    /// Ended and not restarted, by its restart policy (`exited`).
    Exited,
    /// Given up on after too many restarts (`failed`).
    Failed,
    /// Could not be started on this machine (`not-started`).
    NotStarted,
    /// An app slot with nothing in it (`empty`).
    Empty,
}

impl ComponentState {
    /// Every state.
    pub const ALL: [ComponentState; 7] = [
        ComponentState::Waiting,
        ComponentState::Running,
        ComponentState::Backoff,
        ComponentState::Exited,
        ComponentState::Failed,
        ComponentState::NotStarted,
        ComponentState::Empty,
    ];

    /// The label in a status line.
    pub fn label(self) -> &'static str {
        match self {
            ComponentState::Waiting => "waiting",
            ComponentState::Running => "running",
            ComponentState::Backoff => "backoff",
            ComponentState::Exited => "exited",
            ComponentState::Failed => "failed",
            ComponentState::NotStarted => "not-started",
            ComponentState::Empty => "empty",
        }
    }

    /// The state a label names.
    pub fn from_label(label: &str) -> Option<ComponentState> {
        ComponentState::ALL
            .into_iter()
            .find(|state| state.label() == label)
    }
}

/// One line of the [`STATUS`] interface, `name state restarts`, as `(name, state, restarts)`;
/// None for anything else.
pub fn parse_status_line(line: &str) -> Option<(&str, ComponentState, u32)> {
    let mut words = line.split(' ');
    let name = words.next().filter(|name| !name.is_empty())?;
    let state = ComponentState::from_label(words.next()?)?;
    let restarts = words.next()?.parse().ok()?;
    words.next().is_none().then_some((name, state, restarts))
}

#[cfg(test)]
mod status_line_tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_anything_else_is_refused() {
        for state in ComponentState::ALL {
            let line = format!("agent {} 3", state.label());
            assert_eq!(parse_status_line(&line), Some(("agent", state, 3)));
        }
        for bad in [
            "",
            "agent",
            "agent running",
            "agent sleeping 1",
            "agent running -1",
            "agent running 1 extra",
            " running 1",
        ] {
            assert_eq!(parse_status_line(bad), None, "{bad:?}");
        }
    }
}
