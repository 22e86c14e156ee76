//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use crate::{deps, util};

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    deps::ensure()?;
    util::run(util::cargo().args(["fmt", "--all", "--", "--check"]))?;
    crate::contract::check()?;
    crate::codemap::check()?;
    util::run(util::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The VM and `testudo run` tests put the workspace's daemons (testudo-init, drivers, agent,
    // WASM host) into images and sandboxes: `cargo test` only builds the binaries of packages
    // that have integration tests, so build every binary first.
    util::build_workspace_binaries()?;
    // `testudo run` of the gateway example runs its WASM apps from `wasm-apps/*.wasm`, which
    // are build outputs (not in git): compile them from their C sources as the demo does.
    crate::apps::run(&[])?;
    util::run(util::cargo().args(["test", "--workspace", "--no-fail-fast"]))?;
    // The flake: testudo from source, the image through Nix against `testudo build`, `nix
    // flake check` (VM boot included) and the Hydra jobs.
    crate::nix::ci()
}
