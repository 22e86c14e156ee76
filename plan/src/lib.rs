//! The plan and the device contract: everything the image builder and the device share.
//!
//! - [`plan`]: the plan types, their canonical JSON and content hash, and
//!   [`Plan::from_bytes`], the one checked way to read a plan (it refuses another format
//!   version). `testudo-config` produces plans; the image builder, init, the drivers, the
//!   WASM host and the agent read them.
//! - The device contract, as code: [`layout`] (every path on the device), [`env`] (every
//!   variable init passes to a component), [`interfaces`] (every interface name and what its
//!   handles mean), [`roles`] (the sandbox roles the plan assigns) and [`builtin`] (what
//!   init itself provides to routes).
//!
//! This crate depends on nothing heavy (serde, sha2): every device binary links it.
//! `docs/plan-format.md` documents all of it.

pub mod builtin;
mod canonical;
pub mod env;
mod error;
pub mod interfaces;
pub mod layout;
pub mod plan;
pub mod roles;

pub use error::PlanError;
pub use plan::{
    route_within, AppSlot, Board, BoardModules, BoardNetwork, CloudConfig, ComponentKind, Devices,
    DpsAttestation, DpsConfig, Interface, Limits, Partitions, Plan, PlanComponent, Provided,
    RestartPolicy, Rights, Route, RouteBeyondSlot, Run, SlotApp, UpdatePolicy, PLAN_FORMAT_VERSION,
};
pub use roles::SandboxRole;
