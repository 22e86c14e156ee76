//! The source root: the directory the relative paths of a config are resolved in (the WASM
//! modules and trust anchors the plan names, a board kernel under `images/boards/`).
//!
//! It is found from the config file's own location and the files the plan names, never from a
//! `.git` directory: the nearest of the config's directory and its ancestors that holds every
//! such file. A git checkout, a tarball and a copy in the Nix store therefore resolve the same
//! files.

use std::path::{Path, PathBuf};

use testudo_plan::Plan;

use crate::builder::wasm_modules;

/// The paths `plan` names relative to the source root.
pub fn relative_inputs(plan: &Plan) -> Vec<String> {
    let mut inputs: Vec<String> = wasm_modules(plan)
        .into_iter()
        .map(|(_, module)| module)
        .collect();
    inputs.extend(plan.cloud.trust_anchors.iter().cloned());
    inputs.retain(|input| Path::new(input).is_relative());
    inputs
}

/// The nearest of `config_dir` and its ancestors holding every one of `inputs`; `None` when
/// no directory holds them all (the build then names the first missing file).
pub fn find(config_dir: &Path, inputs: &[String]) -> Option<PathBuf> {
    config_dir
        .ancestors()
        .find(|dir| inputs.iter().all(|input| dir.join(input).exists()))
        .map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn nearest_directory_holding_every_input_wins() {
        let tree = tempfile::tempdir().unwrap();
        let root = tree.path();
        let config_dir = root.join("system-config/examples");
        fs::create_dir_all(&config_dir).unwrap();
        fs::create_dir_all(root.join("wasm-apps")).unwrap();
        fs::write(root.join("wasm-apps/app.wasm"), "").unwrap();
        fs::create_dir_all(root.join("trust")).unwrap();
        fs::write(root.join("trust/roots.pem"), "").unwrap();
        let inputs = vec![
            "wasm-apps/app.wasm".to_owned(),
            "trust/roots.pem".to_owned(),
        ];
        assert_eq!(find(&config_dir, &inputs), Some(root.to_path_buf()));
        // A nearer directory with only some of them does not win.
        fs::create_dir_all(config_dir.join("wasm-apps")).unwrap();
        fs::write(config_dir.join("wasm-apps/app.wasm"), "").unwrap();
        assert_eq!(find(&config_dir, &inputs), Some(root.to_path_buf()));
        // No inputs: the config's own directory.
        assert_eq!(find(&config_dir, &[]), Some(config_dir.clone()));
        let missing = vec!["wasm-apps/other.wasm".to_owned()];
        assert_eq!(find(&config_dir, &missing), None);
    }
}
