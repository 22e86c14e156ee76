//! System packages the project needs, as data: each entry names a Debian package and a file
//! whose presence shows it is installed. `ensure` installs the missing ones with apt-get when
//! running as root, and otherwise names them and fails.

use std::path::Path;
use std::process::Command;

use anyhow::bail;

use crate::util;

/// (Debian package, a path it installs). Keep sorted by package name.
const PACKAGES: &[(&str, &str)] = &[
    // Images: stripping binaries for the rootfs.
    ("binutils", "/usr/bin/strip"),
    // Updater: Debian's bspatch applies our delta patches (tests: they are standard bsdiff 4).
    ("bsdiff", "/usr/bin/bspatch"),
    // Images: static busybox for the initramfs (and ldd in the rootfs).
    ("busybox-static", "/usr/bin/busybox"),
    // Delta-update benchmark anchor: `casync make` of both images.
    ("casync", "/usr/bin/casync"),
    ("clang-14", "/usr/bin/clang-14"),
    // Images: initramfs checks (tests).
    ("cpio", "/usr/bin/cpio"),
    // Updater: verity trees compared with veritysetup (tests).
    ("cryptsetup-bin", "/usr/sbin/veritysetup"),
    // Net driver: a real DNS server for the resolver tests.
    ("dnsmasq-base", "/usr/sbin/dnsmasq"),
    // Images: ESP (mkfs.vfat) and data partition (mkfs.ext4).
    ("dosfstools", "/usr/sbin/mkfs.vfat"),
    ("e2fsprogs", "/usr/sbin/mkfs.ext4"),
    // The linker rustc calls (`cc`) and the C compiler build scripts use (openssl-sys,
    // wasmtime, ...).
    ("gcc", "/usr/bin/cc"),
    // Images: GPT checks with sgdisk (tests).
    ("gdisk", "/usr/sbin/sgdisk"),
    // Updater: grubenv interop with grub-editenv (tests).
    ("grub-common", "/usr/bin/grub-editenv"),
    // Images: GRUB EFI modules for grub-mkimage.
    ("grub-efi-amd64-bin", "/usr/lib/grub/x86_64-efi/normal.mod"),
    // Init: the independent observer of the links it configures (tests).
    ("iproute2", "/usr/sbin/ip"),
    (
        "libclang-rt-14-dev-wasm32",
        "/usr/lib/llvm-14/lib/clang/14.0.6/lib/wasi/libclang_rt.builtins-wasm32.a",
    ),
    // Updater: CMS signatures through the openssl crate.
    ("libssl-dev", "/usr/include/openssl/cms.h"),
    // Agent: tss-esapi links libtss2-esys / libtss2-tctildr and the swtpm TCTI.
    ("libtss2-dev", "/usr/include/tss2/tss2_esys.h"),
    // Images: the default kernel (board qemu-x86_64 boots /vmlinuz) and its modules.
    ("linux-image-cloud-amd64", "/vmlinuz"),
    ("lld-14", "/usr/bin/wasm-ld-14"),
    // Anchor broker for the hub emulator's connection-memory benchmark.
    ("mosquitto", "/usr/sbin/mosquitto"),
    // Images: filling the ESP.
    ("mtools", "/usr/bin/mcopy"),
    // The flake's builds and checks (`cargo xtask nix`); nix-setup-systemd creates the
    // `nixbld` build users sandboxed builds run as.
    ("nix-bin", "/usr/bin/nix"),
    ("nix-setup-systemd", "/lib/systemd/system/nix-daemon.socket"),
    // Updater: block-device slots on loop devices (tests).
    ("mount", "/usr/sbin/losetup"),
    // Agent: the HTTPS server module downloads are fetched from (resumed ranges, faults;
    // tests).
    ("nginx-light", "/usr/sbin/nginx"),
    // Agent: independent check of certificates signed inside the TPM (tests).
    ("openssl", "/usr/bin/openssl"),
    // Images: UEFI firmware for `testudo vm run`.
    ("ovmf", "/usr/share/OVMF/OVMF_CODE_4M.fd"),
    ("pkg-config", "/usr/bin/pkg-config"),
    // Images: `testudo vm run` (TCG).
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    // Images: checking that no QEMU is left behind (tests).
    ("procps", "/usr/bin/pgrep"),
    // Python test peers: a project-local virtual environment (Debian's python3 refuses
    // `pip install` outside one, PEP 668).
    ("python3-venv", "/usr/share/doc/python3-venv"),
    // Updater: interop peer in both directions (tests) and benchmark anchor.
    ("rauc", "/usr/bin/rauc"),
    // Updater: making bundle payloads (mksquashfs); unsquashfs for rauc and image tests.
    ("squashfs-tools", "/usr/bin/mksquashfs"),
    // Agent: software TPM 2.0 for the TPM identity and provisioning tests; runtime:
    // `testudo run`'s default private TPM and the tpm driver tests.
    ("swtpm", "/usr/bin/swtpm"),
    // Updater: OpenSSL's tpm2 provider, through which a TPM-held decryption key opens
    // encrypted bundles (and the tests make such keys inside swtpm).
    (
        "tpm2-openssl",
        "/usr/lib/x86_64-linux-gnu/ossl-modules/tpm2.so",
    ),
    // Runtime: `setpriv` runs `testudo run` unprivileged (tests).
    ("util-linux", "/usr/bin/setpriv"),
    ("wasi-libc", "/usr/lib/wasm32-wasi/libc.a"),
    // Delta-update benchmark anchor: `zstd --patch-from`.
    ("zstd", "/usr/bin/zstd"),
];

