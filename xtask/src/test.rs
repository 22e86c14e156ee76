//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use crate::{deps, util};

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    deps::ensure()?;
    util::run(util::cargo().args(["fmt", "--all", "--", "--check"]))?;
    util::run(util::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    util::run(util::cargo().args(["test", "--workspace", "--no-fail-fast"]))?;
    Ok(())
}
