//! RAUC's `system.conf`, read directly (an existing RAUC system.conf works unchanged) and
//! rendered for images. Known groups: `[system]`, `[keyring]`, `[handlers]`, `[encryption]`,
//! `[slot.C.N]`.
//! testudo extensions: `bootloader=file` with `[system] bootloader-statefile=` (test backend);
//! `[bundle-programs]`, whether a bundle's hooks and handler run, sandboxed (rauc 1.8 refuses
//! a file with this group, so it is written only when programs are allowed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{read_err, Result, UpdaterError};
use crate::ini::{Group, KeyFile};
use crate::signature::CheckPurpose;

/// Default location of the file, as RAUC (and every testudo image) has it.
pub const DEFAULT_PATH: &str = testudo_plan::layout::rootfs::RAUC_SYSTEM_CONF;

/// Which boot-selection backend the system uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootloaderKind {
    /// GRUB environment block (`grubenv=`, default `/boot/grub/grubenv`).
    Grub,
    /// An external handler (`[handlers] bootloader-custom-backend=`).
    Custom,
    /// testudo's state-file backend (signpost-like priority/tries/successful), for tests.
    File,
    /// Any other RAUC backend name (uboot, barebox, efi, noop): parsed, not supported here.
    Other(String),
}

impl BootloaderKind {
    fn parse(name: &str) -> Self {
        match name {
            "grub" => BootloaderKind::Grub,
            "custom" => BootloaderKind::Custom,
            "file" => BootloaderKind::File,
            other => BootloaderKind::Other(other.to_string()),
        }
    }

    /// The system.conf spelling.
    pub fn as_str(&self) -> &str {
        match self {
            BootloaderKind::Grub => "grub",
            BootloaderKind::Custom => "custom",
            BootloaderKind::File => "file",
            BootloaderKind::Other(name) => name,
        }
    }
}

/// One `[slot.<class>.<index>]` group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SlotConf {
    /// Slot class (e.g. `rootfs`).
    pub class: String,
    /// Index within the class.
    pub index: u32,
    /// Device or file the slot's image is written to.
    pub device: PathBuf,
    /// `type=` (raw, ext4, ...); images are written raw whatever the type.
    pub slot_type: String,
    /// `bootname=`: the name the bootloader knows it by (e.g. `A`).
    pub bootname: Option<String>,
    /// `parent=` for child slots (e.g. `rootfs.0`).
    pub parent: Option<String>,
    /// `readonly=true`: never written.
    pub readonly: bool,
}

impl SlotConf {
    /// `class.index`, RAUC's slot name.
    pub fn name(&self) -> String {
        format!("{}.{}", self.class, self.index)
    }
}

/// A parsed system.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemConf {
    /// `[system] compatible=`.
    pub compatible: String,
    /// `[system] bootloader=`.
    pub bootloader: BootloaderKind,
    /// `[system] grubenv=` (GRUB backend).
    pub grubenv: PathBuf,
    /// `[system] data-directory=`.
    pub data_directory: Option<PathBuf>,
    /// `[system] statusfile=` (a path; `per-slot` is not supported).
    pub statusfile: Option<PathBuf>,
    /// `[system] min-bundle-version=`.
    pub min_bundle_version: Option<String>,
    /// `[system] bootloader-statefile=` (file backend).
    pub bootloader_statefile: Option<PathBuf>,
    /// `[keyring] path=`, resolved against the file's directory.
    pub keyring: Option<PathBuf>,
    /// `[keyring] check-purpose=`.
    pub check_purpose: CheckPurpose,
    /// `[handlers] bootloader-custom-backend=`, resolved against the file's directory.
    pub custom_backend: Option<PathBuf>,
    /// `[encryption] key= cert=`: the device's key for encrypted bundles, resolved against
    /// the file's directory.
    pub encryption: Option<EncryptionConf>,
    /// `[system] mountprefix=` (RAUC's default `/mnt/rauc`): where a bundle's programs see
    /// the bundle (`<mountprefix>/bundle`) and `RAUC_MOUNT_PREFIX`.
    pub mount_prefix: PathBuf,
    /// `[bundle-programs]`: whether a bundle's hooks and handler run (default: refused).
    pub bundle_programs: BundleProgramsConf,
    /// Slots in file order.
    pub slots: Vec<SlotConf>,
}

/// RAUC's default `mountprefix=`.
pub const DEFAULT_MOUNT_PREFIX: &str = "/mnt/rauc";

