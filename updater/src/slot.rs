//! Which slot is running, and which slot an update goes to. The running slot is found as RAUC
//! does: `rauc.slot=NAME` on the kernel command line (bootname or slot name), else a `root=`
//! equal to a slot's device.

use crate::error::{Result, UpdaterError};
use crate::system_conf::{SlotConf, SystemConf};

/// The slot the kernel command line says is booted.
pub fn booted_from_cmdline<'c>(conf: &'c SystemConf, cmdline: &str) -> Option<&'c SlotConf> {
    let mut by_root = None;
    for token in cmdline.split_whitespace() {
        if let Some(name) = token.strip_prefix(testudo_plan::layout::cmdline::RAUC_SLOT) {
            return conf.slot_by_bootname(name).or_else(|| conf.slot(name));
        }
        if let Some(device) = token.strip_prefix("root=") {
            by_root = conf.slots.iter().find(|s| s.device.as_os_str() == device);
        }
    }
    by_root
}

/// Resolves a name given on the command line: a bootname (`A`) or slot name (`rootfs.0`).
pub fn by_name<'c>(conf: &'c SystemConf, name: &str) -> Result<&'c SlotConf> {
    conf.slot_by_bootname(name)
        .or_else(|| conf.slot(name))
        .ok_or_else(|| UpdaterError::UnknownSlot {
            name: name.to_string(),
        })
}

/// The bootable slot of the booted slot's class that is not the booted one ("the other").
pub fn other_bootable<'c>(conf: &'c SystemConf, booted: &SlotConf) -> Result<&'c SlotConf> {
    let candidates: Vec<&SlotConf> = conf
        .slots
        .iter()
        .filter(|s| {
            s.class == booted.class
                && s.bootname.is_some()
                && s.name() != booted.name()
                && !s.readonly
        })
        .collect();
    match candidates.as_slice() {
        [one] => Ok(one),
        [] => Err(UpdaterError::TargetSlot {
            message: format!(
                "no writable bootable slot of class {} besides the booted {}",
                booted.class,
                booted.name()
            ),
        }),
        _ => Err(UpdaterError::TargetSlot {
            message: format!(
                "more than one inactive slot of class {}; A/B only",
                booted.class
            ),
        }),
    }
}

/// The slot an image of `class` goes to when `target` is the bootable slot being updated:
/// `target` itself for its own class, else the child slot whose `parent=` is `target`.
pub fn for_image<'c>(
    conf: &'c SystemConf,
    target: &'c SlotConf,
    class: &str,
) -> Result<&'c SlotConf> {
    if class == target.class {
        return Ok(target);
    }
    let parent = target.name();
    conf.slots
        .iter()
        .find(|s| s.class == class && s.parent.as_deref() == Some(parent.as_str()) && !s.readonly)
        .ok_or_else(|| UpdaterError::TargetSlot {
            message: format!("no writable slot of class {class} with parent {parent}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn conf() -> SystemConf {
        SystemConf::grub_ab(
            "x",
            Path::new("/k"),
            Path::new("/g"),
            Path::new("/d"),
            Path::new("/dev/vda2"),
            Path::new("/dev/vda3"),
        )
    }

    #[test]
    fn finds_booted_and_other() {
        let conf = conf();
        let booted = booted_from_cmdline(&conf, "console=ttyS0 rauc.slot=B quiet").unwrap();
        assert_eq!(booted.name(), "rootfs.1");
        assert_eq!(other_bootable(&conf, booted).unwrap().name(), "rootfs.0");
        let by_root = booted_from_cmdline(&conf, "root=/dev/vda2 ro").unwrap();
        assert_eq!(by_root.name(), "rootfs.0");
        assert!(booted_from_cmdline(&conf, "root=/dev/sda1").is_none());
        assert!(by_name(&conf, "C").is_err());
    }

    #[test]
    fn child_slots_follow_their_parent() {
        let mut conf = conf();
        conf.slots.push(SlotConf {
            class: "appfs".into(),
            index: 1,
            device: "/dev/vda5".into(),
            slot_type: "ext4".into(),
            bootname: None,
            parent: Some("rootfs.1".into()),
            readonly: false,
        });
        let target = conf.slot("rootfs.1").unwrap().clone();
        assert_eq!(
            for_image(&conf, &target, "appfs").unwrap().name(),
            "appfs.1"
        );
        let other = conf.slot("rootfs.0").unwrap().clone();
        assert!(for_image(&conf, &other, "appfs").is_err());
    }
}
