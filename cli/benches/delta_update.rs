//! Benchmark: how much an OS update of the gateway downloads as a delta bundle, for three
//! kinds of change, against the full bundle and against what other tools would download, all
//! on real build outputs in one run.
//!
//! The gateway (`system-config/examples/gateway.ncl`, 0.1.0) is built with `testudo build`
//! (`SOURCE_DATE_EPOCH=1700000000`, the workspace's release binaries, its two WASM apps
//! compiled from C as `cargo xtask apps` compiles them), then rebuilt three times, one change
//! each:
//! - (a) one WASM app after a one-line change (a log string of `sensor-reader.c`), recompiled
//!   the same way (the image carries its `.wasm` and the `.cwasm` the WASM host precompiles);
//! - (b) one native binary after a one-function change (`testudo-agent`: how long it waits
//!   before asking the hub again). The base's agent and the changed one are built the same
//!   way: from one copy of the committed sources (`git archive HEAD`) in
//!   `target/delta-bench/src`, `cargo build --release -p testudo-agent`, its own target dir
//!   `target/delta-bench/target` (kept: reruns are incremental); the unmodified copy is
//!   built again after the edit and must give the same bytes;
//! - (c) a plan-only change: version 0.2.0, as the demo's next image.
//!
//! For each: the full bundle (`update.raucb`), the delta bundle against the base's full bundle
//! (`testudo_updater::delta::create`, timed), the rootfs image; anchors on the same two
//! rootfs images (`common/delta_anchors.rs`): RAUC's block hash index (4 KiB blocks a
//! streaming rauc fetches, plus the index; and the same read through this compressed bundle),
//! casync's new chunks plus index, `zstd --patch-from`, Debian's `bsdiff`. Then the time to
//! apply the full and the delta bundle on file-backed slots (`updater/tests/common`: open +
//! install with the default options, read-back included), median of 3 each.
//!
//! Development keys are kept in `target/delta-bench/data-home` (signatures, hence sizes, are
//! the same every run); the run's outputs in `target/delta-bench/run` (replaced each run).
//!
//! `cargo bench -p testudo --features images,updater --bench delta_update` (release binaries:
//! build the workspace first with `cargo build --release --workspace --bins`). Needs casync,
//! zstd, bsdiff, squashfs-tools, clang-14 (the apps), git and tar.

#![allow(clippy::unwrap_used)] // a benchmark: a failed set-up step is a failed run

#[path = "common/delta_anchors.rs"]
mod delta_anchors;
#[path = "common/native_rebuild.rs"]
mod native_rebuild;
#[path = "common/timing.rs"]
mod timing;
#[path = "../../updater/tests/common/mod.rs"]
mod updater_common;
#[path = "../tests/vm_common/mod.rs"]
mod vm_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use delta_anchors::{size, BlockIndexDownload};
use native_rebuild::SourceCopy;
use testudo_updater::keys::DevKeys;
use testudo_updater::signature::CheckPurpose;
use testudo_updater::{bundle, Keyring};
use timing::{median, seconds};
use vm_common::{repo, run, testudo_command};

/// The system built.
const CONFIG: &str = "system-config/examples/gateway.ncl";
/// The repository files its build reads besides the apps (its trust anchors).
const EXTRA_SOURCES: &[&str] = &["system-config/trust/azure-iot-roots.pem"];
/// Its WASM apps (`wasm-apps/<name>.c`, at `wasm-apps/<name>.wasm` in the source root).
const APPS: &[&str] = &["sensor-reader", "forwarder"];

/// (a): the app changed and its one line, before and after.
const APP: &str = "sensor-reader";
const APP_BEFORE: &str = r#"fprintf(stderr, "sensor-reader: publishing: %s\n","#;
const APP_AFTER: &str = r#"fprintf(stderr, "sensor-reader: cannot publish: %s\n","#;

/// (b): the binary changed, its package, and the function's body before and after (the
/// agent's wait before asking the hub again: a `Retry-After: 0` waits 1 s, and 5xx answers
/// back off like throttling).
const NATIVE_PACKAGE: &str = "testudo-agent";
const NATIVE_BIN: &str = "testudo-agent";
const NATIVE_FILE: &str = "os/agent/src/agent.rs";
const NATIVE_BEFORE: &str = "            Some(seconds) => Duration::from_secs(seconds.min(300)),
            None if status == 429 => self.config.backoff.random_delay(3),";
