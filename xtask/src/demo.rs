//! `cargo xtask demo`: the main job on the embedded example — check, graph (SVG) and audit
//! of `system-config/examples/gateway.ncl`, then the picture's path; then the live device
//! ([`crate::live_demo`]): the development gateway built, booted in QEMU, provisioned
//! zero-touch, a twin change deploying a signed WASM app that reports back, and a twin change
//! updating the OS from slot A to B.

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

    crate::live_demo::run(&out_dir)
}
