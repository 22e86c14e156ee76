//! Untrusted `.cwasm` sidecar bytes: whatever lies next to an app, a sidecar on a writable
//! filesystem is refused before wasmtime sees it (the trust rule of
//! `testudo_wasm_host::precompile`), and sniffing its kind never panics.

use std::sync::OnceLock;

use tempfile::TempDir;
use testudo_wasm_host::cache::{load_sidecar, AppKind};
use testudo_wasm_host::precompile::sidecar_path;
use testudo_wasm_host::{EngineOptions, HostEngine};

struct Fixture {
    engine: HostEngine,
    /// A writable directory (the temporary directory is never on a read-only filesystem).
    dir: TempDir,
}

fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            Some(Fixture {
                engine: HostEngine::new(&EngineOptions::default()).ok()?,
                dir: tempfile::tempdir().ok()?,
            })
        })
        .as_ref()
}

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let _ = AppKind::detect(data);
    let Some(fixture) = fixture() else {
        return;
    };
    let sidecar = sidecar_path(&fixture.dir.path().join("app.wasm"));
    if std::fs::write(&sidecar, data).is_err() {
        return;
    }
    for kind in [AppKind::Module, AppKind::Component] {
        let refused = load_sidecar(fixture.engine.engine(), kind, &sidecar);
        assert!(
            refused.is_err(),
            "a sidecar on a writable filesystem must never be loaded"
        );
    }
}
