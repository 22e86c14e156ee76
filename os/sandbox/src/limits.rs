//! Which resource-limit mechanism applies: cgroup v2 when its memory and pids controllers are
//! usable, rlimits otherwise.

use std::path::{Path, PathBuf};

/// The mechanism that enforced a component's memory/task limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitsApplied {
    /// cgroup v2 `memory.max`, `pids.max`, `cpu.max` (plus rlimits).
    CgroupV2,
    /// `RLIMIT_AS`, `RLIMIT_NPROC` only (no usable cgroup v2 controllers here).
    Rlimits,
}

impl LimitsApplied {
    /// Short name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitsApplied::CgroupV2 => "cgroup-v2",
            LimitsApplied::Rlimits => "rlimits",
        }
    }
}

/// The cgroup v2 mount whose root offers the memory and pids controllers, if any.
pub fn cgroup_v2_available() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(Path::new)
        .find(|root| {
            std::fs::read_to_string(root.join("cgroup.controllers")).is_ok_and(|text| {
                let controllers: Vec<&str> = text.split_whitespace().collect();
                controllers.contains(&"memory") && controllers.contains(&"pids")
            }) && std::fs::metadata(root.join("cgroup.subtree_control"))
                .is_ok_and(|meta| !meta.permissions().readonly())
        })
        .map(Path::to_owned)
}
