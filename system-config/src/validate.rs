//! Step 3: the capability-graph rules. Every rule runs; all errors are returned together,
//! in a stable order (components, then slots, by name).
//!
//! Rules (each has an example under `examples/invalid/` and a test):
//! - a component's `kind` and `run` agree; only drivers own devices;
//! - every route targets an existing component and a capability it provides, with the same
//!   interface; `net` routes allow only `host:port` destinations;
//! - capability names are system-wide: one provider per name (they become scheme names);
//! - no device node, PCI id or the network is owned twice;
//! - start dependencies (`after` plus route providers) form no cycle;
//! - the memory limits of all components and app slots fit the board's memory;
//! - an app slot's initial app stays within the slot's `max_uses`.
//!
//! Warning: a provided capability that no route (and no slot maximum) targets.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{ConfigError, Warning};
use crate::model::{ComponentConfig, RunConfig, SystemConfig, UseConfig};
use crate::plan::{ComponentKind, DpsAttestation, Route};
use testudo_plan::builtin;

/// Runs every rule. `Ok` carries the warnings; `Err` every error (never empty).
pub fn validate(config: &SystemConfig) -> Result<Vec<Warning>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    check_components(config, &mut errors);
    check_duplicate_providers(config, &mut errors);
    check_routes(config, &mut errors);
    check_device_claims(config, &mut errors);
    check_start_order(config, &mut errors);
    check_memory(config, &mut errors);
    check_slot_initial_apps(config, &mut errors);
    check_cloud(config, &mut errors);
    check_hosts(config, &mut errors);
    if errors.is_empty() {
        Ok(unused_capabilities(config))
    } else {
        Err(errors)
    }
}

fn check_components(config: &SystemConfig, errors: &mut Vec<ConfigError>) {
    for (name, component) in &config.components {
        if name == builtin::INIT {
            errors.push(ConfigError::ReservedName { name: name.clone() });
        }
        let expected = match (component.kind, &component.run) {
            (ComponentKind::Wasm, RunConfig::Binary(_)) => {
                Some("a WASM module: run = { wasm = \"...\" }")
            }
            (ComponentKind::Driver | ComponentKind::Service, RunConfig::Wasm(_)) => {
                Some("a native binary: run = { binary = \"...\" }")
            }
            _ => None,
        };
        if let Some(expected) = expected {
            errors.push(ConfigError::RunMismatch {
                component: name.clone(),
                kind: component.kind,
                expected,
            });
        }
        if !component.role().fits(component.kind) {
            errors.push(ConfigError::RoleMismatch {
                component: name.clone(),
                kind: component.kind,
                role: component.role(),
            });
        }
        let devices = &component.devices;
        let owns_devices = !devices.nodes.is_empty() || !devices.pci.is_empty() || devices.network;
        if component.kind != ComponentKind::Driver && owns_devices {
            errors.push(ConfigError::DevicesOnNonDriver {
                component: name.clone(),
                kind: component.kind,
            });
        }
    }
}

fn check_duplicate_providers(config: &SystemConfig, errors: &mut Vec<ConfigError>) {
    let mut first_provider: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, component) in &config.components {
        for capability in component.provides.keys() {
            match first_provider.get(capability.as_str()) {
                Some(first) => errors.push(ConfigError::DuplicateProvider {
                    capability: capability.clone(),
                    first: (*first).to_owned(),
                    second: name.clone(),
                }),
                None => {
                    first_provider.insert(capability, name);
                }
            }
        }
    }
}

/// Every route in the config with the config path it sits at.
fn all_routes(config: &SystemConfig) -> Vec<(String, &UseConfig)> {
    let mut routes = Vec::new();
    for (name, component) in &config.components {
        for (local, route) in &component.uses {
            routes.push((format!("components.{name}.uses.{local}"), route));
        }
    }
    for (slot_name, slot) in &config.app_slots {
        for (local, route) in &slot.max_uses {
            routes.push((format!("app_slots.{slot_name}.max_uses.{local}"), route));
        }
        if let Some(initial) = &slot.initial {
            for (local, route) in &initial.uses {
                routes.push((format!("app_slots.{slot_name}.initial.uses.{local}"), route));
            }
        }
    }
    routes
}

