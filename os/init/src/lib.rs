//! `testudo-init`: reads the plan, creates the schemes, starts every component in its own
//! sandbox in dependency order with exactly its routed handles, supervises them (restart
//! policies with backoff, crash-loop detection, dependents restarted after the dependency
//! they lost), serves its own capabilities (`status`, `power`) and shuts everything down
//! cleanly.
//!
//! It is PID 1 in the image and an ordinary supervisor on a developer's host
//! (`testudo run`); the library is the same, only [`main`](../testudo_init/index.html)
//! differs.

pub mod builtin;
pub mod data_partition;
pub mod deploy;
pub mod device_owners;
mod error;
pub mod events;
pub mod graph;
pub mod launch;
pub mod network;
mod options;
pub mod output;
pub mod partition_links;
pub mod power;
pub mod restart;
pub mod routing;
pub mod signals;
pub mod slots;
pub mod status;
mod supervisor;
pub mod swtpm;

pub use device_owners::DeviceOwners;
pub use error::{InitError, LaunchError, NetworkError, SlotError};
pub use events::{Event, EventKind, EventLog};
pub use options::{Backoff, InitOptions};
pub use power::{PowerAction, PowerRequests};
pub use supervisor::{RunningSystem, Supervisor};
pub use swtpm::SoftwareTpm;

/// Reads a plan JSON file, refusing a plan of another format version
/// ([`testudo_plan::Plan::from_bytes`]).
pub fn read_plan(path: &std::path::Path) -> Result<testudo_plan::Plan, InitError> {
    let bytes = std::fs::read(path).map_err(|source| InitError::ReadPlan {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    testudo_plan::Plan::from_bytes(&bytes).map_err(|source| InitError::ReadPlan {
        path: path.to_owned(),
        source: Box::new(source),
    })
}
