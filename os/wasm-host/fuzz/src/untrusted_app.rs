//! Untrusted app bytes: compiling, linking against no grants and instantiating under tight
//! limits must end in an error or an outcome, never a panic.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use testudo_wasm_host::{
    compile_app, AppLimits, EngineOptions, Grants, HostEngine, LocalDevice, OutputSink,
    PreparedApp, RunContext, StopSignal,
};

/// One fuzz input: must return without panicking.
pub fn fuzz(bytes: &[u8]) {
    static ENGINE: OnceLock<Option<HostEngine>> = OnceLock::new();
    let Some(engine) = ENGINE.get_or_init(|| HostEngine::new(&EngineOptions::default()).ok())
    else {
        return;
    };
    let Ok(app) = compile_app(engine.engine(), None, "fuzz", bytes) else {
        return;
    };
    let Ok(prepared) = PreparedApp::prepare(engine.engine(), &app, Arc::new(Grants::default()))
    else {
        return;
    };
    let _ = prepared.run(&RunContext {
        limits: AppLimits {
            memory_bytes: 1 << 20,
            cpu_time: Some(Duration::from_millis(20)),
            wall_time: Some(Duration::from_millis(100)),
            output_bytes: 4096,
            ..AppLimits::default()
        },
        backend: Arc::new(LocalDevice::new()),
        stdout: OutputSink::Discard,
        stderr: OutputSink::Discard,
        stop: StopSignal::new(),
    });
}
