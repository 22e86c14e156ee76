//! The disk image: partition layout from the board, then the partition images copied in at
//! their offsets (sparsely: all-zero blocks are skipped, the file reads back as zeros).
//!
//! Layout (fixed order, GRUB's script relies on it): 1 `esp`, 2 `rootfs-a`, 3 `rootfs-b`,
//! 4 `data`; every partition starts on a 1 MiB boundary.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use testudo_config::plan::Partitions;

use sha2::{Digest, Sha256};

use crate::digest::FileDigest;
use crate::error::{ImageError, Result};
use crate::gpt::{self, GptPartition, Guid, SECTOR};

/// Partition alignment and size granularity.
pub const ALIGN: u64 = 1 << 20;
/// GPT name of the EFI system partition.
pub const ESP_LABEL: &str = "esp";
/// GPT name of rootfs slot A.
pub const ROOTFS_A_LABEL: &str = "rootfs-a";
/// GPT name of rootfs slot B.
pub const ROOTFS_B_LABEL: &str = "rootfs-b";
/// GPT name of the data partition.
pub const DATA_LABEL: &str = "data";

/// One partition placed on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedPartition {
    /// GPT entry.
    pub gpt: GptPartition,
    /// Byte offset.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Where every partition goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLayout {
    /// Disk GUID.
    pub disk_guid: Guid,
    /// Partitions in table order.
    pub partitions: Vec<PlacedPartition>,
    /// Total image size in bytes.
    pub total_bytes: u64,
}

fn round_up(value: u64, to: u64) -> u64 {
    value.div_ceil(to) * to
}

impl DiskLayout {
    /// The layout for a board's partition sizes; GUIDs derive from `seed` (the system's
    /// `compatible` string), so two systems never share them and one system always has the same.
    pub fn for_board(seed: &str, sizes: &Partitions) -> DiskLayout {
        let specs = [
            (ESP_LABEL, gpt::TYPE_ESP, sizes.esp_bytes),
            (ROOTFS_A_LABEL, gpt::TYPE_ROOT_X86_64, sizes.rootfs_bytes),
            (ROOTFS_B_LABEL, gpt::TYPE_ROOT_X86_64, sizes.rootfs_bytes),
            (DATA_LABEL, gpt::TYPE_LINUX_DATA, sizes.data_bytes),
        ];
        let mut offset = ALIGN;
        let mut partitions = Vec::new();
        for (name, type_text, size) in specs {
            let size = round_up(size.max(ALIGN), ALIGN);
            let type_guid = Guid::parse(type_text).unwrap_or(Guid::derived(seed, type_text));
            partitions.push(PlacedPartition {
                gpt: GptPartition {
                    name: name.to_owned(),
                    type_guid,
                    unique_guid: Guid::derived(seed, name),
                    first_lba: offset / SECTOR,
                    last_lba: (offset + size) / SECTOR - 1,
                },
                offset,
                size,
            });
            offset += size;
        }
        DiskLayout {
            disk_guid: Guid::derived(seed, "disk"),
            partitions,
            total_bytes: offset + ALIGN,
        }
    }

    /// The partition named `name`.
    pub fn partition(&self, name: &str) -> Option<&PlacedPartition> {
        self.partitions.iter().find(|p| p.gpt.name == name)
    }
}

/// Writes the disk image `out`: the partition table, then each `(partition name, image)`.
/// Partitions without an image stay zero. Returns the image's digest, computed while
/// writing (holes are hashed from memory instead of being read back).
pub fn assemble(out: &Path, layout: &DiskLayout, contents: &[(&str, &Path)]) -> Result<FileDigest> {
    for (name, image) in contents {
        let part = layout.partition(name).ok_or_else(|| ImageError::Board {
            board: String::new(),
            detail: format!("no partition named {name}"),
        })?;
        let needed = std::fs::metadata(image)
            .map_err(ImageError::read(*image))?
            .len();
        if needed > part.size {
            return Err(ImageError::PartitionTooSmall {
                partition: (*name).to_owned(),
                needed,
                available: part.size,
            });
        }
    }
    if out.exists() {
        std::fs::remove_file(out).map_err(ImageError::write(out))?;
    }
    let file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(out)
        .map_err(ImageError::write(out))?;
    file.set_len(layout.total_bytes)
        .map_err(ImageError::write(out))?;
    let gpts: Vec<GptPartition> = layout.partitions.iter().map(|p| p.gpt.clone()).collect();
    let table = gpt::write_table(layout.disk_guid, &gpts, layout.total_bytes / SECTOR);
    file.write_all_at(&table.head, 0)
        .map_err(ImageError::write(out))?;
    file.write_all_at(&table.tail, table.tail_offset)
        .map_err(ImageError::write(out))?;
    let mut hash = OrderedHash::default();
    hash.bytes(&table.head);
    for part in &layout.partitions {
        hash.zeros_to(part.offset);
        if let Some((_, image)) = contents.iter().find(|(name, _)| *name == part.gpt.name) {
            copy_sparse(image, &file, part.offset, out, &mut hash)?;
        }
    }
    hash.zeros_to(table.tail_offset);
    hash.bytes(&table.tail);
    file.sync_all().map_err(ImageError::write(out))?;
    Ok(hash.finish())
}