fn check_routes(config: &SystemConfig, errors: &mut Vec<ConfigError>) {
    for (at, route) in all_routes(config) {
        let (component, capability) = route.target();
        let provided_interface = if component == builtin::INIT {
            // Init's own capabilities (`init.status`, `init.power`).
            let Some(interface) = builtin::init_capability(capability) else {
                errors.push(ConfigError::UnknownCapability {
                    at,
                    component: component.to_owned(),
                    capability: capability.to_owned(),
                    provided: builtin::INIT_CAPABILITIES
                        .iter()
                        .map(|(name, _)| (*name).to_owned())
                        .collect(),
                });
                continue;
            };
            interface
        } else {
            let Some(provider) = config.components.get(component) else {
                errors.push(ConfigError::UnknownComponent {
                    at,
                    component: component.to_owned(),
                });
                continue;
            };
            let Some(provided) = provider.provides.get(capability) else {
                errors.push(ConfigError::UnknownCapability {
                    at,
                    component: component.to_owned(),
                    capability: capability.to_owned(),
                    provided: provider.provides.keys().cloned().collect(),
                });
                continue;
            };
            provided.interface.as_str()
        };
        if provided_interface != route.interface {
            errors.push(ConfigError::InterfaceMismatch {
                at: at.clone(),
                component: component.to_owned(),
                capability: capability.to_owned(),
                expected: route.interface.clone(),
                provided: provided_interface.to_owned(),
            });
        }
        if route.interface == testudo_plan::interfaces::NET {
            for entry in &route.allow {
                if let Err(reason) = check_host_port(entry) {
                    errors.push(ConfigError::BadAllow {
                        at: at.clone(),
                        entry: entry.clone(),
                        reason,
                    });
                }
            }
        }
    }
    let mut start_deps: Vec<(String, &String)> = Vec::new();
    for (name, component) in &config.components {
        start_deps.extend(
            component
                .after
                .iter()
                .map(|a| (format!("components.{name}.after"), a)),
        );
    }
    for (name, slot) in &config.app_slots {
        start_deps.extend(
            slot.after
                .iter()
                .map(|a| (format!("app_slots.{name}.after"), a)),
        );
    }
    for (at, target) in start_deps {
        if !config.components.contains_key(target) {
            errors.push(ConfigError::UnknownComponent {
                at,
                component: target.clone(),
            });
        }
    }
}

/// The hub identity a DPS attestation leaves the device with: TPM attestation and
/// symmetric keys give a key held in the TPM (`tpm_sas`; a symmetric key may also be a
/// software key, `sas`), X.509 gives a certificate (`x509`).
fn identities_for(attestation: DpsAttestation) -> &'static [&'static str] {
    match attestation {
        DpsAttestation::Tpm => &["tpm_sas"],
        DpsAttestation::SymmetricKey => &["tpm_sas", "sas"],
        DpsAttestation::X509 => &["x509"],
    }
}

fn check_cloud(config: &SystemConfig, errors: &mut Vec<ConfigError>) {
    let cloud = &config.cloud;
    if let Some(dps) = &cloud.dps {
        let allowed = identities_for(dps.attestation);
        if !allowed.contains(&cloud.identity.as_str()) {
            errors.push(ConfigError::AttestationMismatch {
                attestation: dps.attestation,
                identity: cloud.identity.clone(),
                expected: allowed.join(" or "),
            });
        }
    }
}

fn check_hosts(config: &SystemConfig, errors: &mut Vec<ConfigError>) {
    for name in config.hosts.keys() {
        if check_host_port(&format!("{name}:1")).is_err() || name.starts_with('[') {
            errors.push(ConfigError::BadHostName { name: name.clone() });
        }
    }
}

/// A `net` allow entry: `host:port`, host a DNS name or IPv4 address (or `[v6]`), port 1..=65535.
pub fn check_host_port(entry: &str) -> Result<(), &'static str> {
    let Some((host, port)) = entry.rsplit_once(':') else {
        return Err("expected host:port");
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => return Err("port must be a number from 1 to 65535"),
        Ok(_) => {}
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    };
    if host_ok {
        Ok(())
    } else {
        Err("host must be a DNS name, an IPv4 address or [IPv6]")
    }
}

fn check_device_claims(config: &SystemConfig, errors: &mut Vec<ConfigError>) {
    let mut owners: BTreeMap<String, &str> = BTreeMap::new();
    for (name, component) in &config.components {
        let devices = &component.devices;
        let claims = devices
            .nodes
            .iter()
            .map(|n| format!("node {n}"))
            .chain(devices.pci.iter().map(|p| format!("PCI {p}")))
            .chain(devices.network.then(|| "network".to_owned()));
        for device in claims {
            match owners.get(&device) {
                Some(first) if *first != name.as_str() => {
                    errors.push(ConfigError::DeviceConflict {
                        device,
                        first: (*first).to_owned(),
                        second: name.clone(),
                    })
                }
                Some(_) => {}
                None => {
                    owners.insert(device, name);
                }
            }
        }
    }
}

/// The components `component` must wait for: its `after` list plus the providers of its
/// routes (init, which runs before everything, excepted), sorted and deduplicated. Unknown
/// names are kept (reported elsewhere).
pub fn start_dependencies(component: &ComponentConfig) -> Vec<String> {
    let deps: BTreeSet<String> = component
        .after
        .iter()
        .cloned()
        .chain(
            component
                .uses
                .values()
                .map(|r| r.target().0.to_owned())
                .filter(|provider| provider != builtin::INIT),
        )
        .collect();
    deps.into_iter().collect()
}

