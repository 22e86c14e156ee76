//! Resource limits of one app run, and the store's limiter that enforces memory/table caps.

use std::time::Duration;

use testudo_plan::plan::{Limits, RestartPolicy};

/// Limits applied to one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppLimits {
    /// Linear memory cap in bytes (all memories together).
    pub memory_bytes: u64,
    /// Table elements cap (each table).
    pub table_elements: u64,
    /// CPU time the app may use without returning to the host (see
    /// [`crate::run`]: restarts at every host call); `None` = unlimited.
    pub cpu_time: Option<Duration>,
    /// Wall-clock budget per call into the app; `None` = unlimited.
    pub wall_time: Option<Duration>,
    /// Bytes the app may write to stdout and stderr together over one run.
    pub output_bytes: u64,
    /// What to do when the app ends.
    pub restart: RestartPolicy,
}

impl AppLimits {
    /// Default output budget: 16 MiB per run.
    pub const DEFAULT_OUTPUT_BYTES: u64 = 16 << 20;
    /// Default table cap: 100 000 elements.
    pub const DEFAULT_TABLE_ELEMENTS: u64 = 100_000;
    /// Core instances one app may make (a component instantiates a handful: the module,
    /// its adapter, shims).
    pub const MAX_CORE_INSTANCES: u32 = 64;
    /// Linear memories one app may have.
    pub const MAX_MEMORIES: u32 = 8;
    /// Tables one app may have.
    pub const MAX_TABLES: u32 = 16;

    /// The limits a plan gives a component (`cpu_time_ms` 0 means no CPU budget).
    pub fn from_plan(limits: &Limits) -> Self {
        Self {
            memory_bytes: limits.memory_bytes,
            table_elements: Self::DEFAULT_TABLE_ELEMENTS,
            cpu_time: (limits.cpu_time_ms > 0).then(|| Duration::from_millis(limits.cpu_time_ms)),
            wall_time: None,
            output_bytes: Self::DEFAULT_OUTPUT_BYTES,
            restart: limits.restart,
        }
    }
}

impl Default for AppLimits {
    /// 64 MiB memory, no CPU budget, 16 MiB output, never restarted.
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            table_elements: Self::DEFAULT_TABLE_ELEMENTS,
            cpu_time: None,
            wall_time: None,
            output_bytes: Self::DEFAULT_OUTPUT_BYTES,
            restart: RestartPolicy::Never,
        }
    }
}

/// Which limit stopped an app (carried inside the trap so the host can report it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// Linear memory would have grown beyond the cap.
    #[error("memory limit of {limit} bytes exceeded (wanted {wanted})")]
    Memory { limit: u64, wanted: u64 },
    /// A table would have grown beyond the cap.
    #[error("table limit of {limit} elements exceeded")]
    Table { limit: u64 },
    /// The call used more CPU time than its budget.
    #[error("CPU time limit of {} ms exceeded", limit.as_millis())]
    CpuTime { limit: Duration },
    /// The call took longer than its wall-clock budget.
    #[error("wall-clock limit of {} ms exceeded", limit.as_millis())]
    WallTime { limit: Duration },
    /// The app wrote more than its output budget.
    #[error("output limit of {limit} bytes exceeded")]
    Output { limit: u64 },
    /// The host was asked to stop the app (hot swap, shutdown).
    #[error("stopped by the host")]
    Stopped,
}

/// Enforces [`AppLimits`] memory and table caps; a refused growth traps with
/// [`LimitExceeded`], so the report says which limit it was.
#[derive(Debug)]
pub struct AppLimiter {
    memory_bytes: u64,
    table_elements: u64,
}

impl AppLimiter {
    /// A limiter for `limits`.
    pub fn new(limits: &AppLimits) -> Self {
        Self {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
        }
    }
}

impl wasmtime::ResourceLimiter for AppLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = u64::try_from(desired).unwrap_or(u64::MAX);
        if desired > self.memory_bytes {
            return Err(wasmtime::Error::new(LimitExceeded::Memory {
                limit: self.memory_bytes,
                wanted: desired,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if u64::try_from(desired).unwrap_or(u64::MAX) > self.table_elements {
            return Err(wasmtime::Error::new(LimitExceeded::Table {
                limit: self.table_elements,
            }));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        AppLimits::MAX_CORE_INSTANCES as usize
    }

    fn memories(&self) -> usize {
        AppLimits::MAX_MEMORIES as usize
    }

    fn tables(&self) -> usize {
        AppLimits::MAX_TABLES as usize
    }
}

/// Parses a size: bytes, or a number with `KiB`/`MiB`/`GiB` (also `K`/`M`/`G`, powers of 2).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

/// Parses a duration: a number with `ms`, `s` or `m` (e.g. `500ms`, `2s`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(number)),
        "s" => Some(Duration::from_secs(number)),
        "m" => number.checked_mul(60).map(Duration::from_secs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::ResourceLimiter;

    use super::*;

    #[test]
    fn limiter_refuses_growth_beyond_the_cap_with_a_named_limit() {
        let mut limiter = AppLimiter::new(&AppLimits {
            memory_bytes: 1 << 20,
            ..AppLimits::default()
        });
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        let error = limiter.memory_growing(1 << 20, 2 << 20, None).unwrap_err();
        assert_eq!(
            error.downcast_ref::<LimitExceeded>(),
            Some(&LimitExceeded::Memory {
                limit: 1 << 20,
                wanted: 2 << 20
            })
        );
    }

    #[test]
    fn sizes_and_durations_parse_with_units_only() {
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_size("MiB"), None);
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), None);
    }

    #[test]
    fn plan_cpu_time_zero_means_no_budget() {
        let mut plan = Limits {
            memory_bytes: 1,
            cpu_percent: 100,
            restart: RestartPolicy::Always,
            max_tasks: 1,
            cpu_time_ms: 0,
        };
        assert_eq!(AppLimits::from_plan(&plan).cpu_time, None);
        plan.cpu_time_ms = 250;
        assert_eq!(
            AppLimits::from_plan(&plan).cpu_time,
            Some(Duration::from_millis(250))
        );
    }
}
