//! dm-verity hash trees as RAUC bundles carry them: sha256, 4096-byte data and hash blocks,
//! hash format version 1 (`sha256(salt || block)`), 32-byte salt, no superblock, levels
//! stored top level first (as `veritysetup format --no-superblock` lays them out).
//!
//! [`compute`] builds the tree for a payload; [`PayloadVerifier`] checks a payload block by
//! block against a tree read lazily from disk, holding one hash block per level, so memory
//! stays bounded (a few KiB) whatever the payload size.

use std::io::Read;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

/// Data and hash block size.
pub const BLOCK_SIZE: usize = 4096;
const HASHES_PER_BLOCK: u64 = (BLOCK_SIZE / 32) as u64;

/// Geometry of the tree for `data_blocks` data blocks: blocks per level, level 0 first.
pub fn level_blocks(data_blocks: u64) -> Vec<u64> {
    let mut levels = Vec::new();
    // As cryptsetup: one more level while the previous one does not fit in one hash block.
    let mut count = data_blocks;
    loop {
        if levels.is_empty() && count <= 1 {
            // A single data block has no tree (RAUC refuses such payloads).
            return levels;
        }
        count = count.div_ceil(HASHES_PER_BLOCK);
        levels.push(count);
        if count <= 1 {
            return levels;
        }
    }
}

/// Size in bytes of the hash tree for a payload of `data_size` bytes.
pub fn tree_size(data_size: u64) -> u64 {
    level_blocks(data_size / BLOCK_SIZE as u64)
        .iter()
        .sum::<u64>()
        * BLOCK_SIZE as u64
}

/// Byte offset in the tree of the first block of each level (level 0 first).
fn level_offsets(levels: &[u64]) -> Vec<u64> {
    let mut offsets = vec![0u64; levels.len()];
    let mut position = 0u64;
    for level in (0..levels.len()).rev() {
        offsets[level] = position;
        position += levels[level] * BLOCK_SIZE as u64;
    }
    offsets
}

/// `sha256(salt || block)`.
pub fn hash_block(salt: &[u8; 32], block: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(block);
    hasher.finalize().into()
}

/// A computed tree: its bytes (to append after the payload) and the root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashTree {
    /// The tree, top level first, `tree_size` bytes.
    pub bytes: Vec<u8>,
    /// sha256(salt || top-level block).
    pub root_hash: [u8; 32],
}

/// Computes the tree over `data` (length a multiple of 4096, at least two blocks).
/// Memory: the tree itself (0.8% of the payload), built on the bundle-creating host.
pub fn compute(mut data: impl Read, data_size: u64, salt: &[u8; 32]) -> std::io::Result<HashTree> {
    if !data_size.is_multiple_of(BLOCK_SIZE as u64) || data_size < 2 * BLOCK_SIZE as u64 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "verity payload must be a multiple of 4096 bytes and more than one block",
        ));
    }
    let data_blocks = data_size / BLOCK_SIZE as u64;
    let levels = level_blocks(data_blocks);
    let mut current: Vec<u8> = Vec::with_capacity(padded_len(data_blocks));
    let mut buf = vec![0u8; 256 * BLOCK_SIZE];
    let mut remaining = data_size;
    while remaining > 0 {
        let chunk = buf.len().min(remaining as usize);
        data.read_exact(&mut buf[..chunk])?;
        for block in buf[..chunk].chunks(BLOCK_SIZE) {
            current.extend_from_slice(&hash_block(salt, block));
        }
        remaining -= chunk as u64;
    }
    let mut stored: Vec<Vec<u8>> = Vec::with_capacity(levels.len());
    for _ in &levels {
        current.resize(current.len().div_ceil(BLOCK_SIZE) * BLOCK_SIZE, 0);
        let mut next = Vec::with_capacity(padded_len((current.len() / BLOCK_SIZE) as u64));
        for block in current.chunks(BLOCK_SIZE) {
            next.extend_from_slice(&hash_block(salt, block));
        }
        stored.push(std::mem::replace(&mut current, next));
    }
    // After the top level, `current` holds exactly the root hash.
    let mut root_hash = [0u8; 32];
    root_hash.copy_from_slice(&current[..32]);
    let mut bytes = Vec::new();
    for level in stored.iter().rev() {
        bytes.extend_from_slice(level);
    }
    Ok(HashTree { bytes, root_hash })
}

