//! Every path on the device that two sides share: where the image builder puts something and
//! where a component on the device finds it, where init shows something inside a component's
//! sandbox and where that component looks for it. Each is written here once; no other crate
//! spells one of these paths as a literal (`cargo xtask test` checks it).
//!
//! Paths are absolute as the device sees them. The image builder stages a root file system in
//! a directory and uses [`in_image`] to place a device path inside it.

/// A device path relative to the root, for placing it inside a staged image tree:
/// `in_image("/etc/testudo/plan.json") == "etc/testudo/plan.json"`.
pub const fn in_image(device_path: &str) -> &str {
    match device_path.as_bytes() {
        [b'/', ..] => device_path.split_at(1).1,
        _ => device_path,
    }
}

/// The root file system of an image slot (read-only squashfs, verified by the bundle).
pub mod rootfs {
    /// testudo's configuration directory: the plan and the public keys.
    pub const CONFIG_DIR: &str = "/etc/testudo";
    /// The plan the image was built from (canonical JSON, `docs/plan-format.md`).
    pub const PLAN: &str = "/etc/testudo/plan.json";
    /// testudo's own binaries: init, the drivers, the agent, the WASM host.
    pub const BIN_DIR: &str = "/usr/lib/testudo";
    /// The init the initramfs hands over to: `BIN_DIR`/[`INIT_BINARY`].
    pub const INIT: &str = "/usr/lib/testudo/testudo-init";
    /// File name of init in [`BIN_DIR`].
    pub const INIT_BINARY: &str = "testudo-init";
    /// File name of the WASM host in [`BIN_DIR`]; it runs every `kind = wasm` component.
    pub const WASM_HOST_BINARY: &str = "testudo-wasm-host";
    /// The app layer: WASM modules at `APPS`/`<run.wasm>` (the path the plan names, relative
    /// to the repository), each with its precompiled `.cwasm` sidecar beside it.
    pub const APPS: &str = "/apps";
    /// Public keys the device checks signatures against.
    pub const KEYS_DIR: &str = "/etc/testudo/keys";
    /// The Ed25519 public key (PEM) of the image's deploy key: it verifies the image manifest
    /// and signed app deployments.
    pub const DEPLOY_PUBLIC_KEY: &str = "/etc/testudo/keys/deploy.ed25519.pub";
    /// The root keys OS update manifests are signed under (a JWK set of RSA keys by key id,
    /// Azure Device Update's signature scheme); init shows it, RAUC's system.conf and keyring
    /// read-only in the updater's sandbox at their paths.
    pub const UPDATE_ROOT_KEYS: &str = "/etc/testudo/keys/update-roots.jwks";
    /// The CA certificates (PEM) the cloud agent trusts for the hub and DPS, from the config's
    /// `cloud.trust_anchors`; init shows it read-only in the agent's sandbox at this path.
    pub const TRUST_ANCHORS: &str = "/etc/testudo/trust-anchors.pem";
    /// RAUC's system configuration: the slots, the bootloader, the keyring.
    pub const RAUC_SYSTEM_CONF: &str = "/etc/rauc/system.conf";
    /// The CA certificates update bundles must chain to (PEM).
    pub const RAUC_KEYRING: &str = "/etc/rauc/keyring.pem";
    /// The kernel of this slot (GRUB loads it from the slot).
    pub const KERNEL: &str = "/boot/vmlinuz";
    /// The initramfs of this slot.
    pub const INITRAMFS: &str = "/boot/initrd.img";
    /// Where the EFI system partition is mounted when something needs the boot selection.
    pub const ESP_MOUNT: &str = "/boot/efi";
    /// Kernel module trees, `MODULES`/`<kernel release>`/.
    pub const MODULES: &str = "/lib/modules";
    /// In `MODULES`/`<release>`/: the modules to load, one relative `.ko` path per line, in
    /// order (the initramfs loads them before handing over to init).
    pub const MODULE_LOAD_LIST: &str = "testudo.load";
    /// Empty directories the system mounts over at boot.
    pub const MOUNT_POINTS: [&str; 6] = ["/dev", "/proc", "/sys", "/run", "/tmp", super::DATA];
}

/// The persistent data partition, mounted by init before any component starts.
pub const DATA: &str = "/data";

/// The updater's state on the data partition (RAUC's `data-directory`).
pub const RAUC_DATA: &str = "/data/rauc";

/// init's runtime state (sandbox roots, WASM compilation caches): a tmpfs, gone at reboot.
pub const STATE: &str = "/run/testudo";

/// The directory a storage provider gives `consumer` under its data root (the storage
/// driver's root handle for that consumer).
pub fn storage_dir(data_root: &std::path::Path, consumer: &str) -> std::path::PathBuf {
    data_root.join(consumer)
}

