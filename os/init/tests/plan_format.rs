//! Promise: testudo-init refuses a plan of another format version with a clear error naming
//! the file and both versions, and starts nothing.

use std::process::Command;

#[test]
fn init_refuses_a_plan_of_another_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, br#"{"format": 1, "name": "old", "components": {}}"#).expect("plan");
    let output = Command::new(env!("CARGO_BIN_EXE_testudo-init"))
        .arg("--plan")
        .arg(&plan)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .expect("runs testudo-init");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let expected = format!(
        "plan format 1, this build reads format {}",
        testudo_plan::PLAN_FORMAT_VERSION
    );
    assert!(
        stderr.contains(&expected) && stderr.contains(&plan.display().to_string()),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&output.stdout).is_empty());
}