fn check_start_order(config: &SystemConfig, errors: &mut Vec<ConfigError>) {
    let deps: BTreeMap<&str, Vec<String>> = config
        .components
        .iter()
        .map(|(name, c)| (name.as_str(), start_dependencies(c)))
        .collect();
    if let Some(cycle) = find_cycle(&deps) {
        errors.push(ConfigError::StartCycle { cycle });
    }
}

/// Finds one cycle (deterministically: the first reached from the smallest name), returned
/// with its first node repeated at the end.
fn find_cycle(deps: &BTreeMap<&str, Vec<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnStack,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = deps.keys().map(|k| (*k, Mark::Unvisited)).collect();
    for &root in deps.keys() {
        if marks.get(root) != Some(&Mark::Unvisited) {
            continue;
        }
        // Iterative DFS: (node, index of next dependency to look at).
        let mut stack: Vec<(&str, usize)> = vec![(root, 0)];
        marks.insert(root, Mark::OnStack);
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let node_deps = deps.get(node).map(Vec::as_slice).unwrap_or(&[]);
            if let Some(dep) = node_deps.get(*next) {
                *next += 1;
                let Some((&dep, _)) = deps.get_key_value(dep.as_str()) else {
                    continue; // unknown component: reported by the route rules
                };
                match marks.get(dep).copied() {
                    Some(Mark::OnStack) => {
                        let start = stack.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                        let mut cycle: Vec<String> = stack[start..]
                            .iter()
                            .map(|(n, _)| (*n).to_owned())
                            .collect();
                        cycle.push(dep.to_owned());
                        return Some(cycle);
                    }
                    Some(Mark::Unvisited) => {
                        marks.insert(dep, Mark::OnStack);
                        stack.push((dep, 0));
                    }
                    _ => {}
                }
            } else {
                marks.insert(node, Mark::Done);
                stack.pop();
            }
        }
    }
    None
}

fn check_memory(config: &SystemConfig, errors: &mut Vec<ConfigError>) {
    let mut budgets: Vec<(String, u64)> = config
        .components
        .iter()
        .map(|(name, c)| (name.clone(), c.limits.memory_bytes))
        .chain(
            config
                .app_slots
                .iter()
                .map(|(name, s)| (format!("app slot {name}"), s.limits.memory_bytes)),
        )
        .collect();
    let total: u64 = budgets
        .iter()
        .fold(0u64, |acc, (_, b)| acc.saturating_add(*b));
    if total > config.board.memory_bytes {
        budgets.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        budgets.truncate(3);
        errors.push(ConfigError::MemoryOverBoard {
            board: config.board.name.clone(),
            board_bytes: config.board.memory_bytes,
            total_bytes: total,
            largest: budgets,
        });
    }
}

fn check_slot_initial_apps(config: &SystemConfig, errors: &mut Vec<ConfigError>) {
    for (slot_name, slot) in &config.app_slots {
        let Some(initial) = &slot.initial else {
            continue;
        };
        let max: BTreeMap<String, Route> = slot
            .max_uses
            .iter()
            .map(|(local, u)| (local.clone(), resolve_route(u)))
            .collect();
        for (local, route) in &initial.uses {
            if let Err(reason) = crate::plan::route_within(local, &resolve_route(route), &max) {
                errors.push(ConfigError::SlotBeyondMax {
                    slot: slot_name.clone(),
                    local_name: local.clone(),
                    reason,
                });
            }
        }
    }
}

/// A config route as a plan route (interface as the consumer wrote it; `allow` sorted).
pub fn resolve_route(route: &UseConfig) -> Route {
    let (component, capability) = route.target();
    let mut allow = route.allow.clone();
    allow.sort();
    allow.dedup();
    Route {
        component: component.to_owned(),
        capability: capability.to_owned(),
        interface: route.interface.clone(),
        rights: route.rights,
        allow,
    }
}

fn unused_capabilities(config: &SystemConfig) -> Vec<Warning> {
    let used: BTreeSet<(String, String)> = all_routes(config)
        .into_iter()
        .map(|(_, r)| {
            let (c, cap) = r.target();
            (c.to_owned(), cap.to_owned())
        })
        .collect();
    let mut warnings = Vec::new();
    for (name, component) in &config.components {
        for capability in component.provides.keys() {
            if !used.contains(&(name.clone(), capability.clone())) {
                warnings.push(Warning::UnusedCapability {
                    component: name.clone(),
                    capability: capability.clone(),
                });
            }
        }
    }
    warnings
}