/// The root hash of a tree computed as the data streams past, holding one hash block per
/// level (a few KiB whatever the data size): what the installer of a delta update compares
/// with the signed manifest while it writes the slot. Same tree as [`compute`].
#[derive(Debug, Clone)]
pub struct RootHasher {
    salt: [u8; 32],
    /// The data block being filled.
    partial: Vec<u8>,
    /// Per level: hashes not yet filling a block, and blocks of the level completed so far.
    levels: Vec<(Vec<u8>, u64)>,
    data_blocks: u64,
}

impl RootHasher {
    /// A hasher with `salt`.
    pub fn new(salt: [u8; 32]) -> Self {
        RootHasher {
            salt,
            partial: Vec::with_capacity(BLOCK_SIZE),
            levels: Vec::new(),
            data_blocks: 0,
        }
    }

    /// Feeds the next bytes of the data.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.partial.is_empty() && bytes.len() >= BLOCK_SIZE {
                let (block, rest) = bytes.split_at(BLOCK_SIZE);
                self.data_block(block);
                bytes = rest;
                continue;
            }
            let take = (BLOCK_SIZE - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() == BLOCK_SIZE {
                let block = std::mem::take(&mut self.partial);
                self.data_block(&block);
                self.partial = block;
                self.partial.clear();
            }
        }
    }

    fn data_block(&mut self, block: &[u8]) {
        self.data_blocks += 1;
        let hash = hash_block(&self.salt, block);
        self.push(0, &hash);
    }

    /// Adds `hash` to `level`, hashing the level's block into the next level when it fills.
    fn push(&mut self, level: usize, hash: &[u8; 32]) {
        if self.levels.len() == level {
            self.levels.push((Vec::with_capacity(BLOCK_SIZE), 0));
        }
        self.levels[level].0.extend_from_slice(hash);
        if self.levels[level].0.len() == BLOCK_SIZE {
            self.flush(level);
        }
    }

    /// Hashes `level`'s (zero-padded) block into the next level.
    fn flush(&mut self, level: usize) {
        let (pending, blocks) = &mut self.levels[level];
        pending.resize(BLOCK_SIZE, 0);
        let hash = hash_block(&self.salt, pending);
        pending.clear();
        *blocks += 1;
        self.push(level + 1, &hash);
    }

    /// The root hash, or `None` when the data was not a multiple of 4096 bytes of at least
    /// two blocks (no tree exists for it).
    pub fn finish(mut self) -> Option<[u8; 32]> {
        if !self.partial.is_empty() || self.data_blocks < 2 {
            return None;
        }
        let mut level = 0;
        loop {
            if !self.levels[level].0.is_empty() {
                self.flush(level);
            }
            if self.levels[level].1 == 1 {
                // The top level: its one block's hash is all the next level holds.
                let mut root = [0u8; 32];
                root.copy_from_slice(&self.levels[level + 1].0[..32]);
                return Some(root);
            }
            level += 1;
        }
    }
}

fn padded_len(entries: u64) -> usize {
    (entries as usize * 32).div_ceil(BLOCK_SIZE) * BLOCK_SIZE
}

/// Why a payload did not verify.
#[derive(Debug)]
pub enum Mismatch {
    /// A data block's hash differs from its entry in level 0.
    DataBlock(u64),
    /// A hash block differs from its parent entry (or the root hash for the top level).
    HashBlock {
        /// Level (0 = hashes of data blocks).
        level: usize,
        /// Block index within the level.
        index: u64,
    },
    /// The payload (data or tree) could not be read.
    Read(std::io::Error),
    /// The tree size in the manifest does not match the payload size.
    Geometry,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::DataBlock(index) => {
                write!(f, "data block {index} does not match the hash tree")
            }
            Mismatch::HashBlock { level, index } => {
                write!(f, "hash tree block {index} of level {level} does not match")
            }
            Mismatch::Read(_) => write!(f, "reading the payload"),
            Mismatch::Geometry => write!(f, "hash tree size does not fit the payload size"),
        }
    }
}

