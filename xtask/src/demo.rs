//! `cargo xtask demo`: the main job on the embedded example — check, graph (SVG) and audit
//! of `system-config/examples/gateway.ncl`, then the picture's path.

use std::path::PathBuf;

use crate::{deps, util};

const GATEWAY: &str = "system-config/examples/gateway.ncl";

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    deps::ensure()?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::workspace_root().join("target"));
    let out_dir = target_dir.join("demo");
    std::fs::create_dir_all(&out_dir)?;
    let svg = out_dir.join("gateway.svg");

    let testudo = |args: &[&std::ffi::OsStr]| {
        let mut cmd = util::cargo();
        cmd.args(["run", "--quiet", "--package", "testudo", "--"]);
        cmd.args(args);
        util::run(&mut cmd)
    };
    testudo(&["check".as_ref(), GATEWAY.as_ref()])?;
    testudo(&[
        "graph".as_ref(),
        GATEWAY.as_ref(),
        "-o".as_ref(),
        svg.as_os_str(),
    ])?;
    testudo(&["audit".as_ref(), GATEWAY.as_ref()])?;
    println!("capability graph of the gateway: {}", svg.display());
    Ok(())
}
