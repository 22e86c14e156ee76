//! The wasmtime engine every app of one host shares, and the epoch ticker that lets the
//! host interrupt apps (CPU/wall budgets, stop requests).

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::{boxed, HostError};

/// How often the epoch advances; budgets and stop requests are checked this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

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
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(options.max_instances.saturating_mul(4))
            .total_component_instances(options.max_instances)
            .total_memories(options.max_instances.saturating_mul(2))
            .total_tables(options.max_instances.saturating_mul(4))
            .max_memory_size(usize::try_from(options.max_memory_bytes).unwrap_or(usize::MAX));
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}
