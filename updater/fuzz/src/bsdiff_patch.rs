//! The delta installer's patch reader ([`testudo_updater::patch`]): a hostile bsdiff 4 patch
//! is applied to a fixed old file. It must end in a result or an error, never a panic, and
//! never hand over more bytes than its header announced.

use testudo_updater::patch::{self, ApplyError, PatchBlocks, PatchHeader, HEADER_LEN};

/// Most output one case may produce before it is stopped (a bzip2 bomb costs time, not
/// correctness).
const OUTPUT_LIMIT: u64 = 4 << 20;

/// The old file every case patches: the bytes the corpus patches were made against.
pub fn old_file() -> Vec<u8> {
    (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

pub fn fuzz(data: &[u8]) {
    let Some(header_bytes) = data.get(..HEADER_LEN as usize) else {
        return;
    };
    let mut header_array = [0u8; HEADER_LEN as usize];
    header_array.copy_from_slice(header_bytes);
    let Ok(header) = PatchHeader::parse(&header_array, data.len() as u64) else {
        return;
    };
    let [control, diff, extra] = header.blocks(data.len() as u64);
    let slice = |(start, len): (u64, u64)| &data[start as usize..(start + len) as usize];
    let blocks = PatchBlocks {
        control: slice(control),
        diff: slice(diff),
        extra: slice(extra),
    };
    let old = old_file();
    let mut emitted = 0u64;
    let result = patch::apply(&header, blocks, old.as_slice(), |piece| {
        emitted += piece.len() as u64;
        assert!(
            emitted <= header.new_size,
            "more bytes than the header announced"
        );
        if emitted > OUTPUT_LIMIT {
            return Err(());
        }
        Ok(())
    });
    if let Ok(size) = result {
        assert_eq!(size, header.new_size);
        assert_eq!(emitted, header.new_size);
    } else if let Err(ApplyError::Emit(())) = result {
        assert!(emitted > OUTPUT_LIMIT);
    }
}