const NATIVE_AFTER: &str =
    "            Some(seconds) => Duration::from_secs(seconds.clamp(1, 300)),
            None if status == 429 || status >= 500 => self.config.backoff.random_delay(3),";

/// (c): the plan-only change (Nickel merged into the config).
const PLAN_CHANGE: &str = "version | force = \"0.2.0\",";

/// Installs timed per bundle.
const SAMPLES: usize = 3;
/// Tools the run needs besides `testudo` and `cargo`, with their Debian packages.
const TOOLS: &[(&str, &str)] = &[
    ("casync", "casync"),
    ("zstd", "zstd"),
    ("bsdiff", "bsdiff"),
    ("unsquashfs", "squashfs-tools"),
    ("strip", "binutils"),
    ("git", "git"),
    ("tar", "tar"),
    (
        "clang-14",
        "clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32",
    ),
];

/// Fails naming the first of [`TOOLS`] that is not on PATH.
fn require_tools() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for (tool, package) in TOOLS {
        assert!(
            std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()),
            "`{tool}` is needed by this benchmark: install Debian package(s) {package}"
        );
    }
}

/// `text` with `before` replaced by `after`, which must occur exactly once.
fn edit(text: &str, before: &str, after: &str, what: &str) -> String {
    assert_eq!(
        text.matches(before).count(),
        1,
        "{what}: the text to change is not there once (the source changed: update the bench)"
    );
    text.replacen(before, after, 1)
}

/// Compiles `APPS` from the C sources in `sources` into `out` (as `cargo xtask apps` does).
fn compile_apps(sources: &Path, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    for app in APPS {
        let source = sources.join(format!("{app}.c"));
        let wasm = out.join(format!("{app}.wasm"));
        if let Err(error) = testudo_testkit::wasm::compile_c_app(&source, &wasm, &[]) {
            panic!("{error}");
        }
    }
}

/// The apps' C sources copied to `dir`, `APP`'s edited by `change` (`(before, after)`).
fn app_sources(dir: &Path, change: Option<(&str, &str)>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for app in APPS {
        let name = format!("{app}.c");
        let mut text = std::fs::read_to_string(repo().join("wasm-apps").join(&name)).unwrap();
        if let (true, Some((before, after))) = (*app == APP, change) {
            text = edit(&text, before, after, &name);
        }
        std::fs::write(dir.join(&name), text).unwrap();
    }
    dir.to_path_buf()
}

/// What one image is built from.
struct Inputs<'a> {
    /// Directory of the compiled apps.
    apps: &'a Path,
    /// Directory searched first for native binaries (then the workspace's release binaries).
    native: &'a Path,
    /// Nickel merged into the config.
    extra: &'a str,
}

