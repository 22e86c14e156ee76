//! Promise: the gateway example is valid, warning-free, and routes exactly what the
//! documentation says (the TPM only to the agent, the network only through an allow-list).

use std::path::Path;

use testudo_config::{load_plan, ComponentKind, Plan, Rights, Run};

fn gateway() -> Plan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway.ncl");
    match load_plan(&path) {
        Ok((plan, warnings)) => {
            assert!(warnings.is_empty(), "warnings: {warnings:?}");
            plan
        }
        Err(errors) => panic!("gateway.ncl refused: {errors}"),
    }
}

#[test]
fn gateway_has_the_documented_components() {
    let plan = gateway();
    let names: Vec<&str> = plan.components.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "agent",
            "forwarder",
            "log",
            "net",
            "sensor",
            "sensor-reader",
            "storage",
            "tpm",
            "updater"
        ]
    );
    assert_eq!(plan.board.name, "qemu-x86_64");
    assert_eq!(plan.components["tpm"].kind, ComponentKind::Driver);
    assert_eq!(plan.components["tpm"].devices.nodes, ["/dev/tpm0"]);
    assert!(plan.components["net"].devices.network);
    // The updater alone holds the ESP (the boot-selection state) and both rootfs slots, by
    // GPT name.
    use testudo_plan::layout::partitions::{node, ESP, ROOTFS_A, ROOTFS_B};
    assert_eq!(
        plan.components["updater"].devices.nodes,
        [node(ESP), node(ROOTFS_A), node(ROOTFS_B)]
    );
    let holders: Vec<&str> = plan
        .components
        .iter()
        .filter(|(_, c)| c.devices.nodes.iter().any(|n| n.contains("by-partlabel")))
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(holders, ["updater"]);
    assert_eq!(
        plan.components["agent"].run,
        Run::Binary {
            name: "testudo-agent".into()
        }
    );
    assert_eq!(
        plan.components["sensor-reader"].run,
        Run::Wasm {
            module: "wasm-apps/sensor-reader.wasm".into()
        }
    );
    assert_eq!(plan.app_slots.len(), 1);
}

#[test]
fn only_the_agent_reaches_the_tpm_and_the_network() {
    let plan = gateway();
    let tpm_users: Vec<String> = plan
        .routes()
        .into_iter()
        .filter(|(_, _, r)| r.component == "tpm" || r.component == "net")
        .map(|(consumer, local, _)| format!("{consumer}.{local}"))
        .collect();
    assert_eq!(tpm_users, ["agent.net", "agent.tpm"]);
    let net = &plan.components["agent"].uses["net"];
    // DPS over HTTPS (TPM attestation), then the hub it assigns over MQTT.
    let dps = plan
        .cloud
        .dps
        .as_ref()
        .expect("the gateway registers through DPS");
    assert_eq!(
        net.allow,
        [
            format!("{}:{}", dps.endpoint, dps.https_port),
            format!("{}:{}", plan.cloud.hub, plan.cloud.mqtt_port)
        ]
    );
    assert_eq!(net.rights, Rights::ReadWrite);
}

#[test]
fn start_order_puts_providers_first() {
    let plan = gateway();
    assert_eq!(
        plan.components["agent"].after,
        ["log", "net", "storage", "tpm", "updater"]
    );
    assert_eq!(
        plan.components["forwarder"].after,
        ["agent", "log", "sensor-reader"]
    );
    assert!(plan.components["log"].after.is_empty());
}

#[test]
fn slot_maximum_admits_a_subset_and_refuses_widening() {
    let plan = gateway();
    let slot = &plan.app_slots["cloud-app"];
    let mut subset = slot.max_uses.clone();
    subset.remove("identity");
    assert_eq!(slot.admits(&subset), Ok(()));

    let mut wider = slot.max_uses.clone();
    if let Some(sensor) = wider.get_mut("sensor") {
        sensor.rights = Rights::ReadWrite;
    }
    let mut extra_route = plan.components["agent"].uses.clone();
    extra_route.retain(|local, _| local == "tpm");
    let violations = slot.admits(&wider).unwrap_err();
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].0, "sensor");
    let violations = slot.admits(&extra_route).unwrap_err();
    assert_eq!(violations[0].0, "tpm");
}
