//! Pictures of the capability graph: Graphviz DOT text, and SVG drawn here with a small,
//! deterministic layered layout (no Graphviz needed).
//!
//! Nodes are components (coloured by kind) and app slots (dashed); an edge goes from a
//! consumer to its provider, labelled `local -> capability (rights)`. Providers sit above
//! their consumers: a node's layer is one more than its deepest provider's.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::plan::{ComponentKind, Plan, Rights, Route, Run};

const NODE_W: f64 = 210.0;
const NODE_H: f64 = 54.0;
const GAP_X: f64 = 44.0;
const GAP_Y: f64 = 120.0;
const MARGIN: f64 = 30.0;
const TITLE_H: f64 = 40.0;
const LEGEND_H: f64 = 50.0;

/// A node of the picture.
#[derive(Debug, Clone, PartialEq)]
struct Node {
    id: String,
    title: String,
    subtitle: String,
    style: NodeStyle,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum NodeStyle {
    Driver,
    Service,
    Wasm,
    Slot,
    Init,
}

impl NodeStyle {
    fn fill(self) -> &'static str {
        match self {
            NodeStyle::Driver => "#fde2c4",
            NodeStyle::Service => "#cfe3f7",
            NodeStyle::Wasm => "#d3f0d0",
            NodeStyle::Slot => "#f2f2f2",
            NodeStyle::Init => "#e8e0f4",
        }
    }
    fn label(self) -> &'static str {
        match self {
            NodeStyle::Driver => "driver",
            NodeStyle::Service => "service",
            NodeStyle::Wasm => "wasm app",
            NodeStyle::Slot => "app slot (maximum)",
            NodeStyle::Init => "init (built in)",
        }
    }
}

/// An edge: consumer -> provider.
#[derive(Debug, Clone, PartialEq)]
struct Edge {
    from: String,
    to: String,
    label: String,
    dashed: bool,
}

fn rights_name(rights: Rights) -> &'static str {
    match rights {
        Rights::Read => "r",
        Rights::Write => "w",
        Rights::ReadWrite => "rw",
    }
}

fn edge_label(local: &str, route: &Route) -> String {
    let mut label = if local == route.capability {
        format!("{} ({})", route.capability, rights_name(route.rights))
    } else {
        format!(
            "{local}: {} ({})",
            route.capability,
            rights_name(route.rights)
        )
    };
    if !route.allow.is_empty() {
        let _ = write!(label, " [{}]", route.allow.join(", "));
    }
    label
}

fn nodes_and_edges(plan: &Plan) -> (Vec<Node>, Vec<Edge>) {
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for (name, c) in &plan.components {
        let style = match c.kind {
            ComponentKind::Driver => NodeStyle::Driver,
            ComponentKind::Service => NodeStyle::Service,
            ComponentKind::Wasm => NodeStyle::Wasm,
        };
        let mut subtitle = match &c.run {
            Run::Binary { name } => name.clone(),
            Run::Wasm { module } => module.rsplit('/').next().unwrap_or(module).to_owned(),
        };
        let devices: Vec<String> = c
            .devices
            .nodes
            .iter()
            .cloned()
            .chain(c.devices.pci.iter().map(|p| format!("pci {p}")))
            .chain(c.devices.network.then(|| "network".to_owned()))
            .collect();
        if !devices.is_empty() {
            let _ = write!(subtitle, " · {}", devices.join(", "));
        }
        nodes.push(Node {
            id: name.clone(),
            title: name.clone(),
            subtitle,
            style,
        });
        for (local, route) in &c.uses {
            edges.push(Edge {
                from: name.clone(),
                to: route.component.clone(),
                label: edge_label(local, route),
                dashed: false,
            });
        }
    }
    for (name, slot) in &plan.app_slots {
        let id = format!("slot:{name}");
        nodes.push(Node {
            id: id.clone(),
            title: name.clone(),
            subtitle: match &slot.initial {
                Some(app) => format!("app slot · {}", app.module.rsplit('/').next().unwrap_or("")),
                None => "app slot · cloud-deployed".to_owned(),
            },
            style: NodeStyle::Slot,
        });
        for (local, route) in &slot.max_uses {
            edges.push(Edge {
                from: id.clone(),
                to: route.component.clone(),
                label: edge_label(local, route),
                dashed: true,
            });
        }
    }
    // Init is in every system; it is drawn when a route names one of its capabilities.
    let init = testudo_plan::builtin::INIT;
    if edges.iter().any(|edge| edge.to == init) {
        nodes.push(Node {
            id: init.to_owned(),
            title: init.to_owned(),
            subtitle: "built in".to_owned(),
            style: NodeStyle::Init,
        });
    }
    (nodes, edges)
}