/// Builds the gateway from `inputs` into `work/name/out` with `testudo build`: a source root
/// of its own (apps and extra sources), the config wrapped in `(import CONFIG) & { extra }`
/// for every image alike. Its output directory.
fn build_image(work: &Path, name: &str, inputs: &Inputs, data_home: &Path) -> PathBuf {
    let root = work.join(name);
    let src = root.join("src");
    std::fs::create_dir_all(src.join("wasm-apps")).unwrap();
    for app in APPS {
        let file = format!("{app}.wasm");
        std::fs::copy(inputs.apps.join(&file), src.join("wasm-apps").join(&file)).unwrap();
    }
    for file in EXTRA_SOURCES {
        let target = src.join(file);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(repo().join(file), &target).unwrap();
    }
    let config = root.join("config.ncl");
    std::fs::write(
        &config,
        format!(
            "(import \"{}\")\n& {{\n{}\n}}\n",
            repo().join(CONFIG).display(),
            inputs.extra
        ),
    )
    .unwrap();
    let out = root.join("out");
    let mut args: Vec<String> = vec![
        "build".into(),
        config.display().to_string(),
        "-o".into(),
        out.display().to_string(),
        "--cache".into(),
        work.join("cache").display().to_string(),
        "--source-root".into(),
        src.display().to_string(),
        "--plain".into(),
        "--bin-dir".into(),
        inputs.native.display().to_string(),
    ];
    for dir in vm_common::bin_dirs() {
        args.push("--bin-dir".into());
        args.push(dir.display().to_string());
    }
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let built = testudo_command(&arg_refs, data_home).output().unwrap();
    assert!(
        built.status.success(),
        "building {name} failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    out
}

/// `binary` stripped as the image strips it.
fn stripped(binary: &Path) -> Vec<u8> {
    let out = binary.with_extension("stripped");
    run(
        "strip",
        &[
            "--strip-all",
            "-o",
            out.to_str().unwrap(),
            binary.to_str().unwrap(),
        ],
    );
    std::fs::read(out).unwrap()
}

/// How two files' bytes compare, in words.
fn compare(a: &[u8], b: &[u8]) -> String {
    if a == b {
        return format!("identical ({} bytes)", a.len());
    }
    let differing = a.iter().zip(b).filter(|(x, y)| x != y).count();
    let first = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    format!(
        "differ: {} and {} bytes, {differing} of the common length differ at the same offset, \
         the first at {first}",
        a.len(),
        b.len()
    )
}

/// The files of the squashfs `image` (extracted into `dir`), by path relative to its root.
fn rootfs_files(image: &Path, dir: &Path) -> BTreeMap<String, Vec<u8>> {
    run(
        "unsquashfs",
        &[
            "-q",
            "-n",
            "-d",
            dir.to_str().unwrap(),
            image.to_str().unwrap(),
        ],
    );
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
    files
}

/// The files that differ between two rootfs trees, with their sizes.
fn changed_files(old: &BTreeMap<String, Vec<u8>>, new: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| old.get(*name) != new.get(*name))
        .map(|name| {
            let len = |files: &BTreeMap<String, Vec<u8>>| {
                files
                    .get(name)
                    .map_or("-".to_owned(), |b| b.len().to_string())
            };
            format!("/{name} ({} -> {} bytes)", len(old), len(new))
        })
        .collect()
}

/// The base every variant is measured against.
struct Base {
    out: PathBuf,
    rootfs: PathBuf,
    version: String,
    compatible: String,
    hashes: Vec<[u8; 32]>,
    files: BTreeMap<String, Vec<u8>>,
    casync_store: PathBuf,
}

/// One variant's figures.
struct Figures {
    rootfs: u64,
    full: u64,
    delta: u64,
    /// The bsdiff patch inside it.
    patch: u64,
    delta_create: Duration,
    rauc: BlockIndexDownload,
    rauc_bundle: u64,
    casync: u64,
    zstd: u64,
    bsdiff: u64,
    changed: Vec<String>,
    apply_full: Vec<Duration>,
    apply_delta: Vec<Duration>,
}

/// Times opening + installing `bundle` on a fresh file-backed device running the base.
fn apply_once(base: &Base, keyring: &Path, bundle_path: &Path, dir: &Path) -> Duration {
    let device_dir = dir.join("device");
    let device = updater_common::device(
        &device_dir,
        keyring,
        &base.compatible,
        &base.rootfs,
        &base.version,
    );
    // What `testudo update install BUNDLE` does on the device booted from A: open (CMS
    // signature, verity), then install with the default options (read-back included).
    let started = Instant::now();
    let opened = bundle::open(bundle_path, &updater_common::keyring(keyring)).unwrap();
    device.install("A", &opened).unwrap();
    let took = started.elapsed();
    std::fs::remove_dir_all(&device_dir).unwrap();
    took
}

