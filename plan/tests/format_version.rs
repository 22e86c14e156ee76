//! Promise: `Plan::from_bytes` (and `Plan::read`) accept exactly the plans of this build's
//! format version, and refuse any other version as such — before looking at any other field,
//! so an old image's plan is reported as "format N" rather than as a missing field.

use std::collections::BTreeMap;

use testudo_plan::{
    ComponentKind, Devices, Limits, Plan, PlanComponent, PlanError, RestartPolicy, Run,
    SandboxRole, PLAN_FORMAT_VERSION,
};

fn plan() -> Plan {
    let log = PlanComponent {
        kind: ComponentKind::Service,
        role: SandboxRole::Service,
        run: Run::Binary {
            name: "testudo-log".into(),
        },
        devices: Devices::default(),
        provides: BTreeMap::new(),
        uses: BTreeMap::new(),
        limits: Limits {
            memory_bytes: 16 << 20,
            cpu_percent: 10,
            restart: RestartPolicy::Always,
            max_tasks: 4,
            cpu_time_ms: 0,
        },
        after: Vec::new(),
        env: BTreeMap::new(),
        args: Vec::new(),
    };
    Plan::for_development_host("test", [("log".to_owned(), log)])
}

fn with_format(format: serde_json::Value) -> Vec<u8> {
    let mut value = serde_json::to_value(plan()).expect("serialises");
    value["format"] = format;
    serde_json::to_vec(&value).expect("serialises")
}

#[test]
fn a_plan_of_this_format_round_trips() {
    let plan = plan();
    let bytes = plan.to_canonical_json().expect("serialises");
    assert_eq!(Plan::from_bytes(bytes.as_bytes()).expect("reads"), plan);
}

#[test]
fn another_format_is_refused_by_its_version_even_when_fields_differ() {
    // A format-1 plan has no `role`: the version is what the error names.
    let mut value = serde_json::to_value(plan()).expect("serialises");
    value["format"] = 1.into();
    value["components"]["log"]
        .as_object_mut()
        .expect("object")
        .remove("role");
    let bytes = serde_json::to_vec(&value).expect("serialises");
    let error = Plan::from_bytes(&bytes).expect_err("format 1 refused");
    assert!(
        matches!(error, PlanError::Format { found: 1, expected } if expected == PLAN_FORMAT_VERSION),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "plan format 1, this build reads format {PLAN_FORMAT_VERSION} (rebuild the image with a matching testudo)"
        )
    );
    let newer = Plan::from_bytes(&with_format((PLAN_FORMAT_VERSION + 1).into()));
    assert!(matches!(newer, Err(PlanError::Format { .. })), "{newer:?}");
}

#[test]
fn bytes_without_a_format_are_not_a_plan() {
    for bytes in [
        &b"not json"[..],
        b"[]",
        b"{}",
        b"{\"format\": \"2\"}",
        b"\xff\xfe",
        b"",
    ] {
        let error = Plan::from_bytes(bytes).expect_err("refused");
        assert!(matches!(error, PlanError::NotAPlan { .. }), "{error:?}");
    }
}

#[test]
fn the_right_format_with_a_wrong_shape_names_the_field() {
    let mut value = serde_json::to_value(plan()).expect("serialises");
    value["components"]["log"]["role"] = "root".into();
    let bytes = serde_json::to_vec(&value).expect("serialises");
    let error = Plan::from_bytes(&bytes).expect_err("refused");
    assert!(matches!(error, PlanError::Shape { .. }), "{error:?}");
    let cause = std::error::Error::source(&error)
        .expect("serde's reason")
        .to_string();
    assert!(cause.contains("root"), "{cause}");
}

#[test]
fn read_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plan.json");
    std::fs::write(&path, with_format(1.into())).expect("writes");
    let error = Plan::read(&path).expect_err("refused");
    assert!(
        error.to_string().contains("plan.json"),
        "the path is named: {error}"
    );
    let PlanError::File { source, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(
        matches!(**source, PlanError::Format { found: 1, .. }),
        "{source:?}"
    );
    let missing = Plan::read(&dir.path().join("absent.json")).expect_err("missing");
    assert!(matches!(missing, PlanError::Read { .. }), "{missing:?}");
}
