//! A GUID partition table, written directly: protective MBR, primary header and entries,
//! backup entries and header; and read back to find a partition by name. GUIDs are derived
//! from a seed (the system's `compatible` string) and the partition name, so the table is the
//! same on every build.

use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{ImageError, Result};

/// Bytes per logical sector.
pub const SECTOR: u64 = 512;
/// Number of partition entries in the table (the usual 128).
const ENTRY_COUNT: u64 = 128;
/// Size of one partition entry.
const ENTRY_SIZE: u64 = 128;
/// Sectors taken by the entry array.
const ENTRY_SECTORS: u64 = ENTRY_COUNT * ENTRY_SIZE / SECTOR;

/// Partition type: EFI system partition.
pub const TYPE_ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// Partition type: Linux root (x86-64), per the Discoverable Partitions Specification.
pub const TYPE_ROOT_X86_64: &str = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
/// Partition type: Linux filesystem data.
pub const TYPE_LINUX_DATA: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// A 16-byte GUID, held in its canonical (big-endian text order) form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid([u8; 16]);

impl Guid {
    /// Parses `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX`.
    pub fn parse(text: &str) -> Option<Guid> {
        let hex_digits: String = text.chars().filter(|c| *c != '-').collect();
        let bytes = hex::decode(hex_digits).ok()?;
        let array: [u8; 16] = bytes.try_into().ok()?;
        Some(Guid(array))
    }