/// Every figure of the variant built in `out`, against `base`.
fn measure(base: &Base, out: &Path, work: &Path, keys: &DevKeys) -> Figures {
    std::fs::create_dir_all(work).unwrap();
    let rootfs = out.join("rootfs.img");
    let full = out.join("update.raucb");

    let keyring = Keyring::load(&keys.ca_cert, CheckPurpose::default()).unwrap();
    let from = bundle::open(&base.out.join("update.raucb"), &keyring).unwrap();
    let to = bundle::open(&full, &keyring).unwrap();
    let delta = work.join("delta.raucb");
    let started = Instant::now();
    let created = testudo_updater::delta::create(&from, &to, &keys.signer(), &delta).unwrap();
    let delta_create = started.elapsed();
    let patch = created.manifest.images.iter().map(|image| image.size).sum();

    let hashes = delta_anchors::block_hashes(&rootfs, work);
    let rauc = delta_anchors::block_index_download(&base.hashes, &hashes);
    let compression = delta_anchors::bundle_squashfs_compression(&full);
    let rauc_bundle = delta_anchors::through_compressed_bundle(&rootfs, &rauc, &compression);

    let store = work.join("casync-store");
    let index = work.join("rootfs.caibx");
    delta_anchors::casync_make(&rootfs, &store, &index);
    let casync = delta_anchors::casync_download(&base.casync_store, &store, &index);

    let largest = size(&rootfs).max(size(&base.rootfs));
    let zstd = delta_anchors::zstd_patch(
        &base.rootfs,
        &rootfs,
        &delta_anchors::zstd_patch_flags(largest),
        &work.join("rootfs.img.zst"),
    );
    let bsdiff = delta_anchors::bsdiff_patch(&base.rootfs, &rootfs, &work.join("rootfs.bsdiff"));
    let changed = changed_files(&base.files, &rootfs_files(&rootfs, &work.join("tree")));

    let mut apply_full = Vec::new();
    let mut apply_delta = Vec::new();
    for _ in 0..SAMPLES {
        // Alternated, so that the machine's drift falls on both alike.
        apply_full.push(apply_once(base, &keys.ca_cert, &full, work));
        apply_delta.push(apply_once(base, &keys.ca_cert, &delta, work));
    }
    Figures {
        rootfs: size(&rootfs),
        full: size(&full),
        delta: size(&delta),
        patch,
        delta_create,
        rauc,
        rauc_bundle,
        casync,
        zstd,
        bsdiff,
        changed,
        apply_full,
        apply_delta,
    }
}

