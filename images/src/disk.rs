//! The disk image: partition layout from the board, then the partition images copied in at
//! their offsets (sparsely: only the images' data extents are written, the rest of the file
//! is holes and reads back as zeros). The image is described by a [`DiskMap`].
//!
//! Layout (fixed order, GRUB's script relies on it): 1 `esp`, 2 `rootfs-a`, 3 `rootfs-b`,
//! 4 `data`; every partition starts on a 1 MiB boundary.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use testudo_plan::Partitions;

use sha2::{Digest, Sha256};

use crate::digest::FileDigest;
use crate::error::{ImageError, Result};
use crate::gpt::{self, GptPartition, Guid, SECTOR};

/// Partition alignment and size granularity.
pub const ALIGN: u64 = 1 << 20;
/// GPT name of the EFI system partition.
pub const ESP_LABEL: &str = testudo_plan::layout::partitions::ESP;
/// GPT name of rootfs slot A.
pub const ROOTFS_A_LABEL: &str = testudo_plan::layout::partitions::ROOTFS_A;
/// GPT name of rootfs slot B.
pub const ROOTFS_B_LABEL: &str = testudo_plan::layout::partitions::ROOTFS_B;
/// GPT name of the data partition.
pub const DATA_LABEL: &str = testudo_plan::layout::partitions::DATA;

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

/// One range of a disk image that holds data; everything outside the ranges reads as zeros.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MappedRange {
    /// What the range holds: `gpt-primary`, `gpt-backup`, or a partition name.
    pub name: String,
    /// Byte offset in the image.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the range's bytes.
    pub sha256: String,
}

/// A disk image described by its size and its data ranges, like a bmap file (bmaptool,
/// Yocto's wic): verifiable range by range without hashing gigabytes of zeros.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiskMap {
    /// Total image size in bytes.
    pub size: u64,
    /// Data ranges in offset order, non-overlapping.
    pub ranges: Vec<MappedRange>,
}

impl DiskMap {
    /// SHA-256 over the map's canonical text (one `offset size sha256 name` line per range
    /// after a `size` line): one hash that pins the whole image's content.
    pub fn digest(&self) -> FileDigest {
        let mut text = format!("testudo-disk-map-1 {}\n", self.size);
        for range in &self.ranges {
            text.push_str(&format!(
                "{} {} {} {}\n",
                range.offset, range.size, range.sha256, range.name
            ));
        }
        FileDigest {
            sha256: crate::digest::bytes_sha256(text.as_bytes()),
            size: self.size,
        }
    }

    /// Checks the image at `path` against the map: every range hashes as recorded and every
    /// byte outside the ranges is zero. Returns the first mismatch, `None` when it matches.
    pub fn check(&self, path: &Path) -> Result<Option<DiskMismatch>> {
        let file = File::open(path).map_err(ImageError::read(path))?;
        let len = file.metadata().map_err(ImageError::read(path))?.len();
        if len != self.size {
            return Ok(Some(DiskMismatch::Size {
                found: len,
                expected: self.size,
            }));
        }
        let mut position = 0;
        let mut buf = vec![0u8; 1 << 20];
        for range in &self.ranges {
            if !zeros_between(&file, position, range.offset, &mut buf, path)? {
                return Ok(Some(DiskMismatch::NonZeroBefore {
                    range: range.name.clone(),
                }));
            }
            let mut hasher = Sha256::new();
            let mut at = range.offset;
            while at < range.offset + range.size {
                let n = (range.offset + range.size - at).min(buf.len() as u64) as usize;
                file.read_exact_at(&mut buf[..n], at)
                    .map_err(ImageError::read(path))?;
                hasher.update(&buf[..n]);
                at += n as u64;
            }
            if hex::encode(hasher.finalize()) != range.sha256 {
                return Ok(Some(DiskMismatch::RangeDiffers {
                    range: range.name.clone(),
                }));
            }
            position = range.offset + range.size;
        }
        if !zeros_between(&file, position, self.size, &mut buf, path)? {
            return Ok(Some(DiskMismatch::NonZeroAfter));
        }
        Ok(None)
    }
}

/// Where an image differs from its disk map ([`DiskMap::check`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskMismatch {
    /// The image's size is not the map's.
    #[error("size {found}, map says {expected}")]
    Size {
        /// The image's size.
        found: u64,
        /// The map's.
        expected: u64,
    },
    /// A byte before a range (outside every range) is not zero.
    #[error("non-zero bytes before {range}")]
    NonZeroBefore {
        /// The range's name.
        range: String,
    },
    /// A range does not hash as recorded.
    #[error("range {range} differs")]
    RangeDiffers {
        /// The range's name.
        range: String,
    },
    /// A byte after the last range is not zero.
    #[error("non-zero bytes after the last range")]
    NonZeroAfter,
}

