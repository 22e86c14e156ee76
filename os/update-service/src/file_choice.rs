//! Which file of an update the device downloads: a delta bundle when the manifest offers one
//! for the image in the running slot, else the full bundle (ADU's delta updates: the bundle
//! file's `relatedFiles` under the `microsoft/delta:1` download handler).
//!
//! The running slot's image is known by the status file's record of what this updater
//! installed there (its sha256). A slot without a record (the factory image) is not hashed
//! here: the first delta offered is tried, and the install checks the slot against the
//! delta's signed base before writing anything; a delta that does not fit costs its small
//! download, then the full bundle follows ([`crate::workflow`]).

use testudo_os_update::manifest::FileEntry;
use testudo_updater::status_file::StatusFile;
use testudo_updater::SystemConf;

/// The file id of the delta to download for `file` (the bundle step's file) on a device
/// whose running slot holds an image with sha256 `running` (None: not recorded); None
/// means the full bundle.
pub fn wanted_delta(file: &FileEntry, running: Option<[u8; 32]>) -> Option<String> {
    let mut deltas = file.deltas();
    match running {
        Some(running) => deltas
            .find(|(_, _, source)| *source == running)
            .map(|(id, _, _)| id.to_owned()),
        None => deltas.next().map(|(id, _, _)| id.to_owned()),
    }
}

/// The sha256 of the image recorded for the slot with bootname `booted`, if the status file
/// has one.
pub fn running_image_sha256(conf: &SystemConf, booted: &str) -> Option<[u8; 32]> {
    let slot = conf.slot_by_bootname(booted)?;
    let status = StatusFile::load(&conf.status_path().ok()?).ok()?;
    let text = status.get(&slot.name()).sha256?;
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(text, &mut sha256).ok()?;
    Some(sha256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use testudo_os_update::manifest::{RelatedFile, DELTA_DOWNLOAD_HANDLER};

    fn file_with(deltas: &[(&str, [u8; 32])]) -> FileEntry {
        let mut file = FileEntry::plain("update.raucb", 1000, [1; 32]);
        file.download_handler = Some(DELTA_DOWNLOAD_HANDLER.to_owned());
        for (id, source) in deltas {
            file.related_files.insert(
                (*id).to_owned(),
                RelatedFile {
                    file_name: format!("{id}.raucb"),
                    size_in_bytes: 10,
                    sha256: [2; 32],
                    source_sha256: Some(*source),
                },
            );
        }
        file
    }

    #[test]
    fn the_delta_for_the_running_image_is_chosen_else_the_full_bundle() {
        let file = file_with(&[("d-a", [0xa; 32]), ("d-b", [0xb; 32])]);
        assert_eq!(wanted_delta(&file, Some([0xb; 32])).as_deref(), Some("d-b"));
        assert_eq!(wanted_delta(&file, Some([0xc; 32])), None);
        // Not recorded: the first offered, checked against the slot at install.
        assert_eq!(wanted_delta(&file, None).as_deref(), Some("d-a"));
        assert_eq!(wanted_delta(&file_with(&[]), None), None);
        let mut no_handler = file.clone();
        no_handler.download_handler = None;
        assert_eq!(wanted_delta(&no_handler, Some([0xa; 32])), None);
    }
}
