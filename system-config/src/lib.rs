//! testudo's declarative system configuration: Nickel in, a validated, canonical plan out.
//!
//! The data flow is one way: `load` (Nickel evaluation) -> `model` (typed config) ->
//! `validate` (capability graph rules) -> `plan` (canonical JSON with a content hash).
//! Every later stage (image builder, init, WASM host, cloud agent) reads only the plan.

pub mod plan;

pub use plan::{
    AppSlot, CloudConfig, ComponentKind, Devices, Interface, Limits, Plan, PlanComponent, Provided,
    RestartPolicy, Rights, Route, Run, UpdatePolicy,
};
