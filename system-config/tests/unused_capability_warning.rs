//! Promise: a capability nobody routes to (no component, no slot maximum) is a warning that
//! names it, and does not fail the config.

use testudo_config::{load_plan, Warning};

#[test]
fn unused_capability_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/system.ncl");
    let board = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../images/boards/qemu-x86_64.ncl"
    );
    let config = format!(
        r#"let S = import "{schema}" in
{{
  name = "warn",
  version = "1.0.0",
  compatible = "test",
  board = import "{board}",
  components = {{
    log = {{
      kind = 'service,
      run = {{ binary = "testudo-log" }},
      provides = {{ log = {{ interface = "log" }}, audit = {{ interface = "log" }} }},
      limits.memory_bytes = 1048576,
    }},
    app = {{
      kind = 'wasm,
      run = {{ wasm = "wasm-apps/app.wasm" }},
      uses.log = {{ from = "log.log", interface = "log", rights = 'write }},
      limits.memory_bytes = 1048576,
    }},
  }},
  cloud = {{ hub = "hub.example.net", device_id = "d", identity = 'sas }},
}} | S.System
"#
    );
    let path = dir.path().join("warn.ncl");
    std::fs::write(&path, config).unwrap();
    let (plan, warnings) = load_plan(&path).unwrap();
    assert_eq!(
        warnings,
        [Warning::UnusedCapability {
            component: "log".into(),
            capability: "audit".into()
        }]
    );
    assert_eq!(
        warnings[0].to_string(),
        "components.log.provides.audit: provided but never routed to anyone"
    );
    assert_eq!(plan.components.len(), 2);
}
