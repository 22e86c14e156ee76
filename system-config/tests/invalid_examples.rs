//! Promise: every config under `examples/invalid/` fails with an error that names the
//! problem and its place (component, capability, or file:line:col for Nickel errors).

use std::path::{Path, PathBuf};

use testudo_config::{load_plan, ConfigError};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/invalid")
        .join(name)
}

/// Loads an invalid example and returns its errors, failing if it loads.
fn errors_of(name: &str) -> Vec<ConfigError> {
    match load_plan(&example(name)) {
        Ok(_) => panic!("{name} was accepted"),
        Err(errors) => errors.0,
    }
}

fn only_error(name: &str) -> ConfigError {
    let mut errors = errors_of(name);
    assert_eq!(
        errors.len(),
        1,
        "{name}: expected one error, got {errors:?}"
    );
    errors.remove(0)
}

#[test]
fn unknown_component_names_route_and_component() {
    let err = only_error("unknown-component.ncl");
    assert!(
        matches!(&err, ConfigError::UnknownComponent { at, component } if at == "components.app.uses.log" && component == "logger"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "components.app.uses.log: component `logger` does not exist"
    );
}

#[test]
fn unknown_capability_lists_what_the_provider_offers() {
    let err = only_error("unknown-capability.ncl");
    assert!(
        matches!(&err, ConfigError::UnknownCapability { component, capability, .. } if component == "log" && capability == "logs"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "components.app.uses.log: component `log` provides no capability `logs` (it provides: log)"
    );
}

#[test]
fn interface_mismatch_names_both_interfaces() {
    let err = only_error("interface-mismatch.ncl");
    assert!(
        matches!(&err, ConfigError::InterfaceMismatch { expected, provided, .. } if expected == "storage" && provided == "log"),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("components.app.uses.data: "),
        "{err}"
    );
}

#[test]
fn duplicate_provider_names_both_components() {
    let err = only_error("duplicate-provider.ncl");
    assert!(
        matches!(&err, ConfigError::DuplicateProvider { capability, first, second } if capability == "log" && first == "log" && second == "shadow-log"),
        "{err:?}"
    );
}

#[test]
fn start_cycle_is_reported_as_a_path() {
    let err = only_error("start-cycle.ncl");
    assert!(
        matches!(&err, ConfigError::StartCycle { cycle } if cycle == &["a", "b", "a"]),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "start-dependency cycle: a -> b -> a");
}

#[test]
fn device_claimed_twice_names_both_drivers() {
    let err = only_error("device-conflict.ncl");
    assert!(
        matches!(&err, ConfigError::DeviceConflict { device, first, second } if device == "node /dev/tpm0" && first == "rogue" && second == "tpm"),
        "{err:?}"
    );
}

#[test]
fn memory_over_board_names_totals_and_largest() {
    let err = only_error("memory-over-board.ncl");
    let mib = 1024 * 1024;
    assert!(
        matches!(&err, ConfigError::MemoryOverBoard { board_bytes, total_bytes, largest, .. }
        if *board_bytes == 1024 * mib && *total_bytes == 1216 * mib && largest[0] == ("analytics".to_owned(), 600 * mib)),
        "{err:?}"
    );
}

#[test]
fn slot_initial_app_beyond_maximum_is_refused() {
    let err = only_error("slot-beyond-max.ncl");
    assert!(
        matches!(&err, ConfigError::SlotBeyondMax { slot, local_name, .. } if slot == "cloud-app" && local_name == "sensor"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("rights read_write exceed the slot's maximum read"),
        "{err}"
    );
}

#[test]
fn wasm_component_running_a_binary_is_refused() {
    let err = only_error("run-mismatch.ncl");
    assert!(
        matches!(&err, ConfigError::RunMismatch { component, .. } if component == "app"),
        "{err:?}"
    );
}

#[test]
fn role_mismatch_names_component_role_and_kind() {
    let err = only_error("role-mismatch.ncl");
    assert!(
        matches!(&err, ConfigError::RoleMismatch { component, .. } if component == "daemon"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "components.daemon.role: a service component cannot run as `wasm_host`"
    );
}

#[test]
fn init_is_a_reserved_component_name() {
    let err = only_error("reserved-name.ncl");
    assert!(
        matches!(&err, ConfigError::ReservedName { name } if name == "init"),
        "{err:?}"
    );
    assert!(err.to_string().contains("init.power"), "{err}");
}

#[test]
fn an_identity_that_cannot_follow_the_attestation_is_refused() {
    let err = only_error("attestation-mismatch.ncl");
    assert!(
        matches!(&err, ConfigError::AttestationMismatch { identity, .. } if identity == "x509"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "cloud.identity: `x509` cannot follow DPS attestation `tpm`: use tpm_sas"
    );
}

#[test]
fn a_hosts_entry_that_is_not_a_host_name_is_refused() {
    let err = only_error("bad-host-name.ncl");
    assert!(
        matches!(&err, ConfigError::BadHostName { name } if name == "hub_under_score!"),
        "{err:?}"
    );
}

#[test]
fn a_board_address_without_prefix_length_is_refused_at_its_line() {
    assert_nickel_error(
        "nickel-bad-address.ncl",
        10,
        "expected an IPv4 address with a prefix length",
    );
}

#[test]
fn service_owning_devices_is_refused() {
    let err = only_error("devices-on-service.ncl");
    assert!(
        matches!(&err, ConfigError::DevicesOnNonDriver { component, .. } if component == "storage"),
        "{err:?}"
    );
}

#[test]
fn net_allow_without_port_is_refused() {
    let err = only_error("bad-net-allow.ncl");
    assert!(
        matches!(&err, ConfigError::BadAllow { at, entry, .. } if at == "components.agent.uses.net" && entry == "hub.example.net"),
        "{err:?}"
    );
}

/// A Nickel error located in the example file itself, at the given line.
fn assert_nickel_error(name: &str, line: usize, message_part: &str) {
    let err = only_error(name);
    let ConfigError::Evaluate {
        location, message, ..
    } = &err
    else {
        panic!("{name}: expected a Nickel error, got {err:?}");
    };
    let location = location
        .as_ref()
        .unwrap_or_else(|| panic!("{name}: no location: {err}"));
    assert!(
        location.file.ends_with(&format!("examples/invalid/{name}")),
        "{name}: located in {}",
        location.file
    );
    assert_eq!(location.line, line, "{name}: {err}");
    assert!(location.column >= 1);
    assert!(message.contains(message_part), "{name}: {message}");
    // The one-line form starts with file:line:col.
    assert!(err.to_string().starts_with(&location.to_string()), "{err}");
}

#[test]
fn nickel_wrong_type_is_located() {
    assert_nickel_error("nickel-wrong-type.ncl", 21, "expected a number");
}

#[test]
fn nickel_missing_field_is_located() {
    assert_nickel_error(
        "nickel-missing-field.ncl",
        17,
        "missing definition for `run`",
    );
}

#[test]
fn nickel_bad_semver_is_located_with_the_contract_message() {
    assert_nickel_error(
        "nickel-bad-semver.ncl",
        7,
        "expected a semantic version like 1.2.3, got \"1.0\"",
    );
}

#[test]
fn nickel_unknown_field_is_located() {
    assert_nickel_error("nickel-unknown-field.ncl", 17, "extra field `provide`");
}

#[test]
fn nickel_bad_route_target_is_located() {
    assert_nickel_error(
        "nickel-bad-route.ncl",
        20,
        "expected a route target \"component.capability\"",
    );
}

#[test]
fn nickel_syntax_error_is_located() {
    let err = only_error("nickel-syntax.ncl");
    assert!(
        matches!(&err, ConfigError::Evaluate { location: Some(l), .. } if l.file.ends_with("nickel-syntax.ncl")),
        "{err:?}"
    );
}

#[test]
fn config_without_the_schema_is_refused_by_shape() {
    let err = only_error("not-a-system.ncl");
    assert!(matches!(err, ConfigError::Shape { .. }), "{err:?}");
}

#[test]
fn every_invalid_example_is_covered_by_a_test() {
    let covered = [
        "attestation-mismatch.ncl",
        "bad-host-name.ncl",
        "bad-net-allow.ncl",
        "device-conflict.ncl",
        "devices-on-service.ncl",
        "duplicate-provider.ncl",
        "interface-mismatch.ncl",
        "memory-over-board.ncl",
        "nickel-bad-address.ncl",
        "nickel-bad-route.ncl",
        "nickel-bad-semver.ncl",
        "nickel-missing-field.ncl",
        "nickel-syntax.ncl",
        "nickel-unknown-field.ncl",
        "nickel-wrong-type.ncl",
        "not-a-system.ncl",
        "reserved-name.ncl",
        "role-mismatch.ncl",
        "run-mismatch.ncl",
        "slot-beyond-max.ncl",
        "start-cycle.ncl",
        "unknown-capability.ncl",
        "unknown-component.ncl",
    ];
    let mut found: Vec<String> = std::fs::read_dir(example(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, covered);
}
