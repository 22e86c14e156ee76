//! The evaluated config as typed Rust: the exact shape the Nickel schema exports.
//!
//! The Nickel contracts (`system-config/schema/*.ncl`) are the source of truth; these types
//! mirror them field by field and deny unknown fields, so a config that skipped the schema
//! contract is refused here instead of silently losing data.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::plan::{
    AppSlot, Board, CloudConfig, ComponentKind, Devices, Limits, Plan, PlanComponent, Provided,
    Rights, Route, Run, SandboxRole, SlotApp, UpdatePolicy, PLAN_FORMAT_VERSION,
};

/// A whole system config after Nickel evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    pub name: String,
    pub version: String,
    pub compatible: String,
    pub board: Board,
    pub components: BTreeMap<String, ComponentConfig>,
    #[serde(default)]
    pub app_slots: BTreeMap<String, AppSlotConfig>,
    pub update: UpdatePolicy,
    pub cloud: CloudConfig,
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
}

/// One component as written in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    pub kind: ComponentKind,
    /// The sandbox role; when absent, [`SandboxRole::default_for`] the kind.
    #[serde(default)]
    pub role: Option<SandboxRole>,
    pub run: RunConfig,
    #[serde(default)]
    pub devices: Devices,
    #[serde(default)]
    pub provides: BTreeMap<String, Provided>,
    #[serde(default)]
    pub uses: BTreeMap<String, UseConfig>,
    pub limits: Limits,
    #[serde(default)]
    pub after: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub args: Vec<String>,
}

/// `run = { binary = ... }` or `run = { wasm = ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RunConfig {
    Binary(String),
    Wasm(String),
}

/// One entry of `uses` (or of an app slot's `max_uses`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UseConfig {
    /// `"component.capability"`.
    pub from: String,
    pub interface: String,
    pub rights: Rights,
    #[serde(default)]
    pub allow: Vec<String>,
}

impl UseConfig {
    /// Splits `from` into (component, capability). The Nickel contract guarantees one dot;
    /// a value without one is treated as a component with an empty capability name.
    pub fn target(&self) -> (&str, &str) {
        self.from
            .split_once('.')
            .unwrap_or((self.from.as_str(), ""))
    }
}

/// An app slot as written in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSlotConfig {
    pub max_uses: BTreeMap<String, UseConfig>,
    pub limits: Limits,
    #[serde(default)]
    pub after: Vec<String>,
    #[serde(default)]
    pub initial: Option<SlotAppConfig>,
}

/// The factory app of a slot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotAppConfig {
    pub module: String,
    #[serde(default)]
    pub uses: BTreeMap<String, UseConfig>,
}

impl SystemConfig {
    /// Parses the JSON Nickel exported.
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

impl SystemConfig {
    /// Builds the plan from a config that passed [`crate::validate::validate`]. Start
    /// dependencies become `after` (explicit plus route providers, sorted); `allow` lists are
    /// sorted and deduplicated; everything else is copied as written.
    pub fn to_plan(&self) -> Plan {
        let components = self
            .components
            .iter()
            .map(|(name, c)| (name.clone(), c.to_plan(self)))
            .collect();
        let app_slots = self
            .app_slots
            .iter()
            .map(|(name, slot)| {
                let mut after = slot.after.clone();
                after.extend(slot.max_uses.values().map(|u| u.target().0.to_owned()));
                after.sort();
                after.dedup();
                let plan_slot = AppSlot {
                    max_uses: plan_routes(&slot.max_uses, self),
                    limits: slot.limits.clone(),
                    after,
                    initial: slot.initial.as_ref().map(|app| SlotApp {
                        module: app.module.clone(),
                        uses: plan_routes(&app.uses, self),
                    }),
                };
                (name.clone(), plan_slot)
            })
            .collect();
        Plan {
            format: PLAN_FORMAT_VERSION,
            name: self.name.clone(),
            version: self.version.clone(),
            compatible: self.compatible.clone(),
            board: self.board.clone(),
            components,
            app_slots,
            update: self.update.clone(),
            cloud: self.cloud.clone(),
            hosts: self.hosts.clone(),
        }
    }
}

impl ComponentConfig {
    /// The sandbox role: the config's, else the default for the kind.
    pub fn role(&self) -> SandboxRole {
        self.role
            .unwrap_or_else(|| SandboxRole::default_for(self.kind, self.devices.network))
    }

    fn to_plan(&self, system: &SystemConfig) -> PlanComponent {
        let mut devices = self.devices.clone();
        devices.nodes.sort();
        devices.nodes.dedup();
        devices.pci.sort();
        devices.pci.dedup();
        PlanComponent {
            kind: self.kind,
            role: self.role(),
            run: match &self.run {
                RunConfig::Binary(name) => Run::Binary { name: name.clone() },
                RunConfig::Wasm(module) => Run::Wasm {
                    module: module.clone(),
                },
            },
            devices,
            provides: self.provides.clone(),
            uses: plan_routes(&self.uses, system),
            limits: self.limits.clone(),
            after: crate::validate::start_dependencies(self),
            env: self.env.clone(),
            args: self.args.clone(),
        }
    }
}

/// Routes with the provider's interface (equal to the consumer's after validation).
fn plan_routes(
    uses: &BTreeMap<String, UseConfig>,
    system: &SystemConfig,
) -> BTreeMap<String, Route> {
    uses.iter()
        .map(|(local, u)| {
            let mut route = crate::validate::resolve_route(u);
            let (component, capability) = u.target();
            if let Some(provided) = system
                .components
                .get(component)
                .and_then(|c| c.provides.get(capability))
            {
                route.interface = provided.interface.clone();
            } else if let Some(interface) = builtin_capability(system, component, capability) {
                route.interface = interface.to_owned();
            }
            (local.clone(), route)
        })
        .collect()
}

/// The interface of a capability init provides itself (`init.status`, `init.power`), when
/// `component` names init (no configured component may take that name).
pub fn builtin_capability(
    system: &SystemConfig,
    component: &str,
    capability: &str,
) -> Option<&'static str> {
    (component == testudo_plan::builtin::INIT && !system.components.contains_key(component))
        .then(|| testudo_plan::builtin::init_capability(capability))
        .flatten()
}
