//! `cargo bench -p testudo-updater`: bundle creation, verification, extraction and install of
//! a 256 MiB image (`TESTUDO_BENCH_MIB` to change), each side by side in the same run with
//! its anchor (`rauc bundle`, `rauc extract`, `sha256sum` and `openssl speed -evp sha256`,
//! `dd`; for an encrypted bundle the unencrypted install and `rauc extract` of the same
//! encrypted bundle; for a bundle with sandboxed hooks the install without them, and one hook
//! spawned plainly; for a TPM-held decryption key a software key), plus peak RSS of the
//! testudo process (VmHWM) at two bundle sizes. Each testudo operation runs in a child
//! process (this binary re-executed with `--child`) so its RSS is its own.
//! Timings: best of 5 runs (3 for bundle creation), files in the page cache.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use std::os::unix::fs::PermissionsExt;
use testudo_updater::bootloader::grub::GrubEnv;
use testudo_updater::crypt::Decryptor;
use testudo_updater::install::{self, InstallOptions};
use testudo_updater::keys::{self, KeyKind, Validity};
use testudo_updater::signature::{CheckPurpose, Keyring, Signer};

use testudo_updater::manifest::ImageHook;
use testudo_updater::programs::{
    ProgramExit, ProgramRun, ProgramRunner, ProgramStep, SandboxedRunner,
};
use testudo_updater::system_conf::{BundleProgramsConf, EncryptionConf, ProgramsPolicy};
use testudo_updater::{bootloader, bundle, BundleSpec, SystemConf};

