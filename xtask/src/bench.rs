//! `cargo xtask bench`: runs the benchmarks; figures are recorded in `docs/benchmarks.md`.
//! `cargo xtask bench nix`: only the Nix build of testudo from source (`nix.rs`).

use crate::{deps, util};

pub fn run(args: &[String]) -> anyhow::Result<()> {
    deps::ensure()?;
    if args.first().is_some_and(|arg| arg == "nix") {
        return crate::nix::bench();
    }
    util::run(util::cargo().args(["bench", "--workspace"]))
}
