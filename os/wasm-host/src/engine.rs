//! The wasmtime engine every app of one host shares, and the epoch ticker that lets the
//! host interrupt apps (CPU/wall budgets, stop requests).

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::{boxed, HostError};
use crate::limits::AppLimits;

/// How often the epoch advances; budgets and stop requests are checked this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How much of a freed table the pool clears with `memset` rather than decommits: one page.
const TABLE_KEEP_RESIDENT_BYTES: usize = 4096;

/// The largest 32-bit linear memory: 65,536 pages of 64 KiB.
const WASM32_MEMORY_MAX: u64 = 4 << 30;

/// Engine settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    /// Use the pooling instance allocator (pre-reserved slots; fastest instantiation).
    pub pooling: bool,
    /// With pooling: how many apps may be instantiated at once.
    pub max_instances: u32,
    /// With pooling: the largest linear memory any app may have, in bytes.
    pub max_memory_bytes: u64,
}

impl EngineOptions {
    /// How many instances of its one app a device's host holds at once: a restart needs one
    /// (the failed instance is freed first), a hot swap two (`Supervisor::swap` instantiates
    /// the candidate beside the running version; the host binary does not swap today, its
    /// library's embedders may).
    pub const ONE_APP_INSTANCES: u32 = 2;

    /// What a device's host runs with (one app per process): the pooling allocator, sized for
    /// [`EngineOptions::ONE_APP_INSTANCES`], each memory slot at least the app's
    /// `memory_limit_bytes` (the store's limiter, not the pool, enforces the plan's limit and
    /// reports it). Instantiation, on every start and restart, costs about half of on-demand's
    /// (decision 0101).
    /// A limit beyond what a 32-bit memory can hold gives slots of that size (4 GiB, also
    /// wasmtime's address-space reservation per memory, which a slot may not exceed).
    pub fn one_app(memory_limit_bytes: u64) -> Self {
        let default = Self::default();
        Self {
            pooling: true,
            max_instances: Self::ONE_APP_INSTANCES,
            max_memory_bytes: memory_limit_bytes.clamp(default.max_memory_bytes, WASM32_MEMORY_MAX),
        }
    }
}

impl Default for EngineOptions {
    /// On-demand allocation (no up-front reservation), the right default for a CLI run.
    fn default() -> Self {
        Self {
            pooling: false,
            max_instances: 16,
            max_memory_bytes: 256 << 20,
        }
    }
}

/// A configured engine plus its epoch ticker thread (stopped when this is dropped).
pub struct HostEngine {
    engine: Engine,
    /// Dropping it wakes and ends the ticker at once (no waiting out a tick at exit).
    stop_ticker: Option<Sender<()>>,
    ticker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HostEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostEngine").finish_non_exhaustive()
    }
}

impl HostEngine {
    /// Builds the engine: Cranelift, epoch interruption, component model, optional pooling.
    pub fn new(options: &EngineOptions) -> Result<Self, HostError> {
        let engine =
            Engine::new(&engine_config(options)).map_err(|error| HostError::EngineConfig {
                source: boxed(error),
            })?;
        let (stop_ticker, stopped) = mpsc::channel::<()>();
        let ticker = {
            let engine = engine.clone();
            std::thread::Builder::new()
                .name("wasm-epoch".to_owned())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                        engine.increment_epoch();
                    }
                })
                .map_err(|source| HostError::Spawn {
                    app: "epoch ticker".to_owned(),
                    source,
                })?
        };
        Ok(Self {
            engine,
            stop_ticker: Some(stop_ticker),
            ticker: Some(ticker),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl Drop for HostEngine {
    fn drop(&mut self) {
        drop(self.stop_ticker.take());
        if let Some(ticker) = self.ticker.take() {
            // A panicked ticker has nothing left to clean up.
            let _ = ticker.join();
        }
    }
}

/// The wasmtime configuration for `options` (also what the `.cwasm` cache key depends on).
pub fn engine_config(options: &EngineOptions) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.wasm_component_model(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    // A running host compiles on its own thread only (no thread pool next to the app, within
    // its seccomp role); `precompile` turns it on. Not part of the compatibility hash.
    config.parallel_compilation(false);
    // 512 KiB of wasm stack: deep recursion traps quickly instead of eating host stack.
    config.max_wasm_stack(512 << 10);
    if options.pooling {
        // Every app may have what the store's limiter allows it (`AppLimits`), in each of
        // `max_instances` instances at once: the pool never refuses what on-demand allocation
        // would accept, and the limiter stays the one that reports a limit.
        let apps = options.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(apps)
            .total_core_instances(apps.saturating_mul(AppLimits::MAX_CORE_INSTANCES))
            .total_memories(apps.saturating_mul(AppLimits::MAX_MEMORIES))
            .total_tables(apps.saturating_mul(AppLimits::MAX_TABLES))
            .max_memories_per_module(AppLimits::MAX_MEMORIES)
            .max_tables_per_module(AppLimits::MAX_TABLES)
            .table_elements(
                usize::try_from(AppLimits::DEFAULT_TABLE_ELEMENTS).unwrap_or(usize::MAX),
            )
            .max_memory_size(usize::try_from(options.max_memory_bytes).unwrap_or(usize::MAX))
            // Async fiber stacks, each with a guard page: wasmtime reserves 1,000 by default,
            // which added 4.4 ms to a host's start. The host makes no async calls today.
            .total_stacks(apps)
            // No `PAGEMAP_SCAN` ioctl on `/proc/self/pagemap` (wasmtime's default today, said
            // here because the `wasm_host` seccomp role has no `ioctl`).
            .pagemap_scan(Enabled::No)
            // Each freed memory or table is decommitted at once with its own `madvise`
            // (wasmtime's default, said here because batches of more than one region go
            // through `process_madvise`, which the run phase's seccomp filter does not allow).
            .decommit_batch_size(1)
            // A freed table that fits in one page is cleared with `memset` instead of a
            // `madvise` (one syscall fewer each time an instance is freed); the rest of a
            // larger table is still decommitted.
            .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_app_slots_hold_the_plans_limit_within_what_wasm32_can_address() {
        let small = EngineOptions::one_app(16 << 20);
        assert!(small.pooling);
        assert_eq!(small.max_instances, EngineOptions::ONE_APP_INSTANCES);
        assert_eq!(
            small.max_memory_bytes,
            EngineOptions::default().max_memory_bytes
        );
        assert_eq!(EngineOptions::one_app(1 << 30).max_memory_bytes, 1 << 30);
        // A plan's limit beyond 4 GiB still makes an engine (wasmtime refuses slots larger
        // than its per-memory reservation).
        for limit in [16 << 20, 1 << 30, u64::MAX] {
            let options = EngineOptions::one_app(limit);
            assert!(options.max_memory_bytes <= WASM32_MEMORY_MAX);
            HostEngine::new(&options).expect("engine for the one-app pool");
        }
    }
}