/// Runs per measurement; the best (minimum) is reported: the machine is shared, and the
/// minimum is the figure least disturbed by other load, for both sides alike.
const RUNS: usize = 5;
/// A single program start is short and noisy: more runs.
const PROGRAM_RUNS: usize = 20;
/// Bundle creation is slow (gzip squashfs); fewer runs.
const CREATE_RUNS: usize = 3;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2..]);
        return;
    }
    let mib: u64 = std::env::var("TESTUDO_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let dir = tempfile::Builder::new()
        .prefix("testudo-bench-")
        .tempdir()
        .expect("temp dir");
    let root = dir.path();
    let pki = pki(root);
    println!(
        "# testudo-updater benchmark: {mib} MiB image, best of {RUNS} runs ({CREATE_RUNS} for create), page cache warm"
    );
    let image = make_image(&root.join("rootfs.img"), mib);
    let size = mib * 1024 * 1024;

    // 1. Bundle creation.
    let content = root.join("content");
    std::fs::create_dir(&content).expect("content dir");
    std::fs::copy(&image, content.join("rootfs.img")).expect("copy image");
    std::fs::write(
        content.join("manifest.raucm"),
        "[update]\ncompatible=bench\nversion=1\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.img\n",
    )
    .expect("manifest");
    let ours = root.join("testudo.raucb");
    let theirs = root.join("rauc.raucb");
    let t_create = best(CREATE_RUNS, || {
        let _ = std::fs::remove_file(&ours);
        child_run(&[
            "create",
            s(&ours),
            s(&image),
            s(&pki.signer.cert),
            s(&pki.signer.key),
        ])
        .0
    });
    let t_rauc_bundle = best(CREATE_RUNS, || {
        let _ = std::fs::remove_file(&theirs);
        timed(&mut rauc_bundle(&pki, &content, &theirs))
    });
    row(
        "bundle create (verity)",
        t_create,
        "rauc bundle",
        t_rauc_bundle,
        size,
        true,
    );

    // 2. Verification of every payload byte vs sha256sum of the same bytes.
    let t_verify = best(RUNS, || child_run(&["verify", s(&ours), s(&pki.keyring)]).0);
    let t_sha = best(RUNS, || timed(Command::new("sha256sum").arg(&ours)));
    row(
        "verify (signature + hash tree)",
        t_verify,
        "sha256sum",
        t_sha,
        size,
        true,
    );

    // 2b. The same verification against the hashing floor: OpenSSL's SHA-256 (SHA-NI) over
    // the same number of bytes, on one core and on both (verification hashes on 2 threads).
    let bundle_bytes = std::fs::metadata(&ours).expect("bundle size").len();
    let verify_mbps = bundle_bytes as f64 / t_verify.as_secs_f64() / 1e6;
    for (cores, multi) in [("one core", 1), ("both cores", 2)] {
        let floor = openssl_sha256_mbps(multi);
        println!(
            "verify: {verify_mbps:.0} MB/s over the {bundle_bytes}-byte bundle; anchor `openssl speed -evp sha256` on {cores}: {floor:.0} MB/s; ratio {:.2}x",
            verify_mbps / floor
        );
    }

    // 3. Verify + extract vs rauc extract.
    let out = root.join("out");
    let rauc_out = root.join("rauc-out");
    let mut extract_rss = (0, 0);
    let t_extract = best(RUNS, || {
        let _ = std::fs::remove_dir_all(&out);
        let (t, rss) = child_run(&["extract", s(&ours), s(&pki.keyring), s(&out)]);
        extract_rss = rss;
        t
    });
    let t_rauc_extract = best(RUNS, || {
        let _ = std::fs::remove_dir_all(&rauc_out);
        timed(
            Command::new("rauc")
                .args(["extract", "--keyring", s(&pki.keyring)])
                .arg(&ours)
                .arg(&rauc_out),
        )
    });
    row(
        "verify + extract",
        t_extract,
        "rauc extract",
        t_rauc_extract,
        size,
        true,
    );

    // 4. Install into the inactive slot vs dd of the raw image to the same target.
    let conf = device(root, &pki.keyring, &image);
    let slot_b = root.join("slot-b.img");
    let mut install_rss = (0, 0);
    let t_install = best(RUNS, || {
        let (t, rss) = child_run(&["install", s(&conf), s(&ours), "read-back"]);
        install_rss = rss;
        t
    });
    let t_install_fast = best(RUNS, || {
        child_run(&["install", s(&conf), s(&ours), "no-read-back"]).0
    });
    let t_dd = best(RUNS, || {
        timed(
            Command::new("dd")
                .arg(format!("if={}", image.display()))
                .arg(format!("of={}", slot_b.display()))
                .args(["bs=1M", "conv=fsync,notrunc", "status=none"]),
        )
    });
    row(
        "install (verify, write, fsync, read back from device)",
        t_install,
        "dd bs=1M conv=fsync",
        t_dd,
        size,
        false,
    );
    row(
        "install without read-back",
        t_install_fast,
        "dd bs=1M conv=fsync",
        t_dd,
        size,
        false,
    );

    // 5. An encrypted bundle (rauc's own: `rauc bundle` in crypt format, `rauc encrypt` for
    // the device's certificate): decrypt + verify + install vs the unencrypted install above,
    // and decrypt + verify + extract vs `rauc extract` of the same bundle.
    let crypt_content = root.join("crypt-content");
    std::fs::create_dir(&crypt_content).expect("crypt content dir");
    std::fs::copy(&image, crypt_content.join("rootfs.img")).expect("copy image");
    std::fs::write(
        crypt_content.join("manifest.raucm"),
        "[update]\ncompatible=bench\nversion=1\n\n[bundle]\nformat=crypt\n\n[image.rootfs]\nfilename=rootfs.img\n",
    )
    .expect("manifest");
    let crypt_signed = root.join("crypt-signed.raucb");
    let encrypted = root.join("encrypted.raucb");
    timed(&mut rauc_bundle(&pki, &crypt_content, &crypt_signed));
    // The signer's certificate doubles as the device's (an EC P-256 recipient).
    timed(
        Command::new("rauc")
            .arg(format!("--keyring={}", s(&pki.keyring)))
            .arg("encrypt")
            .arg(format!("--to={}", s(&pki.signer.cert)))
            .arg(&crypt_signed)
            .arg(&encrypted),
    );
    let crypt_conf = {
        let mut conf = SystemConf::load(&conf).expect("conf");
        conf.encryption = Some(EncryptionConf {
            key: pki.signer.key.clone(),
            cert: Some(pki.signer.cert.clone()),
        });
        let path = root.join("system-crypt.conf");
        std::fs::write(&path, conf.render()).expect("crypt conf");
        path
    };
    let rauc_conf = root.join("rauc-crypt.conf");
    std::fs::write(
        &rauc_conf,
        format!(
            "[system]\ncompatible=bench\nbootloader=noop\n\n[keyring]\npath={}\n\n[encryption]\nkey={}\ncert={}\n\n[slot.rootfs.0]\ndevice=/dev/null\ntype=raw\nbootname=A\n",
            s(&pki.keyring),
            s(&pki.signer.key),
            s(&pki.signer.cert)
        ),
    )
    .expect("rauc conf");
    let mut crypt_install_rss = (0, 0);
    let t_crypt_install = best(RUNS, || {
        let (t, rss) = child_run(&["install", s(&crypt_conf), s(&encrypted), "read-back"]);
        crypt_install_rss = rss;
        t
    });
    let t_crypt_extract = best(RUNS, || {
        let _ = std::fs::remove_dir_all(&out);
        child_run(&[
            "extract",
            s(&encrypted),
            s(&pki.keyring),
            s(&out),
            s(&pki.signer.key),
        ])
        .0
    });
    let t_rauc_crypt_extract = best(RUNS, || {
        let _ = std::fs::remove_dir_all(&rauc_out);
        timed(
            Command::new("rauc")
                .arg(format!("--conf={}", s(&rauc_conf)))
                .arg("extract")
                .arg(&encrypted)
                .arg(&rauc_out),
        )
    });
    row(
        "encrypted bundle: decrypt + verify + install (read back)",
        t_crypt_install,
        "the unencrypted install above",
        t_install,
        size,
        false,
    );
    row(
        "encrypted bundle: decrypt + verify + extract",
        t_crypt_extract,
        "rauc extract (decrypts to a temporary file, then unsquashfs)",
        t_rauc_crypt_extract,
        size,
        false,
    );

    // 7. Bundle programs: the same image in a rauc bundle with no-op pre- and post-install
    // hooks, installed on a system that runs them sandboxed, vs the plain install above; and
    // one no-op hook started in its sandbox vs spawned plainly.
    let hooked_content = root.join("hooked-content");
    std::fs::create_dir(&hooked_content).expect("hooked content dir");
    std::fs::copy(&image, hooked_content.join("rootfs.img")).expect("copy image");
    let hook = hooked_content.join("hook.sh");
    std::fs::write(
        &hook,
        "#!/bin/sh
exit 0
",
    )
    .expect("hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("hook mode");
    std::fs::write(
        hooked_content.join("manifest.raucm"),
        "[update]\ncompatible=bench\nversion=1\n\n[bundle]\nformat=verity\n\n[hooks]\nfilename=hook.sh\n\n[image.rootfs]\nfilename=rootfs.img\nhooks=pre-install;post-install;\n",
    )
    .expect("manifest");
    let hooked = root.join("hooked.raucb");
    timed(&mut rauc_bundle(&pki, &hooked_content, &hooked));
    let programs_conf = {
        let mut conf = SystemConf::load(&conf).expect("conf");
        conf.bundle_programs.policy = ProgramsPolicy::Sandboxed;
        let path = root.join("system-programs.conf");
        std::fs::write(&path, conf.render()).expect("programs conf");
        path
    };
    let t_hooked_install = best(RUNS, || {
        child_run(&["install", s(&programs_conf), s(&hooked), "read-back"]).0
    });
    row(
        "install with a pre- and a post-install hook, each sandboxed",
        t_hooked_install,
        "the install without programs above",
        t_install,
        size,
        false,
    );
    let runner = SandboxedRunner::new(&BundleProgramsConf::default());
    let run = ProgramRun {
        step: ProgramStep::Slot(ImageHook::PreInstall),
        name: "pre-install hook".to_string(),
        program: hook.clone(),
        args: vec!["slot-pre-install".to_string()],
        env: vec![("PATH".to_string(), "/usr/bin:/bin".to_string())],
        bundle_dir: hooked_content.clone(),
        bundle_mount_point: PathBuf::from("/mnt/rauc/bundle"),
        writable: vec![slot_b.clone()],
    };
    let t_sandboxed = best(PROGRAM_RUNS, || {
        let start = Instant::now();
        let outcome = runner.run(&run).expect("sandboxed hook");
        assert_eq!(outcome.exit, ProgramExit::Code(0), "{outcome:?}");
        start.elapsed()
    });
    let t_plain = best(PROGRAM_RUNS, || {
        timed(Command::new(&hook).arg("slot-pre-install"))
    });
    row(
        "one no-op hook, sandboxed (namespaces, landlock, seccomp)",
        t_sandboxed,
        "the same hook spawned plainly",
        t_plain,
        0,
        false,
    );

    // 8. The device's key in a TPM (swtpm; the key made inside it through OpenSSL's tpm2
    // provider): opening the bundle's enveloped signature, the one step the TPM changes, vs
    // the same step with a software key of the same kind, both recipients of one envelope.
    tpm_envelope(root, &pki, &crypt_signed);

    // 6. Peak RSS at a quarter of the size: must not grow with the bundle.
    let small_image = make_image(&root.join("small.img"), (mib / 4).max(8));
    let small = root.join("small.raucb");
    child_run(&[
        "create",
        s(&small),
        s(&small_image),
        s(&pki.signer.cert),
        s(&pki.signer.key),
    ]);
    let _ = std::fs::remove_dir_all(&out);
    let (_, small_rss) = child_run(&["extract", s(&small), s(&pki.keyring), s(&out)]);
    println!();
    println!("| peak RSS | testudo process (VmHWM) |");
    println!("|---|---|");
    println!(
        "| extract, {mib} MiB bundle | {:.1} MiB |",
        kib(extract_rss.0)
    );
    println!(
        "| install, {mib} MiB bundle | {:.1} MiB |",
        kib(install_rss.0)
    );
    println!(
        "| install, {mib} MiB encrypted bundle | {:.1} MiB |",
        kib(crypt_install_rss.0)
    );
    println!(
        "| extract, {} MiB bundle | {:.1} MiB |",
        (mib / 4).max(8),
        kib(small_rss.0)
    );
}

fn kib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

struct Pki {
    keyring: PathBuf,
    signer: Signer,
}

fn pki(root: &Path) -> Pki {
    let ca = keys::issue("bench CA", KeyKind::EcP256, Validity::days(2), true, None).expect("CA");
    let signer = keys::issue(
        "bench signer",
        KeyKind::EcP256,
        Validity::days(2),
        false,
        Some(&ca),
    )
    .expect("signer");
    let keyring = root.join("ca.pem");
    keys::write_cert(&keyring, &ca.cert).expect("write");
    let cert = root.join("signer.pem");
    let key = root.join("signer.key");
    keys::write_cert(&cert, &signer.cert).expect("write");
    keys::write_private_key(&key, &signer.key).expect("write");
    Pki {
        keyring,
        signer: Signer {
            cert,
            key,
            intermediates: Vec::new(),
        },
    }
}

/// A disk-image-like file: 3/4 pseudo-random 1 MiB extents, 1/4 zero or text extents.
fn make_image(path: &Path, mib: u64) -> PathBuf {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("image"));
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut extent = vec![0u8; 1024 * 1024];
    for i in 0..mib {
        match i % 8 {
            3 => extent.fill(0),
            6 => {
                for (j, b) in extent.iter_mut().enumerate() {
                    *b = b"testudo config line\n"[j % 20];
                }
            }
            _ => {
                for chunk in extent.chunks_mut(8) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    chunk.copy_from_slice(&x.to_le_bytes());
                }
            }
        }
        file.write_all(&extent).expect("write image");
    }
    file.flush().expect("flush");
    path.to_path_buf()
}

