//! Which resource-limit mechanism applies: cgroup v2 when a [`CgroupTree`](crate::CgroupTree)
//! could be set up, rlimits otherwise (rlimits are always set as well).

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
