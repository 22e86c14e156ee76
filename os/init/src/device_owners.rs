//! Giving device nodes back to their owners: as root, init hands each host path standing in
//! for a plan's device node to its driver's uid; a run on a developer's host (`testudo run`)
//! records the owners first and restores them when it ends, so a host's TPM (usually
//! `tss`-owned) is not left to a sandbox uid.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use testudo_plan::Plan;

use crate::options::InitOptions;

/// The owner of one device path as found before a run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeviceOwner {
    /// The host path.
    pub path: PathBuf,
    /// Its owner's uid.
    pub uid: u32,
    /// Its group's gid.
    pub gid: u32,
}

/// A path whose owner had changed and was given back (or could not be).
#[derive(Debug)]
pub struct GivenBack<'a> {
    /// The path and the owner it goes back to.
    pub owner: &'a DeviceOwner,
    /// Whether the `chown` worked.
    pub result: std::io::Result<()>,
}

/// Called once per path given back.
type Report = Box<dyn FnMut(GivenBack<'_>) + Send>;

/// Recorded owners of device paths; gives each back when dropped (or at
/// [`DeviceOwners::give_back`]). Paths whose owner did not change, and paths that are gone
/// (like a private swtpm's socket), are left alone.
pub struct DeviceOwners {
    owners: Vec<DeviceOwner>,
    report: Option<Report>,
}

impl std::fmt::Debug for DeviceOwners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceOwners")
            .field("owners", &self.owners)
            .finish_non_exhaustive()
    }
}

impl DeviceOwners {
    /// Records the owners of the host paths standing in for every device node of `plan`
    /// ([`crate::launch::device_source`]); paths that do not exist are not recorded.
    pub fn for_plan(plan: &Plan, options: &InitOptions) -> Self {
        Self::record(
            plan.components
                .values()
                .flat_map(|component| &component.devices.nodes)
                .map(|node| crate::launch::device_source(node, options)),
        )
    }

    /// Records the current owners of `paths` (each once; missing paths are skipped).
    pub fn record(paths: impl IntoIterator<Item = PathBuf>) -> Self {
        let mut owners: Vec<DeviceOwner> = paths
            .into_iter()
            .filter_map(|path| {
                let meta = std::fs::metadata(&path).ok()?;
                Some(DeviceOwner {
                    path,
                    uid: meta.uid(),
                    gid: meta.gid(),
                })
            })
            .collect();
        owners.sort();
        owners.dedup();
        DeviceOwners {
            owners,
            report: None,
        }
    }

    /// The recorded owners, sorted by path.
    pub fn owners(&self) -> &[DeviceOwner] {
        &self.owners
    }

    /// Calls `report` for every path given back, including when that happens on drop.
    pub fn with_report(mut self, report: impl FnMut(GivenBack<'_>) + Send + 'static) -> Self {
        self.report = Some(Box::new(report));
        self
    }

    /// Gives every path whose owner changed back to its recorded owner; nothing is left to
    /// do on drop afterwards.
    pub fn give_back(&mut self) {
        for owner in std::mem::take(&mut self.owners) {
            let Ok(meta) = std::fs::metadata(&owner.path) else {
                continue;
            };
            if (meta.uid(), meta.gid()) == (owner.uid, owner.gid) {
                continue;
            }
            let result = std::os::unix::fs::chown(&owner.path, Some(owner.uid), Some(owner.gid));
            if let Some(report) = &mut self.report {
                report(GivenBack {
                    owner: &owner,
                    result,
                });
            }
        }
    }
}

impl Drop for DeviceOwners {
    fn drop(&mut self) {
        self.give_back();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn paths_are_recorded_once_and_missing_ones_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node");
        std::fs::write(&node, b"").unwrap();
        let owners = DeviceOwners::record([node.clone(), dir.path().join("missing"), node.clone()]);
        assert_eq!(owners.owners().len(), 1);
        assert_eq!(owners.owners()[0].path, node);
    }

    #[test]
    fn a_changed_owner_is_given_back_and_unchanged_or_gone_paths_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let handed = dir.path().join("handed");
        let untouched = dir.path().join("untouched");
        let gone = dir.path().join("gone");
        for path in [&handed, &untouched, &gone] {
            std::fs::write(path, b"").unwrap();
        }
        let before = std::fs::metadata(&handed).unwrap();
        let reported = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&reported);
        let owners = DeviceOwners::record([handed.clone(), untouched.clone(), gone.clone()])
            .with_report(move |given: GivenBack<'_>| {
                sink.lock()
                    .unwrap()
                    .push((given.owner.path.clone(), given.result.is_ok()));
            });
        std::fs::remove_file(&gone).unwrap();
        // Handing the path to another uid needs root; without it only the "left alone"
        // half is checked.
        let handed_away = std::os::unix::fs::chown(&handed, Some(110_000), Some(110_000)).is_ok();
        drop(owners);
        let reported = reported.lock().unwrap().clone();
        if handed_away {
            assert_eq!(reported, vec![(handed.clone(), true)]);
            let after = std::fs::metadata(&handed).unwrap();
            assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
        } else {
            assert!(reported.is_empty(), "{reported:?}");
        }
    }

    #[test]
    fn give_back_leaves_nothing_for_drop() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node");
        std::fs::write(&node, b"").unwrap();
        let mut owners = DeviceOwners::record([node]);
        owners.give_back();
        assert!(owners.owners().is_empty());
    }
}