    /// A name-based GUID: SHA-256 of `seed` and `name`, marked as an RFC 9562 version 8
    /// (custom) UUID.
    pub fn derived(seed: &str, name: &str) -> Guid {
        let digest = Sha256::digest(format!("testudo-gpt\0{seed}\0{name}").as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x80;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Guid(bytes)
    }

    /// The on-disk (mixed-endian) encoding.
    pub fn to_disk_bytes(self) -> [u8; 16] {
        let b = self.0;
        [
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ]
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = hex::encode_upper(self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

/// One partition of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    /// GPT partition name (`PARTLABEL`), at most 36 UTF-16 units.
    pub name: String,
    /// Partition type GUID.
    pub type_guid: Guid,
    /// Unique partition GUID.
    pub unique_guid: Guid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
}

/// The areas of a disk that hold the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptBytes {
    /// Protective MBR, primary header and entries: written at offset 0.
    pub head: Vec<u8>,
    /// Backup entries and header: written at `tail_offset`.
    pub tail: Vec<u8>,
    /// Byte offset of `tail`.
    pub tail_offset: u64,
}

/// First sector a partition may use.
pub fn first_usable_lba() -> u64 {
    2 + ENTRY_SECTORS
}

/// Last sector a partition may use on a disk of `total_sectors`.
pub fn last_usable_lba(total_sectors: u64) -> u64 {
    total_sectors - 2 - ENTRY_SECTORS
}

/// Serialises the table for a disk of `total_sectors` sectors.
pub fn write_table(disk_guid: Guid, partitions: &[GptPartition], total_sectors: u64) -> GptBytes {
    let mut entries = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
    for (i, part) in partitions.iter().enumerate().take(ENTRY_COUNT as usize) {
        let e = &mut entries[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&part.type_guid.to_disk_bytes());
        e[16..32].copy_from_slice(&part.unique_guid.to_disk_bytes());
        e[32..40].copy_from_slice(&part.first_lba.to_le_bytes());
        e[40..48].copy_from_slice(&part.last_lba.to_le_bytes());
        for (j, unit) in part.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
        }
    }
    let entries_crc = crc32fast::hash(&entries);
    let last_lba = total_sectors - 1;
    let header = |current: u64, backup: u64, entries_lba: u64| {
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&current.to_le_bytes());
        h[32..40].copy_from_slice(&backup.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable_lba().to_le_bytes());
        h[48..56].copy_from_slice(&last_usable_lba(total_sectors).to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid.to_disk_bytes());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRY_COUNT as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[0..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };

    let mut mbr = vec![0u8; SECTOR as usize];
    let pmbr_size = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
    let record = &mut mbr[446..462];
    record[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    record[4] = 0xEE;
    record[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    record[8..12].copy_from_slice(&1u32.to_le_bytes());
    record[12..16].copy_from_slice(&pmbr_size.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;

    let mut head = mbr;
    head.extend(header(1, last_lba, 2));
    head.extend(&entries);
    let backup_entries_lba = last_lba - ENTRY_SECTORS;
    let mut tail = entries;
    tail.extend(header(last_lba, 1, backup_entries_lba));
    GptBytes {
        head,
        tail,
        tail_offset: backup_entries_lba * SECTOR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_text_round_trip_and_disk_encoding() {
        let g = Guid::parse(TYPE_ESP).unwrap();
        assert_eq!(g.to_string(), TYPE_ESP);
        assert_eq!(&g.to_disk_bytes()[..4], &[0x28, 0x73, 0x2A, 0xC1]);
    }

    #[test]
    fn derived_guids_are_stable_distinct_and_version_8() {
        let a = Guid::derived("seed", "rootfs-a");
        assert_eq!(a, Guid::derived("seed", "rootfs-a"));
        assert_ne!(a, Guid::derived("seed", "rootfs-b"));
        assert_ne!(a, Guid::derived("other", "rootfs-a"));
        assert_eq!(a.to_string().as_bytes()[14], b'8');
    }

    #[test]
    fn headers_carry_valid_crcs_and_point_at_each_other() {
        let total = 2048 * 10;
        let parts = [GptPartition {
            name: "esp".into(),
            type_guid: Guid::parse(TYPE_ESP).unwrap(),
            unique_guid: Guid::derived("s", "esp"),
            first_lba: 2048,
            last_lba: 4095,
        }];
        let bytes = write_table(Guid::derived("s", "disk"), &parts, total);
        let primary = &bytes.head[512..1024];
        assert_eq!(&primary[0..8], b"EFI PART");
        let mut zeroed = primary[..92].to_vec();
        zeroed[16..20].fill(0);
        assert_eq!(crc32fast::hash(&zeroed).to_le_bytes(), primary[16..20]);
        assert_eq!(
            u64::from_le_bytes(primary[32..40].try_into().unwrap()),
            total - 1
        );
        let backup = &bytes.tail[bytes.tail.len() - 512..];
        assert_eq!(
            u64::from_le_bytes(backup[24..32].try_into().unwrap()),
            total - 1
        );
        assert_eq!(bytes.tail_offset + bytes.tail.len() as u64, total * SECTOR);
        assert_eq!(&bytes.head[510..512], &[0x55, 0xAA]);
        let name: Vec<u8> = "esp".encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(&bytes.head[1024 + 56..1024 + 62], &name[..]);
    }
}

/// The byte offset of the partition named `label` in the GPT of the disk image `disk` (read
/// back, as a VM scenario edits a built image).
pub fn partition_offset(disk: &Path, label: &str) -> Result<u64> {
    let bad = |detail: String| ImageError::GptPartition {
        disk: disk.to_path_buf(),
        label: label.to_owned(),
        detail,
    };
    let file = std::fs::File::open(disk).map_err(ImageError::read(disk))?;
    let mut header = [0u8; 92];
    file.read_exact_at(&mut header, 512)
        .map_err(ImageError::read(disk))?;
    if &header[..8] != b"EFI PART" {
        return Err(bad("no GPT header".to_owned()));
    }
    let le64 = |b: &[u8]| {
        b.iter()
            .rev()
            .fold(0u64, |acc, byte| acc << 8 | u64::from(*byte))
    };
    let entries_lba = le64(&header[72..80]);
    let count = le64(&header[80..84]).min(256);
    let entry_size = le64(&header[84..88]);
    if !(128..=4096).contains(&entry_size) {
        return Err(bad(format!("entry size {entry_size}")));
    }
    let mut entry = vec![0u8; entry_size as usize];
    for index in 0..count {
        file.read_exact_at(&mut entry, entries_lba * 512 + index * entry_size)
            .map_err(ImageError::read(disk))?;
        let name: Vec<u16> = entry[56..128]
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .take_while(|unit| *unit != 0)
            .collect();
        if String::from_utf16_lossy(&name) == label {
            return Ok(le64(&entry[32..40]) * 512);
        }
    }
    Err(bad("no partition of that name".to_owned()))
}

#[cfg(test)]
mod read_tests {
    use super::*;

    #[test]
    fn partitions_are_found_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.img");
        let total = 8192;
        let part = |name: &str, first_lba: u64| GptPartition {
            name: name.to_owned(),
            type_guid: Guid::derived("t", "type"),
            unique_guid: Guid::derived("t", name),
            first_lba,
            last_lba: first_lba + 1023,
        };
        let parts = [part("esp", 2048), part("rootfs-b", 4096)];
        let table = write_table(Guid::derived("t", "disk"), &parts, total);
        let mut bytes = vec![0u8; total as usize * 512];
        bytes[..table.head.len()].copy_from_slice(&table.head);
        let tail = table.tail_offset as usize;
        bytes[tail..tail + table.tail.len()].copy_from_slice(&table.tail);
        std::fs::write(&disk, bytes).unwrap();
        assert_eq!(partition_offset(&disk, "rootfs-b").unwrap(), 4096 * 512);
        assert_eq!(partition_offset(&disk, "esp").unwrap(), 2048 * 512);
        assert!(partition_offset(&disk, "data").is_err());
        std::fs::write(&disk, vec![0u8; 4096]).unwrap();
        assert!(partition_offset(&disk, "esp").is_err());
    }
}