/// SHA-256 over a disk image written in offset order, zeros filled in for skipped ranges.
#[derive(Default)]
struct OrderedHash {
    hasher: Sha256,
    position: u64,
}

impl OrderedHash {
    fn bytes(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.position += bytes.len() as u64;
    }

    fn zeros_to(&mut self, offset: u64) {
        static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
        while self.position < offset {
            let n = (offset - self.position).min(ZEROS.len() as u64) as usize;
            self.bytes(&ZEROS[..n]);
        }
    }

    fn finish(self) -> FileDigest {
        FileDigest {
            sha256: hex::encode(self.hasher.finalize()),
            size: self.position,
        }
    }
}

/// Copies `image` into `target` at `offset`, skipping all-zero blocks.
fn copy_sparse(
    image: &Path,
    target: &File,
    offset: u64,
    target_path: &Path,
    hash: &mut OrderedHash,
) -> Result<()> {
    const BLOCK: usize = 1 << 16;
    let mut source = File::open(image).map_err(ImageError::read(image))?;
    let mut buf = vec![0u8; BLOCK];
    let mut position = offset;
    loop {
        let mut filled = 0;
        while filled < BLOCK {
            let n = source
                .read(&mut buf[filled..])
                .map_err(ImageError::read(image))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        let chunk = &buf[..filled];
        hash.bytes(chunk);
        if chunk.iter().any(|b| *b != 0) {
            target
                .write_all_at(chunk, position)
                .map_err(ImageError::write(target_path))?;
        }
        position += filled as u64;
        if filled < BLOCK {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes() -> Partitions {
        Partitions {
            esp_bytes: 16 << 20,
            rootfs_bytes: (48 << 20) + 1,
            data_bytes: 8 << 20,
        }
    }

    #[test]
    fn partitions_are_aligned_in_fixed_order() {
        let layout = DiskLayout::for_board("seed", &sizes());
        let names: Vec<_> = layout
            .partitions
            .iter()
            .map(|p| p.gpt.name.as_str())
            .collect();
        assert_eq!(
            names,
            [ESP_LABEL, ROOTFS_A_LABEL, ROOTFS_B_LABEL, DATA_LABEL]
        );
        for p in &layout.partitions {
            assert_eq!(p.offset % ALIGN, 0);
            assert_eq!(p.size % ALIGN, 0);
        }
        assert_eq!(layout.partition(ROOTFS_A_LABEL).unwrap().size, 49 << 20);
        let last = layout.partitions.last().unwrap();
        assert!(last.gpt.last_lba <= gpt::last_usable_lba(layout.total_bytes / SECTOR));
    }

    #[test]
    fn oversized_content_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let layout = DiskLayout::for_board("seed", &sizes());
        let big = dir.path().join("big");
        File::create(&big).unwrap().set_len(9 << 20).unwrap();
        let out = dir.path().join("disk.img");
        let err = assemble(&out, &layout, &[(DATA_LABEL, &big)]).err();
        assert!(
            matches!(err, Some(ImageError::PartitionTooSmall { ref partition, .. }) if partition == DATA_LABEL)
        );
        assert!(!out.exists());
    }

    #[test]
    fn content_lands_at_the_partition_offset() {
        let dir = tempfile::tempdir().unwrap();
        let layout = DiskLayout::for_board("seed", &sizes());
        let esp = dir.path().join("esp");
        let mut content = vec![0u8; 200_000];
        content[0] = 0xAB;
        content[150_000] = 0xCD;
        std::fs::write(&esp, &content).unwrap();
        let out = dir.path().join("disk.img");
        let digest = assemble(&out, &layout, &[(ESP_LABEL, &esp)]).unwrap();
        let disk = std::fs::read(&out).unwrap();
        assert_eq!(
            digest,
            crate::digest::file_digest(&out).unwrap(),
            "digest computed while writing"
        );
        assert_eq!(disk.len() as u64, layout.total_bytes);
        let off = layout.partition(ESP_LABEL).unwrap().offset as usize;
        assert_eq!(&disk[off..off + content.len()], &content[..]);
    }
}
