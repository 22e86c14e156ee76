//! `cargo xtask demo`: the main job on the embedded example — check, graph (SVG) and audit
//! of `system-config/examples/gateway.ncl`, then the picture's path; then build its image and
//! boot it in QEMU to the ready line.

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

    // Image (issue 7): the workspace's binaries and WASM apps, then build and boot the image
    // under QEMU (TCG) until testudo-init prints its ready line.
    util::run(util::cargo().args(["build", "--quiet", "--workspace", "--bins"]))?;
    crate::apps::run(&[])?;
    let image = out_dir.join("image");
    testudo(&[
        "build".as_ref(),
        GATEWAY.as_ref(),
        "-o".as_ref(),
        image.as_os_str(),
        "--plain".as_ref(),
    ])?;
    let disk = image.join("disk.img");
    testudo(&[
        "vm".as_ref(),
        "run".as_ref(),
        disk.as_os_str(),
        "--expect".as_ref(),
        "testudo-init: ready:".as_ref(),
        "--timeout".as_ref(),
        "300".as_ref(),
        "--snapshot".as_ref(),
    ])?;
    println!("gateway image (booted to ready): {}", image.display());
    Ok(())
}
