//! Test support: builds the C apps in `wasm-apps/` (through the test kit, as `cargo xtask
//! apps` does) and runs them on a shared engine.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use testudo_wasm_host::{
    compile_app, AppLimits, CompiledApp, DeviceBackend, EngineOptions, Grants, HostEngine, Outcome,
    OutputSink, PreparedApp, RunContext, StopSignal,
};

/// The repository's `wasm-apps/` directory.
pub fn apps_dir() -> PathBuf {
    testudo_testkit::wasm::apps_dir()
}

/// Builds `wasm-apps/<source>.c` (e.g. `hello`, `hostile/spin`) with `defines`, once per
/// test process; fails naming clang-14 when it is missing.
pub fn build(source: &str, defines: &[&str]) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    let key = format!("{source}{}", defines.join(""));
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap();
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("wasm-apps")
        .join(std::process::id().to_string());
    std::fs::create_dir_all(&out_dir).unwrap();
    let file = key.replace(['/', '='], "_");
    let output = out_dir.join(format!("{file}.wasm"));
    let source_file = apps_dir().join(format!("{source}.c"));
    if let Err(error) = testudo_testkit::wasm::compile_c_app(&source_file, &output, defines) {
        panic!("{error}");
    }
    built.insert(key, output.clone());
    output
}

/// A component made from `build(source)`.
pub fn build_component(source: &str) -> PathBuf {
    let module = build(source, &[]);
    let output = module.with_extension("component.wasm");
    if !output.exists() {
        let bytes = std::fs::read(&module).unwrap();
        let component = testudo_wasm_host::componentize::componentize(
            source,
            &bytes,
            &apps_dir().join("wit"),
            "app",
        )
        .unwrap();
        std::fs::write(&output, component).unwrap();
    }
    output
}

/// One engine per test process.
pub fn engine() -> &'static HostEngine {
    static ENGINE: OnceLock<HostEngine> = OnceLock::new();
    ENGINE.get_or_init(|| HostEngine::new(&EngineOptions::default()).unwrap())
}

/// Compiles the app at `path` (no cache).
pub fn compile(path: &Path) -> CompiledApp {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    compile_app(
        engine().engine(),
        None,
        &name,
        &std::fs::read(path).unwrap(),
    )
    .unwrap()
}

/// What a run left behind.
#[derive(Debug)]
pub struct Ran {
    pub outcome: Outcome,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `path` once with `grants` (stdio granted) and `limits`.
pub fn run(
    path: &Path,
    mut grants: Grants,
    limits: AppLimits,
    backend: Arc<dyn DeviceBackend>,
) -> Ran {
    grants.stdio = true;
    let prepared =
        PreparedApp::prepare(engine().engine(), &compile(path), Arc::new(grants)).unwrap();
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let outcome = prepared
        .run(&RunContext {
            limits,
            backend,
            stdout: OutputSink::Buffer(Arc::clone(&stdout)),
            stderr: OutputSink::Buffer(Arc::clone(&stderr)),
            stop: StopSignal::new(),
        })
        .unwrap();
    let text = |buffer: &Arc<Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned()
    };
    Ran {
        outcome,
        stdout: text(&stdout),
        stderr: text(&stderr),
    }
}

pub mod sandboxed;