/// What happens to a bundle that carries programs (install hooks, a handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramsPolicy {
    /// `run=refuse` (the default): such a bundle is refused before anything is written.
    Refuse,
    /// `run=sandboxed`: each program runs in a sandbox holding only what its step needs.
    Sandboxed,
}

/// `[bundle-programs] run= timeout= tools=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleProgramsConf {
    /// `run=refuse|sandboxed`.
    pub policy: ProgramsPolicy,
    /// `timeout=` seconds one program may run before it is killed (default 600).
    pub timeout: Duration,
    /// `tools=`: host paths shown read-only (and executable) at the same place, `;`-separated
    /// (default: those of `/usr`, `/lib`, `/lib64` and `/bin/sh` that exist). Not `/bin`
    /// itself: the program is placed there.
    pub tools: Vec<PathBuf>,
}

/// Default `[bundle-programs] timeout=`.
pub const DEFAULT_PROGRAM_TIMEOUT: Duration = Duration::from_secs(600);

/// The tool paths a POSIX shell script needs on a merged-`/usr` system (and on one whose
/// `/bin/sh` is a busybox link): the default `tools=`.
const DEFAULT_TOOLS: [&str; 4] = ["/usr", "/lib", "/lib64", "/bin/sh"];

impl Default for BundleProgramsConf {
    fn default() -> Self {
        BundleProgramsConf {
            policy: ProgramsPolicy::Refuse,
            timeout: DEFAULT_PROGRAM_TIMEOUT,
            tools: DEFAULT_TOOLS
                .iter()
                .map(PathBuf::from)
                .filter(|path| path.exists())
                .collect(),
        }
    }
}

impl BundleProgramsConf {
    fn parse(group: &Group) -> Result<Self> {
        let policy = match group.get("run") {
            None | Some("refuse") => ProgramsPolicy::Refuse,
            Some("sandboxed") => ProgramsPolicy::Sandboxed,
            Some(other) => {
                return Err(bad(format!(
                    "[bundle-programs] run={other}: expected refuse or sandboxed"
                )))
            }
        };
        let mut conf = BundleProgramsConf {
            policy,
            ..BundleProgramsConf::default()
        };
        if let Some(seconds) = group.get("timeout") {
            let seconds: u64 = seconds.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                bad(format!(
                    "[bundle-programs] timeout={seconds}: expected seconds > 0"
                ))
            })?;
            conf.timeout = Duration::from_secs(seconds);
        }
        if let Some(tools) = group.get("tools") {
            conf.tools = tools
                .split(';')
                .filter(|t| !t.is_empty())
                .map(PathBuf::from)
                .collect();
            if let Some(bad_tool) = conf
                .tools
                .iter()
                .find(|t| !t.is_absolute() || t.as_path() == Path::new("/bin"))
            {
                return Err(bad(format!(
                    "[bundle-programs] tools: {} must be an absolute path other than /bin",
                    bad_tool.display()
                )));
            }
        }
        Ok(conf)
    }
}

/// `[encryption]`: the recipient identity that opens bundles encrypted for this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionConf {
    /// `key=`: the private key (PEM).
    pub key: PathBuf,
    /// `cert=`: its certificate (PEM), if given.
    pub cert: Option<PathBuf>,
}

impl EncryptionConf {
    /// Loads the key (and certificate) for [`crate::bundle::open_with`].
    pub fn load(&self) -> Result<crate::crypt::Decryptor> {
        crate::crypt::Decryptor::load(&self.key, self.cert.as_deref())
    }
}

fn bad(message: impl Into<String>) -> UpdaterError {
    UpdaterError::SystemConf {
        message: message.into(),
    }
}

/// One `[slot.CLASS.INDEX]` group (`name` is `CLASS.INDEX`).
fn parse_slot(group: &Group, name: &str) -> Result<SlotConf> {
    let (class, index) = name.rsplit_once('.').ok_or_else(|| {
        bad(format!(
            "slot group [{}] is not [slot.CLASS.INDEX]",
            group.name
        ))
    })?;
    let index: u32 = index.parse().map_err(|_| {
        bad(format!(
            "slot group [{}] has a non-numeric index",
            group.name
        ))
    })?;
    if class.is_empty() {
        return Err(bad(format!(
            "slot group [{}] has an empty class",
            group.name
        )));
    }
    let device = group
        .get("device")
        .ok_or_else(|| bad(format!("[{}] lacks device=", group.name)))?;
    Ok(SlotConf {
        class: class.to_string(),
        index,
        device: PathBuf::from(device),
        slot_type: group.get("type").unwrap_or("raw").to_string(),
        bootname: group.get("bootname").map(str::to_string),
        parent: group.get("parent").map(str::to_string),
        readonly: group.get("readonly") == Some("true"),
    })
}
fn resolve(base: Option<&Path>, value: &str) -> PathBuf {
    let path = PathBuf::from(value);
    match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path,
    }
}