/// (PyPI requirement, the module it provides) for Python-based test peers, installed into the
/// project's virtual environment ([`util::python_venv`]).
const PIP_PACKAGES: &[(&str, &str)] = &[
    // Microsoft's official IoT Hub SDKs: fidelity peers of the hub emulator (tests/hub).
    // Pinned to the versions the emulator's fidelity tests were checked against.
    ("azure-iot-device==2.14.0", "azure.iot.device"),
    ("azure-iot-hub==2.7.0", "azure.iot.hub"),
    // An independent JOSE implementation: interop peer of the signed deployment tokens
    // (support/deployment, JWS with Ed25519 and RFC 7638 key ids), both ways.
    ("joserfc==1.8.0", "joserfc"),
    // azure-iot-hub imports `six` without declaring it.
    ("six==1.17.0", "six"),
    // Benchmark anchor of the WASM host.
    ("wasmtime==50.0.1", "wasmtime"),
];

/// Installs every missing system and Python package the project needs.
pub fn ensure() -> anyhow::Result<()> {
    ensure_apt()?;
    ensure_python_venv()
}

/// Installs every missing package in [`PACKAGES`].
fn ensure_apt() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, probe)| !Path::new(probe).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing system packages: {} (install them with apt-get, or run as root)",
            missing.join(" ")
        );
    }
    eprintln!("installing system packages: {}", missing.join(" "));
    util::run(Command::new("apt-get").args(["update", "-qq"]))?;
    util::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing),
    )?;
    Ok(())
}

/// Creates the project's Python virtual environment (with the `python3` on PATH) unless a
/// working one exists, and installs every missing package of [`PIP_PACKAGES`] into it. Tests
/// and benchmarks run the environment's interpreter (`TESTUDO_PYTHON`, set by
/// [`util::cargo`]), never the system's, so a stock Debian `python3` works.
fn ensure_python_venv() -> anyhow::Result<()> {
    let venv = util::python_venv();
    let python = util::venv_python();
    if !runs(Command::new(&python).args(["-c", "import sys"])) {
        eprintln!("creating the Python test environment in {}", venv.display());
        util::run(
            Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(&venv),
        )?;
    }
    let missing: Vec<&str> = PIP_PACKAGES
        .iter()
        .filter(|(_, module)| {
            !runs(Command::new(&python).args(["-c", &format!("import {module}")]))
        })
        .map(|(requirement, _)| *requirement)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing Python packages: {}", missing.join(" "));
    util::run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(&missing),
    )
}

/// Whether `cmd` starts and exits successfully (its output discarded).
fn runs(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

fn is_root() -> bool {
    // /proc/self/status "Uid:" line: real, effective, saved, fs.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}