fn device(root: &Path, keyring: &Path, image: &Path) -> PathBuf {
    let slot_a = root.join("slot-a.img");
    let slot_b = root.join("slot-b.img");
    std::fs::copy(image, &slot_a).expect("slot a");
    std::fs::copy(image, &slot_b).expect("slot b");
    let grubenv = root.join("grubenv");
    std::fs::write(
        &grubenv,
        GrubEnv::initial(&["A", "B"]).render().expect("env"),
    )
    .expect("env");
    let conf = SystemConf::grub_ab(
        "bench",
        keyring,
        &grubenv,
        &root.join("data"),
        &slot_a,
        &slot_b,
    );
    let path = root.join("system.conf");
    std::fs::write(&path, conf.render()).expect("conf");
    path
}

/// `rauc bundle` of `content` into `out`, signed by the bench's signer; not yet run.
fn rauc_bundle(pki: &Pki, content: &Path, out: &Path) -> Command {
    let mut command = Command::new("rauc");
    command
        .args([
            "bundle",
            "--cert",
            s(&pki.signer.cert),
            "--key",
            s(&pki.signer.key),
        ])
        .arg(content)
        .arg(out);
    command
}

/// OpenSSL's SHA-256 throughput in MB/s over 4 MiB blocks, in `processes` processes together
/// (`openssl speed -evp sha256`; the figure is the last field of its last line, in kB/s).
fn openssl_sha256_mbps(processes: usize) -> f64 {
    let mut command = Command::new("openssl");
    command.arg("speed");
    if processes > 1 {
        command.args(["-multi", &processes.to_string()]);
    }
    let output = command
        .args(["-evp", "sha256", "-bytes", "4194304", "-seconds", "3"])
        .output()
        .expect("openssl speed");
    assert!(output.status.success(), "openssl speed failed");
    let text = String::from_utf8_lossy(&output.stdout);
    let last = text.lines().last().unwrap_or_default();
    let kbps: f64 = last
        .split_whitespace()
        .last()
        .and_then(|field| field.strip_suffix('k'))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("unexpected `openssl speed` line {last:?}"));
    kbps / 1e3
}

