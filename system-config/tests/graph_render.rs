//! Promise: `graph` renders the gateway as well-formed SVG and as DOT, containing every
//! component and app slot and one edge per route, deterministically.

use std::path::Path;

use testudo_config::graph::{to_dot, to_svg};
use testudo_config::{load_plan, Plan};

fn gateway() -> Plan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway.ncl");
    load_plan(&path).expect("gateway loads").0
}

#[test]
fn svg_is_well_formed_and_has_every_component_and_route() {
    let plan = gateway();
    let svg = to_svg(&plan);
    let doc = roxmltree::Document::parse(&svg).expect("SVG is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );

    let node_titles: Vec<String> = root
        .descendants()
        .filter(|n| n.attribute("class").is_some_and(|c| c.starts_with("node ")))
        .filter_map(|n| n.children().find(|c| c.has_tag_name("text")))
        .filter_map(|t| t.text().map(str::to_owned))
        .collect();
    for name in plan.components.keys().chain(plan.app_slots.keys()) {
        assert!(
            node_titles.contains(name),
            "{name} missing from {node_titles:?}"
        );
    }
    let edges = root
        .descendants()
        .filter(|n| n.attribute("class") == Some("edge"))
        .count();
    assert_eq!(edges, plan.routes().len());
    // Rights appear on edge labels; the agent's net route shows its allow-list.
    assert!(
        svg.contains("net (rw) [global.azure-devices-provisioning.net:443, testudo-demo.azure-devices.net:8883]"),
        "{svg}"
    );
    assert_eq!(svg, to_svg(&plan));
}

#[test]
fn dot_lists_every_node_and_edge() {
    let plan = gateway();
    let dot = to_dot(&plan);
    assert!(dot.starts_with("digraph \"gateway\" {"));
    for name in plan.components.keys() {
        assert!(dot.contains(&format!("  \"{name}\" [label=")), "{name}");
    }
    assert!(dot.contains("\"slot:cloud-app\" [label="));
    assert_eq!(dot.matches(" -> ").count(), plan.routes().len());
    assert!(
        dot.contains("\"forwarder\" -> \"agent\" [label=\"upstream: telemetry (w)\"]"),
        "{dot}"
    );
}