/// Where init keeps the app slots' deployments on the data partition under `data_root`:
/// `SLOTS/<slot>/state.json` (the installed serial, the current and previous signed tokens,
/// whether the current one is still on trial) and `SLOTS/<slot>/<sha256>.wasm`. The leading
/// dot keeps it apart from every storage consumer's directory (plan names start with a
/// letter).
pub fn slots_dir(data_root: &std::path::Path) -> std::path::PathBuf {
    data_root.join(SLOTS)
}

/// [`slots_dir`] relative to the data partition's root.
pub const SLOTS: &str = ".init/slots";

/// What a WASM host sees inside its sandbox (init binds these; the host's defaults are these).
pub mod wasm_sandbox {
    /// The plan, read-only.
    pub const PLAN: &str = "/etc/testudo/plan.json";
    /// The app root: the module at `APPS`/`<run.wasm>` and its sidecar, read-only.
    pub const APPS: &str = "/apps";
    /// The root under which each storage route's directory appears
    /// ([`super::storage_route_dir`]).
    pub const DATA: &str = "/data";
    /// The host's own compilation cache, read-write, private to this component.
    pub const CACHE: &str = "/var/cache/testudo/wasm";
}

/// Where a WASM app's storage route to `provider`.`capability` appears under the host's
/// storage root (`ROOT/PROVIDER/CAPABILITY/APP`; in the sandbox the root is
/// [`wasm_sandbox::DATA`]): the same directory the storage provider gives the app.
pub fn storage_route_dir(
    root: &std::path::Path,
    provider: &str,
    capability: &str,
    app: &str,
) -> std::path::PathBuf {
    root.join(provider).join(capability).join(app)
}

/// Files on the EFI system partition, as GRUB and RAUC's GRUB backend name them (paths from
/// the partition's root).
pub mod esp {
    /// GRUB's environment block with RAUC's boot-selection variables (`ORDER`, `A_OK`, ...).
    pub const GRUBENV: &str = "/EFI/testudo/grubenv";
    /// The boot-selection script.
    pub const GRUB_CFG: &str = "/EFI/testudo/grub.cfg";
    /// The removable-media boot path UEFI firmware starts.
    pub const BOOT_EFI: &str = "/EFI/BOOT/BOOTX64.EFI";
}

/// GPT partition names of the disk image; the device finds its partitions by these names.
pub mod partitions {
    /// The EFI system partition.
    pub const ESP: &str = "esp";
    /// Root file system slot A (RAUC bootname `A`).
    pub const ROOTFS_A: &str = "rootfs-a";
    /// Root file system slot B (RAUC bootname `B`).
    pub const ROOTFS_B: &str = "rootfs-b";
    /// The persistent data partition (ext4).
    pub const DATA: &str = "data";

    /// The root file system slots as `(RAUC bootname, GPT name)`, in disk order: GRUB's
    /// `ORDER`, the kernel's `testudo.slot=` and the grubenv's `<bootname>_OK`/`_TRY` use the
    /// bootname.
    pub const ROOTFS_SLOTS: [(&str, &str); 2] = [("A", ROOTFS_A), ("B", ROOTFS_B)];

    /// Where init links each partition by its GPT name, as udev does on other systems
    /// (`/dev/disk/by-partlabel/<name>` → the partition's device node): the plan's device
    /// nodes and the updater's `system.conf` name partitions this way.
    pub const BY_NAME: &str = "/dev/disk/by-partlabel";

    /// `/dev/disk/by-partlabel/<name>`.
    pub fn node(name: &str) -> String {
        format!("{BY_NAME}/{name}")
    }
}

/// Kernel command-line words the boot script writes and the device reads.
pub mod cmdline {
    /// `testudo.data=PARTLABEL=<name>`: the data partition init mounts at [`super::DATA`].
    pub const DATA_PARTITION: &str = "testudo.data=PARTLABEL=";
    /// `testudo.slot=<A|B>`: the slot GRUB booted.
    pub const SLOT: &str = "testudo.slot=";
    /// `rauc.slot=<A|B>`: the same, under the name RAUC reads.
    pub const RAUC_SLOT: &str = "rauc.slot=";
}

/// Files the cloud agent keeps in its own storage directory (its `storage` route).
pub mod agent_storage {
    /// The hub's CA certificate (PEM).
    pub const HUB_CA: &str = "hub-ca.pem";
    /// The device's base64 SAS key (identity `sas`).
    pub const SAS_KEY: &str = "device-key";
    /// The device's X.509 client certificate (PEM, identity `x509`).
    pub const CERT: &str = "device-cert.pem";
    /// The private key of [`CERT`] (PEM).
    pub const CERT_KEY: &str = "device-key.pem";
    /// Where DPS assigned the device (hub and device id), written atomically after a
    /// registration and reused at the next boot.
    pub const PROVISIONING: &str = "provisioning.json";
}