/// Checks data blocks, in any order, against a tree stored in `file` at `tree_offset`.
#[derive(Debug)]
pub struct PayloadVerifier<'f> {
    file: &'f std::fs::File,
    tree_offset: u64,
    salt: [u8; 32],
    root_hash: [u8; 32],
    offsets: Vec<u64>,
    levels: Vec<u64>,
    data_blocks: u64,
    /// Per level: the verified hash block currently held, and its index.
    cache: Vec<Option<(u64, Box<[u8; BLOCK_SIZE]>)>>,
}

impl<'f> PayloadVerifier<'f> {
    /// A verifier for `data_size` payload bytes whose tree of `tree_size` bytes is at
    /// `tree_offset` in `file`.
    pub fn new(
        file: &'f std::fs::File,
        data_size: u64,
        tree_offset: u64,
        tree_size_in_manifest: u64,
        salt: [u8; 32],
        root_hash: [u8; 32],
    ) -> Result<Self, Mismatch> {
        if !data_size.is_multiple_of(BLOCK_SIZE as u64) || data_size < 2 * BLOCK_SIZE as u64 {
            return Err(Mismatch::Geometry);
        }
        let data_blocks = data_size / BLOCK_SIZE as u64;
        let levels = level_blocks(data_blocks);
        if levels.iter().sum::<u64>() * BLOCK_SIZE as u64 != tree_size_in_manifest {
            return Err(Mismatch::Geometry);
        }
        Ok(PayloadVerifier {
            file,
            tree_offset,
            salt,
            root_hash,
            offsets: level_offsets(&levels),
            cache: vec![None; levels.len()],
            levels,
            data_blocks,
        })
    }

    /// Number of data blocks.
    pub fn data_blocks(&self) -> u64 {
        self.data_blocks
    }

    /// The verified hash expected for entry `entry` of `level` (entry = block index of the
    /// level below, or the data block index for level 0).
    fn expected(&mut self, level: usize, entry: u64) -> Result<[u8; 32], Mismatch> {
        let block_index = entry / HASHES_PER_BLOCK;
        let held = matches!(&self.cache[level], Some((index, _)) if *index == block_index);
        if !held {
            if block_index >= self.levels[level] {
                return Err(Mismatch::Geometry);
            }
            let mut block = Box::new([0u8; BLOCK_SIZE]);
            let offset = self.tree_offset + self.offsets[level] + block_index * BLOCK_SIZE as u64;
            self.file
                .read_exact_at(&mut block[..], offset)
                .map_err(Mismatch::Read)?;
            let actual = hash_block(&self.salt, &block[..]);
            let expected = if level + 1 == self.levels.len() {
                self.root_hash
            } else {
                self.expected(level + 1, block_index)?
            };
            if actual != expected {
                return Err(Mismatch::HashBlock {
                    level,
                    index: block_index,
                });
            }
            self.cache[level] = Some((block_index, block));
        }
        let start = (entry % HASHES_PER_BLOCK) as usize * 32;
        let mut out = [0u8; 32];
        if let Some((_, block)) = &self.cache[level] {
            out.copy_from_slice(&block[start..start + 32]);
        }
        Ok(out)
    }

    /// Checks data block `index`.
    pub fn verify_block(&mut self, index: u64, block: &[u8]) -> Result<(), Mismatch> {
        if index >= self.data_blocks || block.len() != BLOCK_SIZE {
            return Err(Mismatch::Geometry);
        }
        let expected = self.expected(0, index)?;
        if hash_block(&self.salt, block) != expected {
            return Err(Mismatch::DataBlock(index));
        }
        Ok(())
    }

    /// Reads and checks every data block from the start of `file`, in order. Blocks are read
    /// and hashed on up to 4 threads (4 MiB batches, each thread reading its own part: the
    /// copy out of the page cache costs about as much as the hashing); memory stays bounded
    /// by the batch.
    pub fn verify_all(&mut self) -> Result<(), Mismatch> {
        self.verify_all_observed(&mut |_| {})
    }

