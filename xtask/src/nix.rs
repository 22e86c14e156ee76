//! `cargo xtask nix`: the flake, run with the set-up it needs on a Debian machine without
//! nixpkgs: sandboxed builds with the host's tools and Rust toolchain mapped in (the paths
//! come from `nix/host-pkgs.nix`, `hostPkgsMeta`), offline, flakes enabled.
//!
//! - `cargo xtask nix ARGS...` runs `nix ARGS...` that way, e.g. `cargo xtask nix build
//!   .#gateway-image-development-keys` or `cargo xtask nix flake check`.
//! - `cargo xtask nix ci` is what `cargo xtask test` runs after the cargo tests:
//!   1. `nix build .#testudo`: testudo from source (dependencies and workspace in separate
//!      derivations; GC roots under the target dir keep them for the next run);
//!   2. `nix build --impure .#gateway-image` with named keys is byte for byte the image that
//!      this testudo's `testudo build` makes of the checkout with the same keys (the clock:
//!      the last commit's time on both sides);
//!   3. a `git archive` tarball of the checkout (plus the built apps) builds the same image
//!      with no flags;
//!   4. `nix flake check` (the examples' config checks, the reproducibility check, the VM boot
//!      and rollback checks);
//!   5. `hydraJobs`, walked the way Hydra's evaluator walks them (`hydra/eval-jobs.nix`):
//!      every job evaluates to a derivation and builds.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::util;

/// The system the flake builds for.
const SYSTEM: &str = "x86_64-linux";

/// The outputs of an image build, compared byte for byte.
const IMAGE_OUTPUTS: &[&str] = &["rootfs.img", "disk.img", "update.raucb", "manifest.json"];

pub fn run(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some(_) => util::run(nix()?.args(args)),
        None => bail!("usage: cargo xtask nix <ci | NIX-ARGS...>"),
    }
}

/// `nix` with flakes, the sandbox and the host paths `lib.hostPkgs` needs, offline.
pub fn nix() -> anyhow::Result<Command> {
    let mut command = Command::new("nix");
    command.env("NIX_CONFIG", nix_config()?).arg("--offline");
    Ok(command)
}

/// The `NIX_CONFIG` of every build: `sandbox-paths` from `hostPkgsMeta`, the Rust sysroot
/// mapped where `hostPkgs.rustToolchain` looks for it.
fn nix_config() -> anyhow::Result<String> {
    let host_pkgs = util::workspace_root().join("nix/host-pkgs.nix");
    let meta = format!(
        "let m = (import {} {{ system = \"{SYSTEM}\"; }}).hostPkgsMeta; \
         in builtins.concatStringsSep \" \" m.sandboxPaths + \"\\n\" + m.rustSysroot",
        host_pkgs.display()
    );
    let out = output(
        Command::new("nix")
            .env("NIX_CONFIG", "experimental-features = nix-command flakes")
            .args(["eval", "--offline", "--impure", "--raw", "--expr", &meta]),
    )?;
    let (paths, rust_target) = out
        .split_once('\n')
        .context("hostPkgsMeta: expected sandbox paths and the Rust sysroot's mount point")?;
    let sysroot = output(Command::new("rustc").args(["--print", "sysroot"]))?;
    Ok(format!(
        "experimental-features = nix-command flakes\n\
         sandbox = true\n\
         sandbox-paths = {paths} {rust_target}={}\n\
         download-attempts = 5\n\
         connect-timeout = 30\n\
         substituters =\n",
        sysroot.trim()
    ))
}