/// `bytes` and their share of `of`.
fn share(bytes: u64, of: u64) -> String {
    format!("{bytes:>10} ({:>6.2}%)", 100.0 * bytes as f64 / of as f64)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("delta_update: bench");
        return;
    }
    require_tools();
    let repo = repo();
    let bench = repo.join("target/delta-bench");
    let work = bench.join("run");
    if work.exists() {
        std::fs::remove_dir_all(&work).unwrap();
    }
    std::fs::create_dir_all(&work).unwrap();
    let data_home = bench.join("data-home");
    let keys = DevKeys::paths(&data_home.join("testudo/dev-keys"));

    // (b)'s binary: unmodified, edited, unmodified again, from one copy of HEAD.
    let copy = SourceCopy::of_head(&repo, &bench);
    let original = copy
        .read(NATIVE_FILE)
        .replacen(NATIVE_AFTER, NATIVE_BEFORE, 1);
    let edited = edit(&original, NATIVE_BEFORE, NATIVE_AFTER, NATIVE_FILE);
    copy.set(NATIVE_FILE, &original);
    let native_base = work.join("native-base");
    let native_changed = work.join("native-changed");
    let native_again = work.join("native-again");
    let (base_bin, base_build) = copy.build(NATIVE_PACKAGE, NATIVE_BIN, &native_base);
    copy.set(NATIVE_FILE, &edited);
    let (changed_bin, changed_build) = copy.build(NATIVE_PACKAGE, NATIVE_BIN, &native_changed);
    copy.set(NATIVE_FILE, &original);
    let (again_bin, again_build) = copy.build(NATIVE_PACKAGE, NATIVE_BIN, &native_again);
    let base_stripped = stripped(&base_bin);
    let changed_stripped = stripped(&changed_bin);
    let again_check = compare(&base_stripped, &stripped(&again_bin));
    let native_change = compare(&base_stripped, &changed_stripped);
    let workspace_bin = repo.join("target/release").join(NATIVE_BIN);
    let workspace_check = compare(&base_stripped, &stripped(&workspace_bin));
    let binary_alone = delta_anchors::bsdiff_patch(
        &base_bin.with_extension("stripped"),
        &changed_bin.with_extension("stripped"),
        &work.join("native.bsdiff"),
    );

    // (a)'s app: the sources as they are, copied, and edited; the copy must compile to the
    // same bytes as the original.
    let apps_base = work.join("apps-base");
    compile_apps(&repo.join("wasm-apps"), &apps_base);
    let apps_copy = work.join("apps-copy");
    compile_apps(&app_sources(&work.join("apps-copy-src"), None), &apps_copy);
    let apps_changed = work.join("apps-changed");
    compile_apps(
        &app_sources(
            &work.join("apps-changed-src"),
            Some((APP_BEFORE, APP_AFTER)),
        ),
        &apps_changed,
    );
    let app_file = format!("{APP}.wasm");
    let read = |dir: &Path| std::fs::read(dir.join(&app_file)).unwrap();
    let app_check = compare(&read(&apps_base), &read(&apps_copy));
    let app_change = compare(&read(&apps_base), &read(&apps_changed));

    let base_inputs = Inputs {
        apps: &apps_base,
        native: &native_base,
        extra: "",
    };
    let base_out = build_image(&work, "base", &base_inputs, &data_home);
    let again_out = build_image(
        &work,
        "base-again",
        &Inputs {
            native: &native_again,
            ..base_inputs
        },
        &data_home,
    );
    let variants: Vec<(&str, String, PathBuf)> = vec![
        (
            "(a)",
            format!("one WASM app, one line ({APP}.c)"),
            build_image(
                &work,
                "a-app",
                &Inputs {
                    apps: &apps_changed,
                    ..base_inputs
                },
                &data_home,
            ),
        ),
        (
            "(b)",
            format!("one native binary, one function ({NATIVE_BIN})"),
            build_image(
                &work,
                "b-native",
                &Inputs {
                    native: &native_changed,
                    ..base_inputs
                },
                &data_home,
            ),
        ),
        (
            "(c)",
            "plan only (version 0.2.0)".to_owned(),
            build_image(
                &work,
                "c-plan",
                &Inputs {
                    extra: PLAN_CHANGE,
                    ..base_inputs
                },
                &data_home,
            ),
        ),
    ];

    let base_rootfs = base_out.join("rootfs.img");
    let rootfs_again = compare(
        &std::fs::read(&base_rootfs).unwrap(),
        &std::fs::read(again_out.join("rootfs.img")).unwrap(),
    );
    let anchors = work.join("anchors-base");
    std::fs::create_dir_all(&anchors).unwrap();
    let casync_store = anchors.join("casync-store");
    delta_anchors::casync_make(&base_rootfs, &casync_store, &anchors.join("rootfs.caibx"));
    let manifest = {
        let keyring = Keyring::load(&keys.ca_cert, CheckPurpose::default()).unwrap();
        bundle::open(&base_out.join("update.raucb"), &keyring)
            .unwrap()
            .manifest
    };
    let base = Base {
        version: manifest.version.unwrap_or_default(),
        compatible: manifest.compatible,
        hashes: delta_anchors::block_hashes(&base_rootfs, &anchors),
        files: rootfs_files(&base_rootfs, &anchors.join("tree")),
        casync_store,
        rootfs: base_rootfs,
        out: base_out,
    };
    let figures: Vec<Figures> = variants
        .iter()
        .map(|(label, _, out)| {
            measure(
                &base,
                out,
                &work.join(format!("anchors-{}", label.trim_matches(['(', ')']))),
                &keys,
            )
        })
        .collect();

    report(
        &base,
        &variants,
        &figures,
        &Checks {
            base_build,
            changed_build,
            again_build,
            again_check,
            workspace_check,
            binary_alone,
            native_change,
            app_check,
            app_change,
            rootfs_again,
        },
    );
}

/// What the run checked on the way, and the native builds' times.
struct Checks {
    base_build: Duration,
    changed_build: Duration,
    again_build: Duration,
    again_check: String,
    workspace_check: String,
    binary_alone: u64,
    native_change: String,
    app_check: String,
    app_change: String,
    rootfs_again: String,
}