fn timed(command: &mut Command) -> Duration {
    let start = Instant::now();
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} (is it installed?): {e}"));
    let elapsed = start.elapsed();
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

/// Runs this binary as `--child ARGS`; returns wall time and (VmHWM, children maxrss) in KiB.
fn child_run(args: &[&str]) -> (Duration, (u64, u64)) {
    let exe = std::env::current_exe().expect("current exe");
    let start = Instant::now();
    let output = Command::new(exe)
        .arg("--child")
        .args(args)
        .output()
        .expect("child");
    let elapsed = start.elapsed();
    assert!(
        output.status.success(),
        "child {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (elapsed, (field("vmhwm_kb="), field("children_maxrss_kb=")))
}

fn best(runs: usize, mut run: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| run()).min().unwrap_or_default()
}

fn row(what: &str, ours: Duration, anchor: &str, theirs: Duration, bytes: u64, header: bool) {
    if header && what.starts_with("bundle create") {
        println!();
        println!("| operation | testudo | MB/s | anchor | anchor time | MB/s | speed ratio (anchor time / testudo time) |");
        println!("|---|---|---|---|---|---|---|");
    }
    // A row without bytes (a program start) shows milliseconds and no throughput.
    let mbps = |d: Duration| match bytes {
        0 => "-".to_string(),
        _ => format!("{:.0}", bytes as f64 / 1e6 / d.as_secs_f64()),
    };
    let time = |d: Duration| match bytes {
        0 => format!("{:.2} ms", d.as_secs_f64() * 1e3),
        _ => format!("{:.3} s", d.as_secs_f64()),
    };
    println!(
        "| {what} | {} | {} | {anchor} | {} | {} | {:.2}x |",
        time(ours),
        mbps(ours),
        time(theirs),
        mbps(theirs),
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}

/// Section 8: a swtpm (the test kit's), an EC P-256 key made inside it and a
/// software EC P-256 key, `rauc encrypt` of `crypt_signed` for both, then the envelope opened
/// in-process with each.
fn tpm_envelope(root: &Path, pki: &Pki, crypt_signed: &Path) {
    let swtpm = testudo_testkit::swtpm::start();
    let tcti = swtpm.tcti.clone();
    // Read by the tpm2 provider when it is first loaded, below.
    std::env::set_var("TPM2OPENSSL_TCTI", &tcti);
    let identity = |name: &str, provider: bool| {
        let key = root.join(format!("{name}.key.pem"));
        let cert = root.join(format!("{name}.cert.pem"));
        let with_provider = |command: &mut Command| {
            if provider {
                command.args(["-provider", "tpm2", "-provider", "default"]);
            }
        };
        let mut genpkey = Command::new("openssl");
        genpkey.arg("genpkey");
        with_provider(&mut genpkey);
        genpkey.args([
            "-algorithm",
            "EC",
            "-pkeyopt",
            "group:P-256",
            "-out",
            s(&key),
        ]);
        timed(&mut genpkey);
        let mut req = Command::new("openssl");
        req.arg("req");
        with_provider(&mut req);
        req.args([
            "-new",
            "-x509",
            "-days",
            "5",
            "-subj",
            &format!("/CN={name}"),
        ])
        .args(["-key", s(&key), "-out", s(&cert)]);
        timed(&mut req);
        (key, cert)
    };
    let tpm = identity("tpm-device", true);
    let software = identity("software-device", false);
    let encrypted = root.join("tpm-encrypted.raucb");
    timed(
        Command::new("rauc")
            .arg(format!("--keyring={}", s(&pki.keyring)))
            .arg("encrypt")
            .arg(format!("--to={}", s(&tpm.1)))
            .arg(format!("--to={}", s(&software.1)))
            .arg(crypt_signed)
            .arg(&encrypted),
    );
    let file = std::fs::File::open(&encrypted).expect("bundle");
    let frame = bundle::read_frame(&file, &encrypted).expect("frame");
    let open = |key: &Path| {
        let decryptor = Decryptor::load(key, None).expect("decryption key");
        best(PROGRAM_RUNS, || {
            let start = Instant::now();
            decryptor
                .open_envelope(&frame.der, &encrypted)
                .expect("envelope");
            start.elapsed()
        })
    };
    let t_software = open(&software.0);
    let t_tpm = open(&tpm.0);
    row(
        "open the enveloped signature with a TPM-held EC P-256 key (swtpm)",
        t_tpm,
        "the same with a software EC P-256 key",
        t_software,
        0,
        false,
    );
    drop(swtpm);
}

fn child(args: &[String]) {
    let arg = |i: usize| PathBuf::from(&args[i]);
    let keyring = |path: PathBuf| Keyring::load(&path, CheckPurpose::default()).expect("keyring");
    match args[0].as_str() {
        "create" => {
            let spec = BundleSpec::new("bench", "1", vec![("rootfs".into(), arg(2))]);
            let signer = Signer {
                cert: arg(3),
                key: arg(4),
                intermediates: Vec::new(),
            };
            bundle::create(&spec, &signer, &arg(1)).expect("create");
        }
        "verify" => {
            bundle::open(&arg(1), &keyring(arg(2))).expect("verify");
        }
        "extract" => {
            let decryptor = args
                .get(4)
                .map(|key| Decryptor::load(Path::new(key), None).expect("decryption key"));
            let verified =
                bundle::open_with(&arg(1), &keyring(arg(2)), decryptor.as_ref()).expect("verify");
            verified.extract(&arg(3)).expect("extract");
        }
        "install" => {
            let conf = SystemConf::load(&arg(1)).expect("conf");
            let keyring = keyring(conf.keyring.clone().expect("keyring"));
            let decryptor = conf
                .encryption
                .as_ref()
                .map(|encryption| encryption.load().expect("decryption key"));
            let verified =
                bundle::open_with(&arg(2), &keyring, decryptor.as_ref()).expect("verify");
            let options = InstallOptions {
                read_back: args[3] == "read-back",
                ..InstallOptions::default()
            };
            let mut boot = bootloader::open(&conf).expect("bootloader");
            let booted = conf.slot_by_bootname("A").expect("slot A");
            install::install(
                &conf,
                booted,
                &verified,
                boot.as_mut(),
                &options,
                &mut |_, _| ControlFlow::Continue(()),
            )
            .expect("install");
            // Back to A as primary so the next run installs into B again.
            boot.set_primary("A").expect("reset");
        }
        other => panic!("unknown child mode {other}"),
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: getrusage writes into the zeroed struct we pass; no other memory is touched.
    let children = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage.ru_maxrss as u64
    };
    println!("vmhwm_kb={hwm}");
    println!("children_maxrss_kb={children}");
}