/// What CI runs: see the module documentation.
pub fn ci() -> anyhow::Result<()> {
    let work = util::target_dir().join("nix-ci");
    if work.exists() {
        std::fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    let built = build_testudo_from_source()?;
    let keys = work.join("keys");
    util::run(
        Command::new(built.join("testudo"))
            .arg("keys")
            .arg("init")
            .arg(&keys),
    )?;
    let checkout_image = nix_image_is_testudo_build(&built, &keys, &work)?;
    let tarball = tarball_builds_the_same(&built, &keys, &work, &checkout_image)?;
    only_workspace_rebuilds(&tarball, &work.join("edited"))?;
    util::run(nix()?.args(["flake", "check", "-L"]))?;
    hydra_jobs(&util::workspace_root())
}

/// The gateway example's config, relative to a source tree.
const GATEWAY: &str = "system-config/examples/gateway.ncl";

/// `nix build .#testudo` (the dependencies first, both kept by GC roots under the target dir
/// for the next run); returns the `bin` directory.
fn build_testudo_from_source() -> anyhow::Result<PathBuf> {
    let roots = util::target_dir().join("nix-roots");
    std::fs::create_dir_all(&roots)?;
    for (attr, link) in [("testudo.deps", "deps"), ("testudo", "testudo")] {
        util::run(
            nix()?
                .args(["build", "-L", "-o"])
                .arg(roots.join(link))
                .arg(format!(".#packages.{SYSTEM}.{attr}")),
        )?;
    }
    Ok(roots.join("testudo/bin"))
}

/// `nix build --impure .#gateway-image` with `keys` gives the image `testudo build` (the one
/// in `bin`) makes of the checkout with the same keys; returns the latter's directory.
fn nix_image_is_testudo_build(bin: &Path, keys: &Path, work: &Path) -> anyhow::Result<PathBuf> {
    let nix_image = work.join("nix-image");
    util::run(
        nix()?
            .args(["build", "-L", "--impure", "-o"])
            .arg(&nix_image)
            .arg(format!(".#packages.{SYSTEM}.gateway-image"))
            .env("TESTUDO_KEYS", keys),
    )?;
    let checkout_image = work.join("checkout-image");
    let config = util::workspace_root().join(GATEWAY);
    build_image(bin, &config, keys, work, &checkout_image)?;
    same_image(
        &nix_image,
        &checkout_image,
        "`nix build`",
        "`testudo build` of the checkout",
    )?;
    Ok(checkout_image)
}

/// A `git archive` tarball of HEAD, with the built apps copied beside their sources, builds
/// `checkout_image` with no flags; returns the unpacked tree.
fn tarball_builds_the_same(
    bin: &Path,
    keys: &Path,
    work: &Path,
    checkout_image: &Path,
) -> anyhow::Result<PathBuf> {
    let root = util::workspace_root();
    let tree = work.join("tarball");
    std::fs::create_dir_all(&tree)?;
    util::run(Command::new("sh").arg("-c").arg(format!(
        "git archive --format=tar HEAD | tar -x -C '{}'",
        tree.display()
    )))?;
    for entry in std::fs::read_dir(root.join("wasm-apps"))? {
        let path = entry?.path();
        if let (Some("wasm"), Some(name)) =
            (path.extension().and_then(|e| e.to_str()), path.file_name())
        {
            std::fs::copy(&path, tree.join("wasm-apps").join(name))?;
        }
    }
    let image = work.join("tarball-image");
    build_image(bin, &tree.join(GATEWAY), keys, work, &image)?;
    same_image(
        &image,
        checkout_image,
        "a `git archive` tarball",
        "the checkout",
    )?;
    Ok(tree)
}

/// `cargo xtask bench nix`: testudo from source, cold: the dependencies' derivation, then the
/// workspace's on top of it (what a commit that changes only `.rs` files rebuilds). Removes
/// both outputs from the store first, so it costs a full release build.
pub fn bench() -> anyhow::Result<()> {
    let roots = util::target_dir().join("nix-roots");
    std::fs::create_dir_all(&roots)?;
    let mut outputs = Vec::new();
    for attr in ["testudo", "testudo.deps"] {
        let path = output(
            nix()?
                .args(["eval", "--raw"])
                .arg(format!(".#packages.{SYSTEM}.{attr}.outPath")),
        )?;
        outputs.push(path);
    }
    for link in ["testudo", "deps"] {
        let _ = std::fs::remove_file(roots.join(link));
    }
    let existing: Vec<&String> = outputs.iter().filter(|p| Path::new(p).exists()).collect();
    if !existing.is_empty() {
        util::run(nix()?.args(["store", "delete"]).args(existing))?;
    }
    let mut seconds = Vec::new();
    for (attr, link) in [("testudo.deps", "deps"), ("testudo", "testudo")] {
        let start = std::time::Instant::now();
        util::run(
            nix()?
                .args(["build", "-o"])
                .arg(roots.join(link))
                .arg(format!(".#packages.{SYSTEM}.{attr}")),
        )?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    println!(
        "nix build of testudo from source: dependencies {:.0} s, workspace {:.0} s \
         (a .rs change rebuilds the workspace only: {:.0}% of the cold build)",
        seconds[0],
        seconds[1],
        100.0 * seconds[1] / (seconds[0] + seconds[1])
    );
    Ok(())
}

/// A change to one `.rs` file gives testudo's workspace derivation a new hash and leaves its
/// dependencies' derivation as it was (so only the workspace is rebuilt): `tree` and a copy
/// in `edited` with one source file changed, evaluated side by side.
fn only_workspace_rebuilds(tree: &Path, edited: &Path) -> anyhow::Result<()> {
    util::run(Command::new("cp").arg("-a").arg(tree).arg(edited))?;
    let file = edited.join("images/src/kernel.rs");
    let mut text = std::fs::read_to_string(&file)?;
    text.push_str("\n// edited\n");
    std::fs::write(&file, text)?;
    let drv = |src: &Path, attr: &str| -> anyhow::Result<String> {
        output(nix()?.args(["eval", "--impure", "--raw", "--expr"]).arg(format!(
            "((builtins.getFlake \"git+file://{}\").lib.mkTestudo {{ \
               pkgs = (builtins.getFlake \"git+file://{}\").lib.hostPkgs; src = {}; }}){attr}.drvPath",
            util::workspace_root().display(),
            util::workspace_root().display(),
            src.display()
        )))
    };
    let (deps, deps_edited) = (drv(tree, ".deps")?, drv(edited, ".deps")?);
    let (workspace, workspace_edited) = (drv(tree, "")?, drv(edited, "")?);
    if deps != deps_edited {
        bail!("a .rs change changed the dependencies' derivation ({deps} -> {deps_edited})");
    }
    if workspace == workspace_edited {
        bail!("a .rs change did not change the workspace derivation ({workspace})");
    }
    eprintln!("nix ci: a .rs change rebuilds {workspace_edited} only, not {deps}");
    Ok(())
}

/// `testudo build CONFIG` with `keys` and the binaries in `bin` (its own testudo), nothing
/// else named (the source root and the clock are found from CONFIG's tree).
fn build_image(
    bin: &Path,
    config: &Path,
    keys: &Path,
    work: &Path,
    out: &Path,
) -> anyhow::Result<()> {
    util::run(
        Command::new(bin.join("testudo"))
            .arg("build")
            .arg(config)
            .arg("-o")
            .arg(out)
            .arg("--keys")
            .arg(keys)
            .arg("--bin-dir")
            .arg(bin)
            .arg("--cache")
            .arg(work.join("cache"))
            .arg("--plain")
            .env_remove("SOURCE_DATE_EPOCH"),
    )
}

/// Fails unless the four outputs in `a` and `b` are byte for byte the same.
fn same_image(a: &Path, b: &Path, a_name: &str, b_name: &str) -> anyhow::Result<()> {
    for name in IMAGE_OUTPUTS {
        let (left, right) = (a.join(name), b.join(name));
        let same = std::fs::read(&left).with_context(|| format!("reading {}", left.display()))?
            == std::fs::read(&right).with_context(|| format!("reading {}", right.display()))?;
        if !same {
            bail!("{name} differs between {a_name} and {b_name}");
        }
    }
    eprintln!(
        "nix ci: {a_name} and {b_name} give identical {}",
        IMAGE_OUTPUTS.join(", ")
    );
    Ok(())
}

/// Lists the jobs of `hydraJobs` with `hydra/eval-jobs.nix` (every one must be a
/// derivation) and builds them all with `nix-store -r`, as Hydra's queue runner would.
fn hydra_jobs(root: &Path) -> anyhow::Result<()> {
    let jobs = output(nix()?.args([
        "eval",
        "--impure",
        "--json",
        "--expr",
        &format!(
            "import {}/hydra/eval-jobs.nix {{ flake = builtins.getFlake \"git+file://{}\"; }}",
            root.display(),
            root.display()
        ),
    ]))?;
    let jobs: Vec<serde_json::Value> =
        serde_json::from_str(&jobs).context("parsing the job list")?;
    if jobs.is_empty() {
        bail!("hydraJobs has no jobs");
    }
    let mut realise = Command::new("nix-store");
    realise
        .env("NIX_CONFIG", nix_config()?)
        .args(["--realise", "--quiet"]);
    for job in &jobs {
        let (Some(name), Some(drv)) = (job["job"].as_str(), job["drvPath"].as_str()) else {
            bail!("job without a name or derivation: {job}");
        };
        eprintln!("nix ci: hydra job {name} -> {drv}");
        realise.arg(drv);
    }
    output(&mut realise)?;
    eprintln!("nix ci: {} hydra jobs built", jobs.len());
    Ok(())
}

/// Runs `cmd` and returns its stdout; fails with its stderr.
fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}
