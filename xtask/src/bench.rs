//! `cargo xtask bench`: runs the benchmarks; figures are recorded in `docs/benchmarks.md`.

use crate::{deps, util};

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    deps::ensure()?;
    util::run(util::cargo().args(["bench", "--workspace"]))
}
