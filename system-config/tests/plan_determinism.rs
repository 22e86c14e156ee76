//! Promise: the plan is canonical — byte-identical across runs and machines (golden file),
//! hashed over exactly those bytes, free of absolute paths, and it round-trips.

use std::path::Path;

use sha2::{Digest, Sha256};
use testudo_config::{load_plan, Plan};

fn gateway_json() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gateway.ncl");
    let (plan, _) = load_plan(&path).expect("gateway loads");
    plan.to_canonical_json().expect("plan serialises")
}

#[test]
fn two_evaluations_give_identical_bytes() {
    assert_eq!(gateway_json(), gateway_json());
}

#[test]
fn plan_matches_the_golden_file() {
    // Regenerate after an intended change:
    //   testudo plan system-config/examples/gateway.ncl -o system-config/tests/golden/gateway.plan.json
    let golden = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gateway.plan.json"),
    )
    .unwrap();
    assert_eq!(gateway_json(), golden);
}

#[test]
fn content_hash_is_sha256_of_the_canonical_bytes() {
    let json = gateway_json();
    let plan = Plan::from_bytes(json.as_bytes()).unwrap();
    let expected = hex::encode(Sha256::digest(json.as_bytes()));
    assert_eq!(plan.content_hash().unwrap(), expected);
    // Round trip: parse + re-serialise gives the same bytes.
    assert_eq!(plan.to_canonical_json().unwrap(), json);
}

#[test]
fn keys_are_sorted_and_there_are_no_absolute_paths_but_the_kernel() {
    let json = gateway_json();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    fn walk(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                let keys: Vec<&String> = map.keys().collect();
                let mut sorted = keys.clone();
                sorted.sort();
                assert_eq!(keys, sorted, "unsorted keys at {path}");
                for (k, item) in map {
                    walk(item, &format!("{path}.{k}"), out);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    walk(item, path, out);
                }
            }
            serde_json::Value::String(s) if s.starts_with('/') && !s.starts_with("/dev/") => {
                out.push(format!("{path} = {s}"));
            }
            _ => {}
        }
    }
    let mut absolute = Vec::new();
    walk(&value, "", &mut absolute);
    assert_eq!(absolute, [".board.kernel = /vmlinuz"]);
    assert!(!json.contains(env!("CARGO_MANIFEST_DIR")));
}