fn zeros_between(file: &File, from: u64, to: u64, buf: &mut [u8], path: &Path) -> Result<bool> {
    let mut at = from;
    while at < to {
        let n = (to - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)
            .map_err(ImageError::read(path))?;
        if buf[..n].iter().any(|b| *b != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

/// Writes the disk image `out`: the partition table, then each `(partition name, image,
/// image digest)`. Partitions without an image stay zero. Only data is written (the file is
/// sparse; holes in the partition images stay holes) and nothing is hashed but the GPT: the
/// returned map takes each partition's digest from the caller, who has it cached.
pub fn assemble(
    out: &Path,
    layout: &DiskLayout,
    contents: &[(&str, &Path, &FileDigest)],
) -> Result<DiskMap> {
    for (name, image, _) in contents {
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
    let mut ranges = vec![MappedRange {
        name: "gpt-primary".into(),
        offset: 0,
        size: table.head.len() as u64,
        sha256: crate::digest::bytes_sha256(&table.head),
    }];
    for part in &layout.partitions {
        if let Some((_, image, digest)) = contents.iter().find(|(name, ..)| *name == part.gpt.name)
        {
            copy_data(image, &file, part.offset, out)?;
            ranges.push(MappedRange {
                name: part.gpt.name.clone(),
                offset: part.offset,
                size: digest.size,
                sha256: digest.sha256.clone(),
            });
        }
    }
    ranges.push(MappedRange {
        name: "gpt-backup".into(),
        offset: table.tail_offset,
        size: table.tail.len() as u64,
        sha256: crate::digest::bytes_sha256(&table.tail),
    });
    Ok(DiskMap {
        size: layout.total_bytes,
        ranges,
    })
}

/// The data extents of `file` (`SEEK_DATA`/`SEEK_HOLE`): `(offset, length)` in order. A
/// file system without hole support reports the whole file as one extent.
fn data_extents(file: &File, path: &Path) -> Result<Vec<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let len = file.metadata().map_err(ImageError::read(path))?.len();
    let mut extents = Vec::new();
    let mut position: u64 = 0;
    while position < len {
        let offset = libc::off_t::try_from(position).unwrap_or(libc::off_t::MAX);
        // SAFETY: lseek on a file descriptor we own for the duration of the call; it only
        // moves the file offset (which nothing else here relies on: reads use pread).
        let data = unsafe { libc::lseek(file.as_raw_fd(), offset, libc::SEEK_DATA) };
        if data < 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return Err(ImageError::read(path)(err));
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(file.as_raw_fd(), data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(ImageError::read(path)(std::io::Error::last_os_error()));
        }
        let (data, hole) = (data as u64, (hole as u64).min(len));
        if hole <= data {
            break;
        }
        extents.push((data, hole - data));
        position = hole;
    }
    Ok(extents)
}

/// Copies the data extents of `image` into `target` at `offset`.
fn copy_data(image: &Path, target: &File, offset: u64, target_path: &Path) -> Result<()> {
    let source = File::open(image).map_err(ImageError::read(image))?;
    let mut buf = vec![0u8; 1 << 20];
    for (start, length) in data_extents(&source, image)? {
        let mut at = start;
        while at < start + length {
            let n = (start + length - at).min(buf.len() as u64) as usize;
            source
                .read_exact_at(&mut buf[..n], at)
                .map_err(ImageError::read(image))?;
            target
                .write_all_at(&buf[..n], offset + at)
                .map_err(ImageError::write(target_path))?;
            at += n as u64;
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
        let digest = crate::digest::file_digest(&big).unwrap();
        let err = assemble(&out, &layout, &[(DATA_LABEL, &big, &digest)]).err();
        assert!(
            matches!(err, Some(ImageError::PartitionTooSmall { ref partition, .. }) if partition == DATA_LABEL)
        );
        assert!(!out.exists());
    }

    #[test]
    fn content_lands_at_the_partition_offset_and_the_map_checks() {
        let dir = tempfile::tempdir().unwrap();
        let layout = DiskLayout::for_board("seed", &sizes());
        let esp = dir.path().join("esp");
        // A sparse image: data at 0 and at 4 MiB, a hole between.
        let mut content = vec![0u8; 200_000];
        content[0] = 0xAB;
        content[150_000] = 0xCD;
        {
            let file = File::create(&esp).unwrap();
            file.write_all_at(&content, 0).unwrap();
            file.write_all_at(b"tail", 4 << 20).unwrap();
        }
        let esp_digest = crate::digest::file_digest(&esp).unwrap();
        let out = dir.path().join("disk.img");
        let map = assemble(&out, &layout, &[(ESP_LABEL, &esp, &esp_digest)]).unwrap();
        let disk = std::fs::read(&out).unwrap();
        assert_eq!(disk.len() as u64, layout.total_bytes);
        let off = layout.partition(ESP_LABEL).unwrap().offset as usize;
        assert_eq!(&disk[off..off + content.len()], &content[..]);
        assert_eq!(&disk[off + (4 << 20)..off + (4 << 20) + 4], b"tail");
        assert_eq!(map.check(&out).unwrap(), None);
        let names: Vec<_> = map.ranges.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["gpt-primary", ESP_LABEL, "gpt-backup"]);
        // Only data was written: the image is mostly holes.
        use std::os::unix::fs::MetadataExt;
        let allocated = std::fs::metadata(&out).unwrap().blocks() * 512;
        assert!(allocated < 8 << 20, "{allocated} bytes allocated");
        // A flipped byte inside a range, or outside all of them, is caught.
        let file = OpenOptions::new().write(true).open(&out).unwrap();
        file.write_all_at(&[1], (off + 10) as u64).unwrap();
        assert!(map.check(&out).unwrap().is_some());
        file.write_all_at(&[0], (off + 10) as u64).unwrap();
        assert_eq!(map.check(&out).unwrap(), None);
        file.write_all_at(&[1], layout.total_bytes - (1 << 20) - 4096)
            .unwrap();
        assert!(map.check(&out).unwrap().is_some());
    }
}