    /// [`Self::verify_all`], showing `observe` every data byte once, in order, as it is read
    /// (before it is checked): a caller's own checksum of the file costs no second read.
    pub fn verify_all_observed(&mut self, observe: &mut dyn FnMut(&[u8])) -> Result<(), Mismatch> {
        const BATCH_BLOCKS: usize = 1024;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        let mut buf = vec![0u8; BATCH_BLOCKS * BLOCK_SIZE];
        let mut hashes = vec![[0u8; 32]; BATCH_BLOCKS];
        let mut index = 0u64;
        let file = self.file;
        while index < self.data_blocks {
            let blocks = (self.data_blocks - index).min(BATCH_BLOCKS as u64) as usize;
            let bytes = &mut buf[..blocks * BLOCK_SIZE];
            let salt = self.salt;
            let per_thread = blocks.div_ceil(threads);
            let batch_offset = index * BLOCK_SIZE as u64;
            std::thread::scope(|scope| {
                let parts: Vec<_> = bytes
                    .chunks_mut(per_thread * BLOCK_SIZE)
                    .zip(hashes[..blocks].chunks_mut(per_thread))
                    .enumerate()
                    .map(|(part, (data, out))| {
                        let offset = batch_offset + (part * per_thread * BLOCK_SIZE) as u64;
                        scope.spawn(move || -> std::io::Result<()> {
                            file.read_exact_at(data, offset)?;
                            for (block, hash) in data.chunks(BLOCK_SIZE).zip(out.iter_mut()) {
                                *hash = hash_block(&salt, block);
                            }
                            Ok(())
                        })
                    })
                    .collect();
                parts.into_iter().try_for_each(|part| match part.join() {
                    Ok(read) => read.map_err(Mismatch::Read),
                    Err(panic) => std::panic::resume_unwind(panic),
                })
            })?;
            observe(bytes);
            for hash in &hashes[..blocks] {
                if *hash != self.expected(0, index)? {
                    return Err(Mismatch::DataBlock(index));
                }
                index += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_cryptsetup() {
        assert_eq!(level_blocks(2), vec![1]);
        assert_eq!(level_blocks(128), vec![1]);
        assert_eq!(level_blocks(129), vec![2, 1]);
        assert_eq!(level_blocks(65536), vec![512, 4, 1]);
        assert_eq!(tree_size(25 * 4096), 4096);
    }

    #[test]
    fn streaming_root_equals_the_computed_tree_root_for_every_geometry() {
        let salt = [9u8; 32];
        // One level, two levels (partial and full top blocks), three levels.
        for blocks in [2usize, 3, 128, 129, 256, 257, 128 * 128, 128 * 128 + 1] {
            let data: Vec<u8> = (0..blocks * BLOCK_SIZE)
                .map(|i| (i * 31 % 253) as u8)
                .collect();
            let tree = compute(&data[..], data.len() as u64, &salt).unwrap();
            let mut hasher = RootHasher::new(salt);
            // Uneven pieces, so block boundaries fall inside them.
            for piece in data.chunks(1000 + blocks % 7) {
                hasher.update(piece);
            }
            assert_eq!(hasher.finish(), Some(tree.root_hash), "{blocks} blocks");
        }
        let mut short = RootHasher::new(salt);
        short.update(&[0u8; BLOCK_SIZE + 1]);
        assert_eq!(short.finish(), None, "not a multiple of the block size");
    }

    #[test]
    fn detects_a_flipped_bit_anywhere() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..200 * BLOCK_SIZE).map(|i| (i * 7 % 251) as u8).collect();
        let salt = [3u8; 32];
        let tree = compute(&data[..], data.len() as u64, &salt).unwrap();
        let path = dir.path().join("p");
        let mut whole = data.clone();
        whole.extend_from_slice(&tree.bytes);
        std::fs::write(&path, &whole).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let size = data.len() as u64;
        let tree_len = tree.bytes.len() as u64;
        PayloadVerifier::new(&file, size, size, tree_len, salt, tree.root_hash)
            .unwrap()
            .verify_all()
            .unwrap();
        for flip in [
            0usize,
            150 * BLOCK_SIZE + 5,
            data.len() + 10,
            whole.len() - 1,
        ] {
            let mut bad = whole.clone();
            bad[flip] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            let result = PayloadVerifier::new(&file, size, size, tree_len, salt, tree.root_hash)
                .unwrap()
                .verify_all();
            assert!(result.is_err(), "flip at {flip} undetected");
        }
    }
}
