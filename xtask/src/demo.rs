//! `cargo xtask demo`: the main job on the embedded example — check, graph (SVG) and audit
//! of `system-config/examples/gateway.ncl`, then the picture's path; then build its image and
//! boot it in QEMU to the ready line.

use crate::{deps, util};

const GATEWAY: &str = "system-config/examples/gateway.ncl";

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    deps::ensure()?;
    let out_dir = util::target_dir().join("demo");
    std::fs::create_dir_all(&out_dir)?;
    let svg = out_dir.join("gateway.svg");

    // The image needs every daemon (testudo-init, drivers, agent, WASM host) and the WASM apps;
    // build them once and run the built `testudo` directly.
    util::build_workspace_binaries()?;
    crate::apps::run(&[])?;
    let testudo =
        |args: &[&std::ffi::OsStr]| util::run(util::workspace_binary("testudo").args(args));
    testudo(&["check".as_ref(), GATEWAY.as_ref()])?;
    testudo(&[
        "graph".as_ref(),
        GATEWAY.as_ref(),
        "-o".as_ref(),
        svg.as_os_str(),
    ])?;
    testudo(&["audit".as_ref(), GATEWAY.as_ref()])?;
    println!("capability graph of the gateway: {}", svg.display());

    // Build the image and boot it under QEMU (TCG) until testudo-init prints its ready line.
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
