//! `/dev/disk/by-partlabel/<GPT name>` links, as udev makes them on other systems (the image
//! has no udev). PID 1 makes them once the disk is there (after finding the data partition),
//! so the plan's device nodes and the updater's `system.conf` name partitions by GPT name:
//! `testudo_plan::layout::partitions::node("esp")`.

use std::path::{Path, PathBuf};

use crate::error::InitError;

/// `(GPT name, device name)` of every partition whose uevent names both, sorted by name. A
/// name that is empty, contains `/` or is `.`/`..` is skipped: it cannot be a link's name.
pub fn partition_names(uevents: &[String]) -> Vec<(String, String)> {
    let mut names: Vec<(String, String)> = uevents
        .iter()
        .filter_map(|text| {
            let field = |key: &str| {
                text.lines()
                    .find_map(|line| line.strip_prefix(key))
                    .map(str::to_owned)
            };
            let name = field("PARTNAME=")?;
            let device = field("DEVNAME=")?;
            let usable = |s: &str| !s.is_empty() && !s.contains('/') && s != "." && s != "..";
            (usable(&name) && usable(&device)).then_some((name, device))
        })
        .collect();
    names.sort();
    names.dedup_by(|a, b| a.0 == b.0);
    names
}

/// Makes `dir/<name>` → `dev/<device>` for every partition in `uevents` (replacing a link of
/// the same name), creating `dir`. Returns the links made.
pub fn link_partitions(
    uevents: &[String],
    dev: &Path,
    dir: &Path,
) -> Result<Vec<PathBuf>, InitError> {
    std::fs::create_dir_all(dir).map_err(|source| InitError::PartitionLink {
        link: dir.to_owned(),
        source,
    })?;
    let mut made = Vec::new();
    for (name, device) in partition_names(uevents) {
        let link = dir.join(&name);
        let target = dev.join(&device);
        let make = || -> std::io::Result<()> {
            match std::fs::remove_file(&link) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
            std::os::unix::fs::symlink(&target, &link)
        };
        make().map_err(|source| InitError::PartitionLink {
            link: link.clone(),
            source,
        })?;
        made.push(link);
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uevent(devname: &str, partname: Option<&str>) -> String {
        let mut text = format!("MAJOR=259\nMINOR=1\nDEVNAME={devname}\nDEVTYPE=partition\n");
        if let Some(name) = partname {
            text.push_str(&format!("PARTN=1\nPARTNAME={name}\n"));
        }
        text
    }

    #[test]
    fn names_come_from_uevents_and_unusable_ones_are_skipped() {
        let uevents = vec![
            uevent("nvme0n1", None),
            uevent("nvme0n1p3", Some("rootfs-b")),
            uevent("nvme0n1p1", Some("esp")),
            uevent("nvme0n1p9", Some("../etc")),
            uevent("nvme0n1p8", Some("..")),
            uevent("nvme0n1p7", Some("")),
            uevent("../x", Some("evil")),
        ];
        assert_eq!(
            partition_names(&uevents),
            vec![
                ("esp".to_owned(), "nvme0n1p1".to_owned()),
                ("rootfs-b".to_owned(), "nvme0n1p3".to_owned()),
            ]
        );
    }

    #[test]
    fn links_point_at_the_device_nodes_and_replace_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let links = dir.path().join("disk/by-partlabel");
        std::fs::create_dir_all(&links).unwrap();
        std::os::unix::fs::symlink("/dev/stale", links.join("esp")).unwrap();
        let made = link_partitions(
            &[uevent("vda1", Some("esp")), uevent("vda4", Some("data"))],
            Path::new("/dev"),
            &links,
        )
        .unwrap();
        assert_eq!(made, vec![links.join("data"), links.join("esp")]);
        assert_eq!(
            std::fs::read_link(links.join("esp")).unwrap(),
            Path::new("/dev/vda1")
        );
        assert_eq!(
            std::fs::read_link(links.join("data")).unwrap(),
            Path::new("/dev/vda4")
        );
    }
}
