//! The dependency graph of a plan: start order and who depends on whom.

use std::collections::{BTreeMap, BTreeSet};

use testudo_plan::plan::Plan;

use crate::InitError;

/// Name of init itself as a route provider (its `status` capability).
pub const INIT_COMPONENT: &str = testudo_plan::builtin::INIT;

/// Direct dependencies of every component: its `after` list plus the providers of its routes.
pub fn dependencies(plan: &Plan) -> Result<BTreeMap<String, BTreeSet<String>>, InitError> {
    let mut deps = BTreeMap::new();
    for (name, component) in &plan.components {
        let mut direct: BTreeSet<String> = component.after.iter().cloned().collect();
        direct.extend(component.uses.values().map(|route| route.component.clone()));
        direct.remove(INIT_COMPONENT);
        direct.remove(name);
        for dependency in &direct {
            if !plan.components.contains_key(dependency) {
                return Err(InitError::UnknownDependency {
                    component: name.clone(),
                    dependency: dependency.clone(),
                });
            }
        }
        deps.insert(name.clone(), direct);
    }
    Ok(deps)
}

/// A start order where every component comes after its dependencies; ties are broken by
/// name, so the order is the same on every run.
pub fn start_order(deps: &BTreeMap<String, BTreeSet<String>>) -> Result<Vec<String>, InitError> {
    let mut remaining: BTreeMap<&str, BTreeSet<&str>> = deps
        .iter()
        .map(|(name, d)| (name.as_str(), d.iter().map(String::as_str).collect()))
        .collect();
    let mut order = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<&str> = remaining
            .iter()
            .filter(|(_, d)| d.is_empty())
            .map(|(name, _)| *name)
            .collect();
        if ready.is_empty() {
            return Err(InitError::DependencyCycle {
                components: remaining.keys().copied().collect::<Vec<_>>().join(", "),
            });
        }
        for name in ready {
            remaining.remove(name);
            for d in remaining.values_mut() {
                d.remove(name);
            }
            order.push(name.to_owned());
        }
    }
    Ok(order)
}

/// Every component that (transitively) depends on `name`.
pub fn dependents(deps: &BTreeMap<String, BTreeSet<String>>, name: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut frontier = vec![name.to_owned()];
    while let Some(current) = frontier.pop() {
        for (candidate, d) in deps {
            if d.contains(&current) && found.insert(candidate.clone()) {
                frontier.push(candidate.clone());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        edges
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn order_respects_dependencies_and_is_stable() {
        let deps = graph(&[
            ("app", &["log", "sensor"]),
            ("sensor", &["log"]),
            ("log", &[]),
            ("net", &[]),
        ]);
        assert_eq!(
            start_order(&deps).expect("acyclic"),
            ["log", "net", "sensor", "app"]
        );
        assert_eq!(
            dependents(&deps, "log"),
            ["app", "sensor"].iter().map(|s| s.to_string()).collect()
        );
        assert!(dependents(&deps, "app").is_empty());
    }

    #[test]
    fn cycles_are_reported() {
        let deps = graph(&[("a", &["b"]), ("b", &["a"]), ("c", &[])]);
        assert!(
            matches!(start_order(&deps), Err(InitError::DependencyCycle { components }) if components == "a, b")
        );
    }
}
