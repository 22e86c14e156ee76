//! `/dev/disk/by-partlabel/<GPT name>` links, as udev makes them on other systems (the image
//! has no udev). PID 1 makes them once the disk is there (after finding the data partition),
//! so the plan's device nodes and the updater's `system.conf` name partitions by GPT name:
//! `testudo_plan::layout::partitions::node("esp")`.

use std::path::{Path, PathBuf};

use crate::error::InitError;

/// `(GPT name, device name)` of every partition whose uevent names both, sorted by name. A
/// name that is empty, contains `/` or is `.`/`..` is skipped: it cannot be a link's name. A
/// name more than one partition has (a USB stick with a partition named `esp`, say) is
/// skipped too, and returned as the second list: linking either could hand a component
/// another disk's partition.
pub fn partition_names(uevents: &[String]) -> (Vec<(String, String)>, Vec<String>) {
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
    let mut ambiguous: Vec<String> = names
        .windows(2)
        .filter(|pair| pair[0].0 == pair[1].0)
        .map(|pair| pair[0].0.clone())
        .collect();
    ambiguous.dedup();
    names.retain(|(name, _)| !ambiguous.contains(name));
    (names, ambiguous)
}

/// Makes `dir/<name>` → `dev/<device>` for every partition in `uevents` with a name of its
/// own (replacing a link of the same name), creating `dir`. Returns the links made and the
/// names left unlinked because several partitions have them.
pub fn link_partitions(
    uevents: &[String],
    dev: &Path,
    dir: &Path,
) -> Result<(Vec<PathBuf>, Vec<String>), InitError> {
    std::fs::create_dir_all(dir).map_err(|source| InitError::PartitionLink {
        link: dir.to_owned(),
        source,
    })?;
    let mut made = Vec::new();
    let (names, ambiguous) = partition_names(uevents);
    for (name, device) in names {
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
    Ok((made, ambiguous))
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
            partition_names(&uevents).0,
            vec![
                ("esp".to_owned(), "nvme0n1p1".to_owned()),
                ("rootfs-b".to_owned(), "nvme0n1p3".to_owned()),
            ]
        );
    }

    #[test]
    fn a_name_two_partitions_have_is_linked_to_neither() {
        let uevents = vec![
            uevent("nvme0n1p1", Some("esp")),
            uevent("sda1", Some("esp")),
            uevent("nvme0n1p4", Some("data")),
        ];
        let (names, ambiguous) = partition_names(&uevents);
        assert_eq!(names, vec![("data".to_owned(), "nvme0n1p4".to_owned())]);
        assert_eq!(ambiguous, ["esp"]);
    }

    #[test]
    fn links_point_at_the_device_nodes_and_replace_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let links = dir.path().join("disk/by-partlabel");
        std::fs::create_dir_all(&links).unwrap();
        std::os::unix::fs::symlink("/dev/stale", links.join("esp")).unwrap();
        let (made, ambiguous) = link_partitions(
            &[uevent("vda1", Some("esp")), uevent("vda4", Some("data"))],
            Path::new("/dev"),
            &links,
        )
        .unwrap();
        assert_eq!(made, vec![links.join("data"), links.join("esp")]);
        assert!(ambiguous.is_empty());
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