fn report(base: &Base, variants: &[(&str, String, PathBuf)], figures: &[Figures], checks: &Checks) {
    let flags = delta_anchors::zstd_patch_flags(
        figures
            .iter()
            .map(|f| f.rootfs)
            .max()
            .unwrap_or(0)
            .max(size(&base.rootfs)),
    )
    .join(" ");
    println!(
        "delta updates of the gateway ({CONFIG}), base {}: rootfs.img {} bytes, update.raucb {} bytes",
        base.version,
        size(&base.rootfs),
        size(&base.out.join("update.raucb"))
    );
    for ((label, what, _), f) in variants.iter().zip(figures) {
        println!("{label} {what}: files of the rootfs that differ from the base's:");
        for file in &f.changed {
            println!("      {file}");
        }
    }
    println!();
    println!(
        "{:<58} {:>20} {:>20} {:>20}",
        "bytes (% of that variant's full bundle)", "(a)", "(b)", "(c)"
    );
    let row = |name: &str, pick: &dyn Fn(&Figures) -> u64| {
        let cells: Vec<String> = figures.iter().map(|f| share(pick(f), f.full)).collect();
        println!("{name:<58} {}", cells.join(" "));
    };
    row("rootfs.img (uncompressed squashfs)", &|f| f.rootfs);
    row("full bundle (update.raucb)", &|f| f.full);
    row("testudo delta bundle (bsdiff 4, signed)", &|f| f.delta);
    row("  of which the bsdiff patch", &|f| f.patch);
    row(
        "RAUC block-hash index: fetched 4 KiB blocks + index",
        &|f| f.rauc.download(),
    );
    row("  of which the index", &|f| f.rauc.index_bytes);
    row(
        "RAUC streaming this bundle: compressed blocks + index",
        &|f| f.rauc_bundle,
    );
    row("casync make (defaults): new chunks + index", &|f| f.casync);
    row(&format!("zstd {flags} --patch-from"), &|f| f.zstd);
    row("bsdiff (Debian)", &|f| f.bsdiff);
    let blocks: Vec<String> = figures
        .iter()
        .map(|f| format!("{} of {}", f.rauc.fetched.len(), f.rauc.blocks))
        .collect();
    println!(
        "{:<58} {}",
        "4 KiB blocks RAUC fetches",
        blocks
            .iter()
            .map(|b| format!("{b:>20}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!();
    println!("apply on file-backed slots (open + install, read-back), each sample, median:");
    for ((label, _, _), f) in variants.iter().zip(figures) {
        let each = |samples: &[Duration]| {
            samples
                .iter()
                .map(|d| seconds(*d))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let full = median(f.apply_full.clone());
        let delta = median(f.apply_delta.clone());
        println!(
            "  {label} full  {}   {}\n  {label} delta {}   {}   delta/full {:.2}x; delta created in {}",
            each(&f.apply_full),
            seconds(full),
            each(&f.apply_delta),
            seconds(delta),
            delta.as_secs_f64() / full.as_secs_f64(),
            seconds(f.delta_create)
        );
    }
    println!();
    println!(
        "{NATIVE_BIN} from the copy of HEAD: cargo build of the unmodified source {} (incremental after the first run), edited {}, unmodified again {}",
        seconds(checks.base_build),
        seconds(checks.changed_build),
        seconds(checks.again_build)
    );
    println!(
        "  unmodified rebuilt vs the base's (stripped): {}",
        checks.again_check
    );
    println!(
        "  the base's vs the workspace's target/release one (stripped): {}",
        checks.workspace_check
    );
    println!(
        "  the edited one vs the base's (stripped): {}; bsdiff of the binary alone {} bytes",
        checks.native_change, checks.binary_alone
    );
    println!(
        "{APP}.wasm compiled from a copy of its source vs as the project does: {}",
        checks.app_check
    );
    println!("{APP}.wasm edited vs base: {}", checks.app_change);
    println!(
        "base image rebuilt with the unmodified {NATIVE_BIN} rebuilt: rootfs.img {}",
        checks.rootfs_again
    );
}