/// Every path of this contract with its name, for tools that check where paths are spelled.
/// The mount points the kernel's own file systems use (`/dev`, `/proc`, ...) are Linux's, not
/// this contract's, and are not listed.
pub fn all() -> Vec<(&'static str, &'static str)> {
    vec![
        ("layout::rootfs::CONFIG_DIR", rootfs::CONFIG_DIR),
        ("layout::rootfs::PLAN", rootfs::PLAN),
        ("layout::rootfs::BIN_DIR", rootfs::BIN_DIR),
        ("layout::rootfs::INIT", rootfs::INIT),
        ("layout::rootfs::APPS", rootfs::APPS),
        ("layout::rootfs::KEYS_DIR", rootfs::KEYS_DIR),
        (
            "layout::rootfs::DEPLOY_PUBLIC_KEY",
            rootfs::DEPLOY_PUBLIC_KEY,
        ),
        ("layout::rootfs::TRUST_ANCHORS", rootfs::TRUST_ANCHORS),
        ("layout::rootfs::RAUC_SYSTEM_CONF", rootfs::RAUC_SYSTEM_CONF),
        ("layout::rootfs::RAUC_KEYRING", rootfs::RAUC_KEYRING),
        ("layout::rootfs::KERNEL", rootfs::KERNEL),
        ("layout::rootfs::INITRAMFS", rootfs::INITRAMFS),
        ("layout::rootfs::ESP_MOUNT", rootfs::ESP_MOUNT),
        ("layout::DATA", DATA),
        ("layout::RAUC_DATA", RAUC_DATA),
        ("layout::STATE", STATE),
        ("layout::SLOTS", SLOTS),
        ("layout::wasm_sandbox::CACHE", wasm_sandbox::CACHE),
        ("layout::esp::GRUBENV", esp::GRUBENV),
        ("layout::esp::GRUB_CFG", esp::GRUB_CFG),
        ("layout::esp::BOOT_EFI", esp::BOOT_EFI),
    ]
}

/// The kernel command-line words of this contract, with their names: distinctive enough to be
/// looked for inside any text.
pub fn all_words() -> Vec<(&'static str, &'static str)> {
    vec![
        ("layout::cmdline::DATA_PARTITION", cmdline::DATA_PARTITION),
        ("layout::cmdline::SLOT", cmdline::SLOT),
        ("layout::cmdline::RAUC_SLOT", cmdline::RAUC_SLOT),
    ]
}

/// The file, binary and partition names of this contract, with their names (the generic
/// partition names `esp` and `data` are left out: too common a word to look for).
pub fn all_names() -> Vec<(&'static str, &'static str)> {
    vec![
        ("layout::rootfs::INIT_BINARY", rootfs::INIT_BINARY),
        ("layout::rootfs::WASM_HOST_BINARY", rootfs::WASM_HOST_BINARY),
        ("layout::rootfs::MODULE_LOAD_LIST", rootfs::MODULE_LOAD_LIST),
        ("layout::partitions::ROOTFS_A", partitions::ROOTFS_A),
        ("layout::partitions::ROOTFS_B", partitions::ROOTFS_B),
        ("layout::agent_storage::HUB_CA", agent_storage::HUB_CA),
        ("layout::agent_storage::SAS_KEY", agent_storage::SAS_KEY),
        ("layout::agent_storage::CERT", agent_storage::CERT),
        ("layout::agent_storage::CERT_KEY", agent_storage::CERT_KEY),
        (
            "layout::agent_storage::PROVISIONING",
            agent_storage::PROVISIONING,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_lives_in_the_binary_directory() {
        assert_eq!(
            rootfs::INIT,
            format!("{}/{}", rootfs::BIN_DIR, rootfs::INIT_BINARY)
        );
        assert_eq!(
            rootfs::DEPLOY_PUBLIC_KEY,
            format!("{}/deploy.ed25519.pub", rootfs::KEYS_DIR)
        );
    }

    #[test]
    fn the_sandbox_sees_the_same_plan_and_app_paths_as_the_rootfs() {
        assert_eq!(wasm_sandbox::PLAN, rootfs::PLAN);
        assert_eq!(wasm_sandbox::APPS, rootfs::APPS);
        assert_eq!(wasm_sandbox::DATA, DATA);
    }

    #[test]
    fn the_configuration_directory_holds_the_plan_and_the_keys() {
        for path in [rootfs::PLAN, rootfs::KEYS_DIR, rootfs::TRUST_ANCHORS] {
            assert_eq!(
                std::path::Path::new(path).parent(),
                Some(std::path::Path::new(rootfs::CONFIG_DIR))
            );
        }
    }

    #[test]
    fn the_updater_state_is_on_the_data_partition() {
        assert_eq!(
            std::path::Path::new(RAUC_DATA).parent(),
            Some(std::path::Path::new(DATA))
        );
    }

    #[test]
    fn image_paths_are_relative() {
        assert_eq!(in_image(rootfs::PLAN), "etc/testudo/plan.json");
        assert_eq!(
            storage_route_dir(
                std::path::Path::new(wasm_sandbox::DATA),
                "storage",
                "files",
                "app"
            ),
            std::path::Path::new("/data/storage/files/app")
        );
    }
}
