//! What one app may use, as plain data: computed from its routes in the plan (or from
//! `testudo app run` flags), never from the environment of the host process.
//!
//! Route interfaces and what they become:
//! - `storage` → a preopened directory `/<local name>` (read-only unless the route can write);
//!   the host directory is `<storage root>/<provider>/<capability>/<app>`.
//! - `net` → outbound TCP to exactly the route's `allow` destinations (`host:port`), through
//!   `testudo:device/net` and, for components, `wasi:sockets` (`socket_addr_check`).
//! - `sensor` → `testudo:device/sensor`; the route's `allow` lists the channels (empty = all).
//! - `telemetry` → `testudo:device/telemetry`; publish goes to the first route with write
//!   rights (or, without one, to a `telemetry` capability the app provides itself), receive
//!   comes from the first route with read rights.
//! - `log` → the app's stdout/stderr reach the host's; without it they are discarded.
//!
//! Any other interface grants nothing to a WASM app.

use std::collections::BTreeSet;
use std::path::PathBuf;

use testudo_plan::interfaces;
use testudo_plan::plan::{ComponentKind, Plan, Rights, Run};

use crate::error::HostError;

/// Everything one app is granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Directories preopened for the app.
    pub dirs: Vec<DirGrant>,
    /// Outbound TCP destinations (`host:port`, as routed).
    pub net: BTreeSet<String>,
    /// Sensor reading, when routed.
    pub sensor: Option<SensorGrant>,
    /// Telemetry publish/receive, when routed.
    pub telemetry: Option<TelemetryGrant>,
    /// Whether stdout/stderr reach the host's (a `log` route, or always for `testudo app run`).
    pub stdio: bool,
    /// Environment variables, sorted by key.
    pub env: Vec<(String, String)>,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
}

/// One preopened directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// Directory on the host.
    pub host: PathBuf,
    /// Path the app sees, e.g. `/data`.
    pub guest: String,
    /// Whether the app may only read.
    pub read_only: bool,
}

/// Sensor channels the app may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensorGrant {
    /// The route's local name (which scheme handle reads go to).
    pub route: String,
    /// Allowed channels; empty means every channel of the provider.
    pub channels: BTreeSet<String>,
}

impl SensorGrant {
    /// Whether `channel` may be read.
    pub fn allows(&self, channel: &str) -> bool {
        self.channels.is_empty() || self.channels.contains(channel)
    }
}

/// Telemetry rights: which route publishing goes to and which receiving comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryGrant {
    /// Where `publish` goes: a `telemetry` route with write rights (its local name), or the
    /// app's own provided `telemetry` capability (its name); `None` = may not publish.
    pub publish: Option<String>,
    /// Where `receive` comes from: a `telemetry` route with read rights; `None` = may not.
    pub receive: Option<String>,
}

/// Where the host finds each WASM component's files when run from a plan.
#[derive(Debug, Clone)]
pub struct PlanPaths {
    /// Directory the plan's `run.module` paths are relative to (the image's app directory).
    pub app_root: PathBuf,
    /// Root of the storage provider's per-consumer directories.
    pub storage_root: PathBuf,
}

/// One WASM component of a plan, resolved: its module file, grants and plan limits.
#[derive(Debug, Clone)]
pub struct PlannedApp {
    /// Component name.
    pub name: String,
    /// The module or component file.
    pub module: PathBuf,
    /// What it may use.
    pub grants: Grants,
    /// Its limits, as the plan states them.
    pub limits: testudo_plan::plan::Limits,
    /// The `telemetry` capabilities it provides (served by the host, [`crate::provided`]).
    pub provided_telemetry: Vec<String>,
    /// The provided capability its `telemetry.publish` goes to (no write route says
    /// otherwise), if any.
    pub publishes_into_provided: Option<String>,
    /// Local names of its `net` routes, in plan order: the scheme handles outbound
    /// connections go through when `testudo-init` passed handles.
    pub net_routes: Vec<String>,
    /// Local name of its first `log` route: the scheme handle stdout/stderr go to when
    /// `testudo-init` passed handles.
    pub log_route: Option<String>,
}

