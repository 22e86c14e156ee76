//! testudo's declarative system configuration: Nickel in, a validated, canonical plan out.
//!
//! The data flow is one way: `load` (Nickel evaluation) -> `model` (typed config) ->
//! `validate` (capability graph rules) -> `plan` (canonical JSON with a content hash).
//! Every later stage (image builder, init, WASM host, cloud agent) reads only the plan.
//! `graph` draws the capability graph (SVG, DOT); `audit` measures what each component holds.

pub mod audit;
pub mod error;
pub mod graph;
#[cfg(feature = "nickel")]
pub mod load;
pub mod model;
pub mod validate;

/// The plan types live in `testudo-plan` (the contract crate every device binary links);
/// re-exported here for the config side.
pub use testudo_plan::plan;

#[cfg(feature = "nickel")]
use std::path::Path;

pub use error::{ConfigError, ConfigErrors, Location, Warning};
pub use model::SystemConfig;
pub use testudo_plan::{
    AppSlot, Board, BoardModules, CloudConfig, ComponentKind, Devices, Interface, Limits,
    Partitions, Plan, PlanComponent, PlanError, Provided, RestartPolicy, Rights, Route, Run,
    SandboxRole, SlotApp, UpdatePolicy, PLAN_FORMAT_VERSION,
};

#[cfg(feature = "nickel")]
/// Evaluates the Nickel config at `path`, validates its capability graph and builds the plan.
/// Returns the plan with any warnings, or every error found.
pub fn load_plan(path: &Path) -> Result<(Plan, Vec<Warning>), ConfigErrors> {
    let config = load_config(path)?;
    let warnings = validate::validate(&config).map_err(ConfigErrors)?;
    Ok((config.to_plan(), warnings))
}

#[cfg(feature = "nickel")]
/// Evaluates the Nickel config at `path` into the typed config, without graph validation.
pub fn load_config(path: &Path) -> Result<SystemConfig, ConfigError> {
    let json = load::evaluate(path)?;
    SystemConfig::from_json(&json).map_err(|err| {
        let text = err.to_string();
        let reason = if !json.trim_start().starts_with('{') {
            "it evaluates to a value that is not a record".to_owned()
        } else {
            match text.rfind(" at line ") {
                Some(at) if err.line() > 0 => text[..at].to_owned(),
                _ => text,
            }
        };
        ConfigError::Shape {
            path: path.to_owned(),
            reason,
        }
    })
}