/// Graphviz DOT text of the capability graph (deterministic).
pub fn to_dot(plan: &Plan) -> String {
    let (nodes, edges) = nodes_and_edges(plan);
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=BT;\n  node [shape=box, style=\"rounded,filled\", fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n",
        dot_escape(&plan.name)
    );
    for node in &nodes {
        let extra = if node.style == NodeStyle::Slot {
            ", style=\"rounded,dashed,filled\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n{}\", fillcolor=\"{}\"{}];",
            dot_escape(&node.id),
            dot_escape(&node.title),
            dot_escape(&node.subtitle),
            node.style.fill(),
            extra
        );
    }
    for edge in &edges {
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\" [label=\"{}\"{}];",
            dot_escape(&edge.from),
            dot_escape(&edge.to),
            dot_escape(&edge.label),
            if edge.dashed { ", style=dashed" } else { "" }
        );
    }
    out.push_str("}\n");
    out
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Layer of every node: 0 for nodes without providers, else 1 + the deepest provider's layer.
/// Robust to cycles and unknown targets (a validated plan has neither).
fn layers(nodes: &[Node], edges: &[Edge]) -> BTreeMap<String, usize> {
    let mut layer: BTreeMap<String, usize> = nodes.iter().map(|n| (n.id.clone(), 0)).collect();
    // Bellman-Ford style relaxation, bounded by the node count (terminates on cycles).
    for _ in 0..nodes.len() {
        let mut changed = false;
        for e in edges {
            let (Some(&to), Some(&from)) = (layer.get(&e.to), layer.get(&e.from)) else {
                continue;
            };
            if e.from != e.to && from < to + 1 {
                layer.insert(e.from.clone(), to + 1);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    layer
}

/// SVG picture of the capability graph (deterministic: same plan, same bytes).
pub fn to_svg(plan: &Plan) -> String {
    let (nodes, edges) = nodes_and_edges(plan);
    let layer = layers(&nodes, &edges);
    let depth = layer.values().copied().max().map_or(0, |m| m + 1);
    let mut rows: Vec<Vec<&Node>> = vec![Vec::new(); depth];
    for node in &nodes {
        if let Some(row) = layer.get(&node.id).and_then(|l| rows.get_mut(*l)) {
            row.push(node);
        }
    }
    // Order each row by the mean position of its providers (one barycentre pass), ties by name.
    let mut x_index: BTreeMap<String, f64> = BTreeMap::new();
    for row in rows.iter_mut() {
        let mut keyed: Vec<(f64, &Node)> = row
            .iter()
            .map(|n| {
                let positions: Vec<f64> = edges
                    .iter()
                    .filter(|e| e.from == n.id)
                    .filter_map(|e| x_index.get(&e.to).copied())
                    .collect();
                let key = if positions.is_empty() {
                    f64::MAX
                } else {
                    positions.iter().sum::<f64>() / positions.len() as f64
                };
                (key, *n)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        *row = keyed.into_iter().map(|(_, n)| n).collect();
        let count = row.len() as f64;
        for (i, n) in row.iter().enumerate() {
            x_index.insert(n.id.clone(), i as f64 - (count - 1.0) / 2.0);
        }
    }
    let widest = rows.iter().map(Vec::len).max().unwrap_or(1).max(1) as f64;
    let width = (MARGIN * 2.0 + widest * NODE_W + (widest - 1.0) * GAP_X).max(640.0);
    let height = MARGIN * 2.0
        + TITLE_H
        + depth as f64 * NODE_H
        + (depth.max(1) - 1) as f64 * GAP_Y
        + LEGEND_H;
    let mut pos: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (r, row) in rows.iter().enumerate() {
        let row_w = row.len() as f64 * NODE_W + (row.len().max(1) - 1) as f64 * GAP_X;
        let x0 = (width - row_w) / 2.0;
        for (i, n) in row.iter().enumerate() {
            let x = x0 + i as f64 * (NODE_W + GAP_X);
            let y = MARGIN + TITLE_H + r as f64 * (NODE_H + GAP_Y);
            pos.insert(n.id.as_str(), (x, y));
        }
    }

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\">"
    );
    svg.push_str("<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555\"/></marker></defs>\n");
    let _ = writeln!(svg, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        svg,
        "<text x=\"{MARGIN}\" y=\"{:.0}\" font-size=\"18\" font-weight=\"bold\">{} {} — capability graph (arrows point to the provider)</text>",
        MARGIN + 16.0,
        xml_escape(&plan.name),
        xml_escape(&plan.version)
    );

    // Spread edge endpoints along node borders so parallel edges stay apart.
    let mut out_slots: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut in_slots: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in edges.iter().enumerate() {
        out_slots.entry(e.from.as_str()).or_default().push(i);
        in_slots.entry(e.to.as_str()).or_default().push(i);
    }
    let sort_by_other_end = |slots: &mut BTreeMap<&str, Vec<usize>>,
                             other: &dyn Fn(&Edge) -> &str| {
        for list in slots.values_mut() {
            list.sort_by(|&a, &b| {
                let xa = pos.get(other(&edges[a])).map_or(0.0, |p| p.0);
                let xb = pos.get(other(&edges[b])).map_or(0.0, |p| p.0);
                xa.total_cmp(&xb).then(a.cmp(&b))
            });
        }
    };
    sort_by_other_end(&mut out_slots, &|e| e.to.as_str());
    sort_by_other_end(&mut in_slots, &|e| e.from.as_str());
    let attach = |slots: &BTreeMap<&str, Vec<usize>>, id: &str, edge: usize| -> f64 {
        let list = slots.get(id).map(Vec::as_slice).unwrap_or(&[]);
        let k = list.iter().position(|&e| e == edge).unwrap_or(0) as f64;
        (k + 1.0) / (list.len() as f64 + 1.0)
    };

    // Node boxes per row, to route long edges through the gaps between them.
    let row_boxes: Vec<Vec<f64>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .filter_map(|n| pos.get(n.id.as_str()).map(|p| p.0))
                .collect()
        })
        .collect();
    let row_y = |r: usize| MARGIN + TITLE_H + r as f64 * (NODE_H + GAP_Y);
    let mut gap_use: BTreeMap<(usize, i64), usize> = BTreeMap::new();
    let mut placed_labels: Vec<(f64, f64, f64, f64)> = pos
        .values()
        .map(|&(x, y)| (x, y, x + NODE_W, y + NODE_H))
        .collect();

    svg.push_str("<g id=\"edges\">\n");
    for (i, e) in edges.iter().enumerate() {
        let (Some(&(fx, fy)), Some(&(tx, ty))) = (pos.get(e.from.as_str()), pos.get(e.to.as_str()))
        else {
            continue;
        };
        let (Some(&from_row), Some(&to_row)) = (layer.get(&e.from), layer.get(&e.to)) else {
            continue;
        };
        let x1 = fx + NODE_W * attach(&out_slots, &e.from, i);
        let y1 = fy;
        let x2 = tx + NODE_W * attach(&in_slots, &e.to, i);
        let y2 = ty + NODE_H;
        let mut points = vec![(x1, y1)];
        // Rows strictly between consumer (below) and provider (above), bottom-up.
        for r in (to_row + 1..from_row).rev() {
            let band_y = row_y(r);
            let t = (y1 - (band_y + NODE_H / 2.0)) / (y1 - y2);
            let straight_x = x1 + (x2 - x1) * t;
            let gx = nearest_gap(&row_boxes[r], straight_x);
            let used = gap_use.entry((r, gx.round() as i64)).or_insert(0);
            let offset = match *used {
                0 => 0.0,
                n if n % 2 == 1 => 5.0 * n.div_ceil(2) as f64,
                n => -5.0 * (n / 2) as f64,
            };
            *used += 1;
            points.push((gx + offset, band_y + NODE_H + 8.0));
            points.push((gx + offset, band_y - 8.0));
        }
        points.push((x2, y2));
        let dash = if e.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let d = points
            .iter()
            .enumerate()
            .map(|(k, (x, y))| format!("{}{x:.1} {y:.1}", if k == 0 { "M" } else { " L" }))
            .collect::<String>();
        let _ = writeln!(
            svg,
            "<g class=\"edge\" data-from=\"{}\" data-to=\"{}\"><path d=\"{d}\" fill=\"none\" stroke=\"#555\" stroke-width=\"1.2\"{dash} marker-end=\"url(#arrow)\"/>",
            xml_escape(&e.from),
            xml_escape(&e.to)
        );
        // Label on the first segment, at the first spot that overlaps no node or label.
        let (ax, ay) = points[0];
        let (bx, by) = points[1];
        let label_w = e.label.chars().count() as f64 * 5.6 + 4.0;
        let bbox = |t: f64| {
            let lx = ax + (bx - ax) * t;
            let ly = ay + (by - ay) * t;
            (
                lx,
                ly,
                (lx - label_w / 2.0, ly - 10.0, lx + label_w / 2.0, ly + 3.0),
            )
        };
        let overlaps = |b: &(f64, f64, f64, f64)| {
            placed_labels
                .iter()
                .any(|p| b.0 < p.2 && p.0 < b.2 && b.1 < p.3 && p.1 < b.3)
        };
        let (lx, ly, b) = [0.3, 0.5, 0.7, 0.18, 0.85, 0.42, 0.6]
            .into_iter()
            .map(bbox)
            .find(|(_, _, b)| !overlaps(b))
            .unwrap_or_else(|| bbox(0.3));
        placed_labels.push(b);
        let _ = writeln!(
            svg,
            "<text x=\"{lx:.1}\" y=\"{ly:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#333\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\">{}</text></g>",
            xml_escape(&e.label)
        );
    }
    svg.push_str("</g>\n<g id=\"nodes\">\n");
    for n in &nodes {
        let Some(&(x, y)) = pos.get(n.id.as_str()) else {
            continue;
        };
        let dash = if n.style == NodeStyle::Slot {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = writeln!(
            svg,
            "<g class=\"node {}\" id=\"node-{}\"><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"8\" fill=\"{}\" stroke=\"#444\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"14\" font-weight=\"bold\" text-anchor=\"middle\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#333\">{}</text></g>",
            match n.style {
                NodeStyle::Driver => "driver",
                NodeStyle::Service => "service",
                NodeStyle::Wasm => "wasm",
                NodeStyle::Slot => "slot",
                NodeStyle::Init => "init",
            },
            xml_escape(&n.id.replace(':', "-")),
            n.style.fill(),
            x + NODE_W / 2.0,
            y + 22.0,
            xml_escape(&n.title),
            x + NODE_W / 2.0,
            y + 40.0,
            xml_escape(&truncate(&n.subtitle, 40))
        );
    }
    svg.push_str("</g>\n<g id=\"legend\">\n");
    let ly = height - MARGIN - 18.0;
    for (i, style) in [
        NodeStyle::Driver,
        NodeStyle::Service,
        NodeStyle::Wasm,
        NodeStyle::Slot,
    ]
    .into_iter()
    .enumerate()
    {
        let lx = MARGIN + i as f64 * 150.0;
        let _ = writeln!(
            svg,
            "<rect x=\"{lx:.1}\" y=\"{ly:.1}\" width=\"18\" height=\"14\" rx=\"3\" fill=\"{}\" stroke=\"#444\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
            style.fill(),
            lx + 24.0,
            ly + 11.0,
            style.label()
        );
    }
    svg.push_str("</g>\n</svg>\n");
    svg
}

/// The x of the free channel nearest `x` in a row of node boxes (left edges `boxes`, sorted):
/// left of the first box, between two boxes, or right of the last.
fn nearest_gap(boxes: &[f64], x: f64) -> f64 {
    let inside = boxes.iter().any(|&b| x > b - 6.0 && x < b + NODE_W + 6.0);
    if !inside {
        return x;
    }
    let mut gaps: Vec<f64> = Vec::with_capacity(boxes.len() + 1);
    if let Some(first) = boxes.first() {
        gaps.push(first - GAP_X / 2.0);
    }
    for pair in boxes.windows(2) {
        gaps.push((pair[0] + NODE_W + pair[1]) / 2.0);
    }
    if let Some(last) = boxes.last() {
        gaps.push(last + NODE_W + GAP_X / 2.0);
    }
    gaps.into_iter()
        .min_by(|a, b| (a - x).abs().total_cmp(&(b - x).abs()))
        .unwrap_or(x)
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max_chars - 1).collect();
        t.push('…');
        t
    }
}
