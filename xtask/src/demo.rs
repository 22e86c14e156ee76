//! `cargo xtask demo`: the main job on the embedded example.

use crate::{deps, util};

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    deps::ensure()?;
    util::run(util::cargo().args([
        "run",
        "--quiet",
        "--package",
        "testudo",
        "--",
        "check",
        "system-config/examples/gateway.ncl",
    ]))
}