impl SystemConf {
    /// Reads and parses `path`; relative keyring and handler paths resolve against its dir.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(read_err(path))?;
        Self::parse(&text, path.parent())
    }

    /// Parses system.conf text; `base` resolves relative keyring/handler paths.
    pub fn parse(text: &str, base: Option<&Path>) -> Result<Self> {
        let file = KeyFile::parse(text, "system.conf")?;
        let system = file
            .group("system")
            .ok_or_else(|| bad("missing [system]"))?;
        let compatible = system
            .get("compatible")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| bad("[system] lacks compatible="))?
            .to_string();
        let bootloader = BootloaderKind::parse(
            system
                .get("bootloader")
                .ok_or_else(|| bad("[system] lacks bootloader="))?,
        );
        let statusfile = match system.get("statusfile") {
            Some("per-slot") => {
                return Err(bad(
                    "statusfile=per-slot is not supported; give a path or data-directory=",
                ))
            }
            Some(path) => Some(PathBuf::from(path)),
            None => None,
        };
        let keyring = file.group("keyring");
        let check_purpose = match keyring.and_then(|k| k.get("check-purpose")) {
            Some(purpose) => purpose.parse()?,
            None => CheckPurpose::default(),
        };
        let mut slots = Vec::new();
        for group in &file.groups {
            if let Some(name) = group.name.strip_prefix("slot.") {
                slots.push(parse_slot(group, name)?);
            }
        }
        let conf = SystemConf {
            compatible,
            bootloader,
            grubenv: PathBuf::from(system.get("grubenv").unwrap_or("/boot/grub/grubenv")),
            data_directory: system.get("data-directory").map(PathBuf::from),
            statusfile,
            min_bundle_version: system.get("min-bundle-version").map(str::to_string),
            bootloader_statefile: system.get("bootloader-statefile").map(PathBuf::from),
            keyring: keyring
                .and_then(|k| k.get("path"))
                .map(|p| resolve(base, p)),
            check_purpose,
            custom_backend: file
                .group("handlers")
                .and_then(|h| h.get("bootloader-custom-backend"))
                .map(|p| resolve(base, p)),
            mount_prefix: PathBuf::from(system.get("mountprefix").unwrap_or(DEFAULT_MOUNT_PREFIX)),
            bundle_programs: match file.group("bundle-programs") {
                Some(group) => BundleProgramsConf::parse(group)?,
                None => BundleProgramsConf::default(),
            },
            encryption: match file.group("encryption") {
                Some(group) => Some(EncryptionConf {
                    key: resolve(
                        base,
                        group
                            .get("key")
                            .ok_or_else(|| bad("[encryption] lacks key="))?,
                    ),
                    cert: group.get("cert").map(|p| resolve(base, p)),
                }),
                None => None,
            },
            slots,
        };
        let mut bootnames: Vec<&str> = conf
            .slots
            .iter()
            .filter_map(|s| s.bootname.as_deref())
            .collect();
        bootnames.sort_unstable();
        if bootnames.windows(2).any(|w| w[0] == w[1]) {
            return Err(bad("two slots share a bootname"));
        }
        Ok(conf)
    }

    /// A/B system with GRUB: `rootfs.0` (bootname A) and `rootfs.1` (bootname B).
    pub fn grub_ab(
        compatible: &str,
        keyring: &Path,
        grubenv: &Path,
        data_directory: &Path,
        slot_a: &Path,
        slot_b: &Path,
    ) -> Self {
        let slot = |index: u32, device: &Path, bootname: &str| SlotConf {
            class: "rootfs".to_string(),
            index,
            device: device.to_path_buf(),
            slot_type: "raw".to_string(),
            bootname: Some(bootname.to_string()),
            parent: None,
            readonly: false,
        };
        SystemConf {
            compatible: compatible.to_string(),
            bootloader: BootloaderKind::Grub,
            grubenv: grubenv.to_path_buf(),
            data_directory: Some(data_directory.to_path_buf()),
            statusfile: None,
            min_bundle_version: None,
            bootloader_statefile: None,
            keyring: Some(keyring.to_path_buf()),
            check_purpose: CheckPurpose::default(),
            custom_backend: None,
            encryption: None,
            mount_prefix: PathBuf::from(DEFAULT_MOUNT_PREFIX),
            bundle_programs: BundleProgramsConf::default(),
            slots: vec![slot(0, slot_a, "A"), slot(1, slot_b, "B")],
        }
    }

    /// Renders RAUC's system.conf text (deterministic; rauc 1.8 reads it, except the
    /// testudo-only `bootloader=file`).
    pub fn render(&self) -> String {
        let mut file = KeyFile::default();
        let system = file.group_mut("system");
        system.set("compatible", self.compatible.as_str());
        system.set("bootloader", self.bootloader.as_str());
        if self.bootloader == BootloaderKind::Grub {
            system.set("grubenv", self.grubenv.display().to_string());
        }
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        system.set_opt("data-directory", path(&self.data_directory).as_deref());
        system.set_opt("statusfile", path(&self.statusfile).as_deref());
        system.set_opt("min-bundle-version", self.min_bundle_version.as_deref());
        system.set_opt(
            "bootloader-statefile",
            path(&self.bootloader_statefile).as_deref(),
        );
        if self.mount_prefix != Path::new(DEFAULT_MOUNT_PREFIX) {
            system.set("mountprefix", self.mount_prefix.display().to_string());
        }
        if let Some(keyring) = &self.keyring {
            let group = file.group_mut("keyring");
            group.set("path", keyring.display().to_string());
            match self.check_purpose {
                CheckPurpose::SmimeSign => {}
                CheckPurpose::CodeSign => group.set("check-purpose", "codesign"),
                CheckPurpose::Any => group.set("check-purpose", "any"),
            }
        }
        if let Some(handler) = &self.custom_backend {
            file.group_mut("handlers")
                .set("bootloader-custom-backend", handler.display().to_string());
        }
        if let Some(encryption) = &self.encryption {
            let group = file.group_mut("encryption");
            group.set("key", encryption.key.display().to_string());
            group.set_opt("cert", path(&encryption.cert).as_deref());
        }
        let programs = &self.bundle_programs;
        if programs.policy == ProgramsPolicy::Sandboxed {
            let group = file.group_mut("bundle-programs");
            group.set("run", "sandboxed");
            group.set("timeout", programs.timeout.as_secs().to_string());
            let tools: Vec<String> = programs
                .tools
                .iter()
                .map(|t| t.display().to_string())
                .collect();
            group.set("tools", tools.join(";"));
        }
        for slot in &self.slots {
            let group = file.group_mut(&format!("slot.{}", slot.name()));
            group.set("device", slot.device.display().to_string());
            group.set("type", slot.slot_type.as_str());
            group.set_opt("bootname", slot.bootname.as_deref());
            group.set_opt("parent", slot.parent.as_deref());
            if slot.readonly {
                group.set("readonly", "true");
            }
        }
        file.render()
    }

    /// Where the slot status file lives: `statusfile=`, else `data-directory/central.raucs`.
    pub fn status_path(&self) -> Result<PathBuf> {
        if let Some(path) = &self.statusfile {
            return Ok(path.clone());
        }
        match &self.data_directory {
            Some(dir) => Ok(dir.join("central.raucs")),
            None => Err(bad(
                "needs [system] data-directory= or statusfile= to keep slot status",
            )),
        }
    }

    /// The slot named `class.index`.
    pub fn slot(&self, name: &str) -> Option<&SlotConf> {
        self.slots.iter().find(|s| s.name() == name)
    }

    /// The slot with bootname `bootname`.
    pub fn slot_by_bootname(&self, bootname: &str) -> Option<&SlotConf> {
        self.slots
            .iter()
            .find(|s| s.bootname.as_deref() == Some(bootname))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses_back() {
        let conf = SystemConf::grub_ab(
            "acme-gw",
            Path::new("/etc/rauc/ca.pem"),
            Path::new("/boot/efi/grubenv"),
            Path::new("/data/rauc"),
            Path::new("/dev/vda2"),
            Path::new("/dev/vda3"),
        );
        let text = conf.render();
        assert!(text.starts_with(
            "[system]\ncompatible=acme-gw\nbootloader=grub\ngrubenv=/boot/efi/grubenv\n"
        ));
        assert!(text.contains("[slot.rootfs.1]\ndevice=/dev/vda3\ntype=raw\nbootname=B\n"));
        assert_eq!(SystemConf::parse(&text, None).unwrap(), conf);
    }

    #[test]
    fn reads_a_rauc_system_conf_unchanged() {
        let text = "# RAUC example\n[system]\ncompatible=FooCorp Super BarBazzer\nbootloader=grub\nmountprefix=/mnt/rauc\ndata-directory=/data/rauc\nmin-bundle-version=2024.01\n\n[keyring]\npath=/etc/rauc/keyring.pem\ncheck-purpose=codesign\n\n[handlers]\nsystem-info=/usr/lib/rauc/info\n\n[slot.rootfs.0]\ndevice=/dev/disk/by-partlabel/rootfs-a\ntype=ext4\nbootname=A\n\n[slot.rootfs.1]\ndevice=/dev/disk/by-partlabel/rootfs-b\ntype=ext4\nbootname=B\n\n[slot.appfs.0]\ndevice=/dev/sda4\ntype=ext4\nparent=rootfs.0\n";
        let conf = SystemConf::parse(text, None).unwrap();
        assert_eq!(conf.compatible, "FooCorp Super BarBazzer");
        assert_eq!(conf.grubenv, PathBuf::from("/boot/grub/grubenv"));
        assert_eq!(conf.check_purpose, CheckPurpose::CodeSign);
        assert_eq!(conf.min_bundle_version.as_deref(), Some("2024.01"));
        assert_eq!(conf.slots.len(), 3);
        assert_eq!(conf.slots[2].parent.as_deref(), Some("rootfs.0"));
        assert_eq!(
            conf.status_path().unwrap(),
            PathBuf::from("/data/rauc/central.raucs")
        );
    }

    #[test]
    fn bundle_programs_are_refused_unless_allowed_and_round_trip() {
        let base = "[system]\ncompatible=x\nbootloader=grub\n";
        let conf = SystemConf::parse(base, None).unwrap();
        assert_eq!(conf.bundle_programs.policy, ProgramsPolicy::Refuse);
        assert_eq!(conf.mount_prefix, PathBuf::from("/mnt/rauc"));
        assert!(!conf.render().contains("bundle-programs"));
        let text = format!(
            "{base}mountprefix=/run/rauc\n[bundle-programs]\nrun=sandboxed\ntimeout=5\ntools=/usr;/opt/tools\n"
        );
        let conf = SystemConf::parse(&text, None).unwrap();
        assert_eq!(conf.mount_prefix, PathBuf::from("/run/rauc"));
        assert_eq!(
            conf.bundle_programs,
            BundleProgramsConf {
                policy: ProgramsPolicy::Sandboxed,
                timeout: Duration::from_secs(5),
                tools: vec![PathBuf::from("/usr"), PathBuf::from("/opt/tools")],
            }
        );
        assert_eq!(SystemConf::parse(&conf.render(), None).unwrap(), conf);
        for wrong in [
            "run=always",
            "timeout=0",
            "timeout=soon",
            "tools=/bin",
            "tools=usr",
        ] {
            let text = format!("{base}[bundle-programs]\n{wrong}\n");
            let err = SystemConf::parse(&text, None).unwrap_err().to_string();
            assert!(err.contains("[bundle-programs]"), "{wrong}: {err}");
        }
    }

    #[test]
    fn resolves_relative_keyring_and_rejects_bad_slots() {
        let conf = SystemConf::parse(
            "[system]\ncompatible=x\nbootloader=grub\n[keyring]\npath=ca.pem\n",
            Some(Path::new("/etc/rauc")),
        )
        .unwrap();
        assert_eq!(conf.keyring, Some(PathBuf::from("/etc/rauc/ca.pem")));
        assert!(SystemConf::parse(
            "[system]\ncompatible=x\nbootloader=grub\n[slot.rootfs]\ndevice=/d\n",
            None
        )
        .is_err());
        assert!(SystemConf::parse(
            "[system]\ncompatible=x\nbootloader=grub\n[slot.r.0]\ndevice=/a\nbootname=A\n[slot.r.1]\ndevice=/b\nbootname=A\n",
            None
        )
        .is_err());
    }
}