impl PlannedApp {
    /// Resolves component `name` of `plan`.
    pub fn from_plan(plan: &Plan, name: &str, paths: &PlanPaths) -> Result<Self, HostError> {
        let component = plan
            .components
            .get(name)
            .ok_or_else(|| HostError::UnknownComponent {
                component: name.to_owned(),
            })?;
        let module = match (&component.kind, &component.run) {
            (ComponentKind::Wasm, Run::Wasm { module }) => paths.app_root.join(module),
            _ => {
                return Err(HostError::NotWasmComponent {
                    component: name.to_owned(),
                })
            }
        };
        let mut grants = Grants {
            env: component
                .env
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
            args: component.args.clone(),
            ..Grants::default()
        };
        let mut net_routes = Vec::new();
        let mut log_route = None;
        for (local, route) in &component.uses {
            match route.interface.as_str() {
                interfaces::STORAGE => grants.dirs.push(DirGrant {
                    host: testudo_plan::layout::storage_route_dir(
                        &paths.storage_root,
                        &route.component,
                        &route.capability,
                        name,
                    ),
                    guest: format!("/{local}"),
                    read_only: !route.rights.can_write(),
                }),
                interfaces::NET => {
                    grants.net.extend(route.allow.iter().cloned());
                    net_routes.push(local.clone());
                }
                interfaces::SENSOR => {
                    grants.sensor = Some(SensorGrant {
                        route: local.clone(),
                        channels: route.allow.iter().cloned().collect(),
                    })
                }
                interfaces::TELEMETRY => {
                    let telemetry = grants.telemetry.get_or_insert_with(TelemetryGrant::default);
                    if route.rights.can_write() && telemetry.publish.is_none() {
                        telemetry.publish = Some(local.clone());
                    }
                    if route.rights.can_read() && telemetry.receive.is_none() {
                        telemetry.receive = Some(local.clone());
                    }
                }
                interfaces::LOG => {
                    grants.stdio = route.rights != Rights::Read;
                    if log_route.is_none() {
                        log_route = Some(local.clone());
                    }
                }
                _ => {}
            }
        }
        // An app that provides a telemetry capability publishes into it (its consumers
        // receive), unless a write route already says where publishing goes.
        let mut provided_telemetry = Vec::new();
        let mut publishes_into_provided = None;
        for (capability, provided) in &component.provides {
            if provided.interface == interfaces::TELEMETRY {
                provided_telemetry.push(capability.clone());
                let telemetry = grants.telemetry.get_or_insert_with(TelemetryGrant::default);
                if telemetry.publish.is_none() {
                    telemetry.publish = Some(capability.clone());
                    publishes_into_provided = Some(capability.clone());
                }
            }
        }
        Ok(Self {
            name: name.to_owned(),
            module,
            grants,
            limits: component.limits.clone(),
            provided_telemetry,
            publishes_into_provided,
            net_routes,
            log_route,
        })
    }
}

/// Parses a `--dir HOST:GUEST[:ro]` grant.
pub fn parse_dir_grant(text: &str) -> Result<DirGrant, HostError> {
    let bad = |reason| HostError::BadGrant {
        text: text.to_owned(),
        reason,
    };
    let mut parts: Vec<&str> = text.split(':').collect();
    let read_only = match parts.last() {
        Some(&"ro") if parts.len() == 3 => {
            parts.pop();
            true
        }
        Some(&"rw") if parts.len() == 3 => {
            parts.pop();
            false
        }
        _ => false,
    };
    match parts.as_slice() {
        [host, guest] if !host.is_empty() && guest.starts_with('/') => Ok(DirGrant {
            host: PathBuf::from(host),
            guest: (*guest).to_owned(),
            read_only,
        }),
        [_, guest] if !guest.starts_with('/') => Err(bad("the guest path must be absolute")),
        _ => Err(bad("expected HOST:GUEST or HOST:GUEST:ro")),
    }
}

/// Parses a `--env K=V` grant.
pub fn parse_env_grant(text: &str) -> Result<(String, String), HostError> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(HostError::BadGrant {
            text: text.to_owned(),
            reason: "expected KEY=VALUE",
        }),
    }
}

/// Parses a `--allow-tcp HOST:PORT` grant (checked for shape only; resolved when run).
pub fn parse_tcp_grant(text: &str) -> Result<String, HostError> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(text.to_owned())
        }
        _ => Err(HostError::BadGrant {
            text: text.to_owned(),
            reason: "expected HOST:PORT",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_grants_parse_read_only_and_reject_relative_guests() {
        let grant = parse_dir_grant("./data:/data:ro").unwrap();
        assert_eq!(grant.host, PathBuf::from("./data"));
        assert_eq!(grant.guest, "/data");
        assert!(grant.read_only);
        assert!(!parse_dir_grant("d:/d").unwrap().read_only);
        assert!(parse_dir_grant("d:data").is_err());
        assert!(parse_dir_grant("d").is_err());
        assert!(parse_dir_grant(":/d").is_err());
    }

    #[test]
    fn env_and_tcp_grants_check_their_shape() {
        assert_eq!(
            parse_env_grant("A=b=c").unwrap(),
            ("A".to_owned(), "b=c".to_owned())
        );
        assert!(parse_env_grant("=x").is_err());
        assert!(parse_tcp_grant("127.0.0.1:80").is_ok());
        assert!(parse_tcp_grant("host:99999").is_err());
        assert!(parse_tcp_grant(":80").is_err());
    }

    #[test]
    fn sensor_grant_with_no_channels_allows_all() {
        let all = SensorGrant {
            route: "s".into(),
            channels: BTreeSet::new(),
        };
        assert!(all.allows("anything"));
        let some = SensorGrant {
            route: "s".into(),
            channels: ["temperature".to_owned()].into(),
        };
        assert!(some.allows("temperature"));
        assert!(!some.allows("humidity"));
    }
}
