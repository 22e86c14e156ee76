//! Promise: the audit counts exactly the routed capabilities and owned devices, computes the
//! transitive trusted base and the reduction `1 - granted/total` on a known graph.

use std::collections::BTreeMap;
use std::path::Path;

use testudo_config::audit::audit;
use testudo_config::plan::Partitions;
use testudo_config::{
    AppSlot, Board, CloudConfig, ComponentKind, Devices, Limits, Plan, PlanComponent, Provided,
    RestartPolicy, Rights, Route, Run, UpdatePolicy,
};

fn limits() -> Limits {
    Limits {
        memory_bytes: 1 << 20,
        cpu_percent: 10,
        restart: RestartPolicy::Never,
        max_tasks: 1,
        cpu_time_ms: 0,
    }
}

fn route(component: &str, capability: &str) -> Route {
    Route {
        component: component.into(),
        capability: capability.into(),
        interface: capability.into(),
        rights: Rights::Read,
        allow: vec![],
    }
}

fn component(
    kind: ComponentKind,
    provides: &[&str],
    uses: &[(&str, Route)],
    devices: Devices,
) -> PlanComponent {
    PlanComponent {
        kind,
        role: testudo_config::SandboxRole::default_for(kind, devices.network),
        run: Run::Binary { name: "x".into() },
        devices,
        provides: provides
            .iter()
            .map(|p| {
                (
                    (*p).to_owned(),
                    Provided {
                        interface: (*p).to_owned(),
                    },
                )
            })
            .collect(),
        uses: uses
            .iter()
            .map(|(l, r)| ((*l).to_owned(), r.clone()))
            .collect(),
        limits: limits(),
        after: vec![],
        env: BTreeMap::new(),
        args: vec![],
    }
}

/// a (driver, owns /dev/x, provides x) <- b (provides y) <- c (uses y and x); slot s may use y.
fn known_plan() -> Plan {
    let mut components = BTreeMap::new();
    components.insert(
        "a".into(),
        component(
            ComponentKind::Driver,
            &["x"],
            &[],
            Devices {
                nodes: vec!["/dev/x".into()],
                pci: vec![],
                network: false,
            },
        ),
    );
    components.insert(
        "b".into(),
        component(
            ComponentKind::Service,
            &["y"],
            &[("x", route("a", "x"))],
            Devices::default(),
        ),
    );
    components.insert(
        "c".into(),
        component(
            ComponentKind::Wasm,
            &[],
            &[("y", route("b", "y")), ("x", route("a", "x"))],
            Devices::default(),
        ),
    );
    let mut app_slots = BTreeMap::new();
    app_slots.insert(
        "s".into(),
        AppSlot {
            max_uses: [("y".to_owned(), route("b", "y"))].into_iter().collect(),
            limits: limits(),
            after: vec![],
            initial: None,
        },
    );
    Plan {
        format: 1,
        name: "known".into(),
        version: "1.0.0".into(),
        compatible: "c".into(),
        board: Board {
            name: "b".into(),
            arch: "x86_64".into(),
            cpu_features: Vec::new(),
            memory_bytes: 1 << 30,
            kernel: "k".into(),
            bootloader: "grub".into(),
            console: "ttyS0".into(),
            partitions: Partitions {
                esp_bytes: 1,
                rootfs_bytes: 1,
                data_bytes: 1,
            },
            modules: Default::default(),
            network: None,
        },
        components,
        app_slots,
        update: UpdatePolicy {
            boot_tries: 3,
            allow_downgrade: false,
            bundle_format: "plain".into(),
        },
        cloud: CloudConfig {
            hub: "h".into(),
            device_id: "d".into(),
            identity: "sas".into(),
            dps: None,
            model_id: None,
            trust_anchors: None,
            mqtt_port: 8883,
        },
        hosts: BTreeMap::new(),
    }
}

#[test]
fn figures_on_a_known_graph() {
    let audit = audit(&known_plan());
    // Init's capabilities exist on every device.
    assert_eq!(
        audit.authorities,
        [
            "a.x",
            "b.y",
            "init.deployment",
            "init.power",
            "init.status",
            "node /dev/x"
        ]
    );
    assert_eq!(audit.total, 6);
    let by_name: BTreeMap<&str, _> = audit
        .subjects
        .iter()
        .map(|s| (s.name.as_str(), s))
        .collect();
    assert_eq!(
        by_name.keys().copied().collect::<Vec<_>>(),
        ["a", "b", "c", "slot:s"]
    );

    assert_eq!(by_name["a"].granted, ["node /dev/x"]);
    assert!(by_name["a"].trusted_base.is_empty());
    assert_eq!(by_name["b"].granted, ["a.x"]);
    assert_eq!(by_name["b"].trusted_base, ["a"]);
    assert_eq!(by_name["c"].granted, ["a.x", "b.y"]);
    assert_eq!(by_name["c"].trusted_base, ["a", "b"]);
    assert_eq!(by_name["slot:s"].granted, ["b.y"]);
    assert_eq!(by_name["slot:s"].trusted_base, ["a", "b"]);

    let sixth = 1.0 / 6.0;
    assert!((by_name["a"].reduction - 5.0 * sixth).abs() < 1e-12);
    assert!((by_name["c"].reduction - 4.0 * sixth).abs() < 1e-12);
    assert!((audit.min_reduction - 4.0 * sixth).abs() < 1e-12);
    let mean = (5.0 * sixth + 5.0 * sixth + 4.0 * sixth + 5.0 * sixth) / 4.0;
    assert!((audit.mean_reduction - mean).abs() < 1e-12);
}

#[test]
fn gateway_agent_holds_seven_of_the_system_authorities() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway.ncl");
    let (plan, _) = testudo_config::load_plan(&path).unwrap();
    let audit = audit(&plan);
    // 9 provided capabilities + init's 3 + /dev/tpm0 + the ESP and both rootfs partitions
    // + PCI 1af4:1000 + network.
    assert_eq!(audit.total, 18, "{:?}", audit.authorities);
    let agent = audit.subjects.iter().find(|s| s.name == "agent").unwrap();
    assert_eq!(
        agent.granted,
        [
            "init.deployment",
            "init.power",
            "log.log",
            "net.net",
            "storage.storage",
            "tpm.tpm",
            "updater.update"
        ]
    );
    assert_eq!(
        agent.trusted_base,
        ["init", "log", "net", "storage", "tpm", "updater"]
    );
    let forwarder = audit
        .subjects
        .iter()
        .find(|s| s.name == "forwarder")
        .unwrap();
    assert_eq!(
        forwarder.trusted_base.len(),
        // Every other configured component (the updater too: the agent uses its `update`),
        // and init.
        9 - 1 + 1,
        "{:?}",
        forwarder.trusted_base
    );
    let table = audit.to_table();
    assert!(table.contains("agent"), "{table}");
}
