//! The audit: what each component holds, measured against everything the system offers.
//!
//! Computed from the plan (the same data `testudo-init` enforces), never from the config.
//! - **System authorities**: every provided capability (`component.capability`) plus every
//!   device resource (`node /dev/...`, `PCI vvvv:dddd`, `network`).
//! - **Granted** to a component: the capabilities its routes name plus the devices it owns.
//!   What it provides itself is not counted (it implements it, it does not hold it).
//! - **Trusted base**: the components it depends on through routes, transitively — the code
//!   it must trust to work correctly.
//! - **Reduction**: `1 - granted / total`, the share of the system's authority it cannot reach.
//!
//! App slots are audited at their maximum (`slot:<name>`): the most any deployed app can get.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::plan::{Devices, Plan, Route, SandboxRole};

/// The audit of a whole plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Audit {
    /// System name.
    pub system: String,
    /// Every authority in the system, sorted.
    pub authorities: Vec<String>,
    /// `authorities.len()`.
    pub total: usize,
    /// Per component and per app slot (`slot:<name>`), sorted by name.
    pub subjects: Vec<SubjectAudit>,
    /// Smallest reduction over all subjects (the most privileged one).
    pub min_reduction: f64,
    /// Mean reduction over all subjects.
    pub mean_reduction: f64,
}

/// The audit of one component or app slot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubjectAudit {
    /// Component name, or `slot:<name>`.
    pub name: String,
    /// `driver`, `service`, `wasm` or `slot`.
    pub kind: String,
    /// The sandbox role it runs under (an app in a slot runs in a WASM host).
    pub role: SandboxRole,
    /// Authorities granted, sorted.
    pub granted: Vec<String>,
    /// `granted.len()`.
    pub granted_count: usize,
    /// Components it transitively depends on through routes, sorted.
    pub trusted_base: Vec<String>,
    /// `1 - granted_count / total` (1.0 when the system has no authority at all).
    pub reduction: f64,
}

fn device_authorities(devices: &Devices) -> impl Iterator<Item = String> + '_ {
    devices
        .nodes
        .iter()
        .map(|n| format!("node {n}"))
        .chain(devices.pci.iter().map(|p| format!("PCI {p}")))
        .chain(devices.network.then(|| "network".to_owned()))
}

fn route_authority(route: &Route) -> String {
    format!("{}.{}", route.component, route.capability)
}

/// Audits `plan`.
pub fn audit(plan: &Plan) -> Audit {
    // Init's own capabilities exist on every device.
    let mut authorities: BTreeSet<String> = testudo_plan::builtin::INIT_CAPABILITIES
        .iter()
        .map(|(capability, _)| format!("{}.{capability}", testudo_plan::builtin::INIT))
        .collect();
    for (name, component) in &plan.components {
        authorities.extend(component.provides.keys().map(|c| format!("{name}.{c}")));
        authorities.extend(device_authorities(&component.devices));
    }
    let total = authorities.len();

    // Route providers per component, for the trusted base.
    let providers: BTreeMap<&str, BTreeSet<&str>> = plan
        .components
        .iter()
        .map(|(name, c)| {
            let deps = c.uses.values().map(|r| r.component.as_str()).collect();
            (name.as_str(), deps)
        })
        .collect();
    let trusted_base = |direct: BTreeSet<&str>, own: &str| -> Vec<String> {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut todo: Vec<&str> = direct.into_iter().collect();
        while let Some(next) = todo.pop() {
            if next == own || !seen.insert(next) {
                continue;
            }
            if let Some(more) = providers.get(next) {
                todo.extend(more.iter().copied());
            }
        }
        seen.into_iter().map(str::to_owned).collect()
    };
    let reduction = |granted: usize| {
        if total == 0 {
            1.0
        } else {
            1.0 - granted as f64 / total as f64
        }
    };

    let mut subjects = Vec::new();
    for (name, component) in &plan.components {
        let granted: BTreeSet<String> = component
            .uses
            .values()
            .map(route_authority)
            .chain(device_authorities(&component.devices))
            .collect();
        let direct = component
            .uses
            .values()
            .map(|r| r.component.as_str())
            .collect();
        subjects.push(SubjectAudit {
            name: name.clone(),
            kind: kind_name(component.kind).to_owned(),
            role: component.role,
            granted_count: granted.len(),
            reduction: reduction(granted.len()),
            granted: granted.into_iter().collect(),
            trusted_base: trusted_base(direct, name),
        });
    }
    for (name, slot) in &plan.app_slots {
        let granted: BTreeSet<String> = slot.max_uses.values().map(route_authority).collect();
        let direct = slot
            .max_uses
            .values()
            .map(|r| r.component.as_str())
            .collect();
        subjects.push(SubjectAudit {
            name: format!("slot:{name}"),
            kind: "slot".to_owned(),
            role: SandboxRole::WasmHost,
            granted_count: granted.len(),
            reduction: reduction(granted.len()),
            granted: granted.into_iter().collect(),
            trusted_base: trusted_base(direct, ""),
        });
    }
    subjects.sort_by(|a, b| a.name.cmp(&b.name));
    let min_reduction = subjects.iter().map(|s| s.reduction).fold(1.0_f64, f64::min);
    let mean_reduction = if subjects.is_empty() {
        1.0
    } else {
        subjects.iter().map(|s| s.reduction).sum::<f64>() / subjects.len() as f64
    };
    Audit {
        system: plan.name.clone(),
        authorities: authorities.into_iter().collect(),
        total,
        subjects,
        min_reduction,
        mean_reduction,
    }
}

/// The config's word for a DPS attestation.
pub fn attestation_name(attestation: crate::plan::DpsAttestation) -> &'static str {
    match attestation {
        crate::plan::DpsAttestation::Tpm => "tpm",
        crate::plan::DpsAttestation::SymmetricKey => "symmetric_key",
        crate::plan::DpsAttestation::X509 => "x509",
    }
}

/// Lower-case kind name as in the plan JSON.
pub fn kind_name(kind: crate::plan::ComponentKind) -> &'static str {
    match kind {
        crate::plan::ComponentKind::Driver => "driver",
        crate::plan::ComponentKind::Service => "service",
        crate::plan::ComponentKind::Wasm => "wasm",
    }
}

impl Audit {
    /// A fixed-width text table: one line per subject, then the summary.
    pub fn to_table(&self) -> String {
        let width = self
            .subjects
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(4)
            .max(9);
        let mut out = format!(
            "{:<width$}  {:<7}  {:<14}  {:>7}  {:>9}  trusted base\n",
            "component", "kind", "sandbox role", "granted", "reduction"
        );
        for s in &self.subjects {
            out.push_str(&format!(
                "{:<width$}  {:<7}  {:<14}  {:>3}/{:<3}  {:>8.1}%  {}\n",
                s.name,
                s.kind,
                s.role.as_str(),
                s.granted_count,
                self.total,
                s.reduction * 100.0,
                if s.trusted_base.is_empty() {
                    "-".to_owned()
                } else {
                    s.trusted_base.join(", ")
                }
            ));
        }
        out.push_str(&format!(
            "{} authorities in system {} (provided capabilities and device resources); reduction: min {:.1}%, mean {:.1}%\n",
            self.total,
            self.system,
            self.min_reduction * 100.0,
            self.mean_reduction * 100.0
        ));
        out
    }
}
