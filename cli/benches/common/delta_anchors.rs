//! What other tools would download (or ship) to turn one rootfs image into another: the
//! anchors of the delta update benchmark, each computed on the same two images.
//!
//! - RAUC's block hash index, as a streaming `rauc` installs with `adaptive=block-hash-index`
//!   (rauc `src/update_handler.c`, `copy_block_hash_index_image_to_dev`): for each 4 KiB block
//!   of the new image it takes the zero block, or a block with the same sha256 in the target
//!   slot (what this install already wrote, then what the slot held before), or in the active
//!   slot; only the rest is read from the bundle. Modelled: the active slot holds the old
//!   image, the target slot nothing reusable.
//! - casync: chunk stores of both images (`casync make`, its defaults), the new chunks plus
//!   the new index.
//! - `zstd --patch-from` and Debian's `bsdiff`: a patch file.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};

/// RAUC's block size.
pub const BLOCK: u64 = 4096;
/// sha256 of a zero 4 KiB block (rauc's `R_HASH_INDEX_ZERO_CHUNK`).
const ZERO_BLOCK_SHA256: &str = "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7";

/// Runs `program args`, which must succeed; its stdout.
fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed for an anchor: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The size of `path` in bytes.
pub fn size(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// RAUC's block hash index of `image`: one sha256 per 4 KiB block, in order.
pub fn block_hashes(image: &Path, work: &Path) -> Vec<[u8; 32]> {
    let index = work.join(format!(
        "{}.block-hash-index",
        image.file_name().unwrap().to_string_lossy()
    ));
    testudo_updater::bundle::write_block_hash_index(image, &index).unwrap();
    let bytes = std::fs::read(&index).unwrap();
    bytes
        .chunks_exact(32)
        .map(|hash| hash.try_into().unwrap())
        .collect()
}

/// What a streaming `rauc` reads from the bundle to install `new` over a device running `old`.
#[derive(Debug, Clone)]
pub struct BlockIndexDownload {
    /// Blocks in the new image.
    pub blocks: u64,
    /// Indexes (into `new`) of the blocks read from the bundle.
    pub fetched: Vec<u64>,
    /// Bytes of the new image's index.
    pub index_bytes: u64,
}

impl BlockIndexDownload {
    /// Fetched blocks at 4 KiB each, plus the index: the anchor's download.
    pub fn download(&self) -> u64 {
        self.fetched.len() as u64 * BLOCK + self.index_bytes
    }
}

/// Which blocks of `new` (block hashes) a streaming `rauc` fetches when the active slot holds
/// `old`: not the zero block, not in the active slot, not already written by this install.
pub fn block_index_download(old: &[[u8; 32]], new: &[[u8; 32]]) -> BlockIndexDownload {
    let zero: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&ZERO_BLOCK_SHA256[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let active: HashSet<&[u8; 32]> = old.iter().collect();
    let mut written: HashSet<&[u8; 32]> = HashSet::new();
    let mut fetched = Vec::new();
    for (index, hash) in new.iter().enumerate() {
        let local = hash[..] == zero[..] || active.contains(hash) || written.contains(hash);
        if !local {
            fetched.push(index as u64);
        }
        written.insert(hash);
    }
    BlockIndexDownload {
        blocks: new.len() as u64,
        fetched,
        index_bytes: new.len() as u64 * 32,
    }
}

/// How a bundle's payload squashfs compresses its data blocks.
#[derive(Debug, Clone, Copy)]
pub struct SquashfsCompression {
    /// Data block size in bytes.
    pub block: u64,
    /// `gzip` or `zstd`.
    pub compressor: &'static str,
    /// Its level.
    pub level: u32,
}

/// The squashfs compression of the bundle at `bundle`. Its payload starts with the squashfs
/// superblock (block size at byte 12, compressor id at 20, flags at 24); the compressor's
/// options follow it as one uncompressed metadata block (gzip and zstd: the level first).
pub fn bundle_squashfs_compression(bundle: &Path) -> SquashfsCompression {
    const COMPRESSOR_OPTIONS: u16 = 0x0400;
    let mut head = [0u8; 102];
    std::io::Read::read_exact(&mut std::fs::File::open(bundle).unwrap(), &mut head).unwrap();
    let u16_at = |at: usize| u16::from_le_bytes(head[at..at + 2].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(head[at..at + 4].try_into().unwrap());
    assert_eq!(
        &head[..4],
        b"hsqs",
        "{} is no squashfs bundle",
        bundle.display()
    );
    // mksquashfs's default levels when no options are stored.
    let (compressor, default_level) = match u16_at(20) {
        1 => ("gzip", 9),
        6 => ("zstd", 15),
        other => panic!("{}: squashfs compressor {other}", bundle.display()),
    };
    let level = if u16_at(24) & COMPRESSOR_OPTIONS != 0 {
        u32_at(98)
    } else {
        default_level
    };
    SquashfsCompression {
        block: u64::from(u32_at(12)),
        compressor,
        level,
    }
}

/// About how many bytes `data` takes as one compressed squashfs data block: `data` alone
/// through the compressor's command at the same level (gzip: its deflate stream with zlib's
/// 6 bytes of framing instead of gzip's 18; zstd: one frame, no checksum), or the block stored
/// as it is when that is not smaller (as mksquashfs does).
pub fn compressed_block(data: &[u8], compression: &SquashfsCompression) -> u64 {
    let level = format!("-{}", compression.level);
    let stream_size = format!("--stream-size={}", data.len());
    let (args, framing): (Vec<&str>, u64) = match compression.compressor {
        "gzip" => (vec![&level, "-n", "-c"], 12),
        _ => (vec![&level, "-q", "-c", "--no-check", &stream_size], 0),
    };
    let mut child = Command::new(compression.compressor)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} is needed for an anchor: {e}", compression.compressor));
    let mut stdin = child.stdin.take().unwrap();
    let owned = data.to_vec();
    let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &owned));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success(), "{} failed", compression.compressor);
    (out.stdout.len() as u64 - framing).min(data.len() as u64)
}

/// The same fetch read through the compressed bundle: every squashfs data block of the image
/// file holding a fetched 4 KiB block is downloaded whole, compressed as the bundle's payload
/// compresses it; plus the index.
pub fn through_compressed_bundle(
    new_image: &Path,
    fetch: &BlockIndexDownload,
    compression: &SquashfsCompression,
) -> u64 {
    let image = std::fs::read(new_image).unwrap();
    let mut blocks: Vec<u64> = fetch
        .fetched
        .iter()
        .map(|b| b * BLOCK / compression.block)
        .collect();
    blocks.dedup();
    let compressed: u64 = blocks
        .iter()
        .map(|b| {
            let start = (b * compression.block) as usize;
            let end = (start + compression.block as usize).min(image.len());
            compressed_block(&image[start..end], compression)
        })
        .sum();
    compressed + fetch.index_bytes
}

/// `casync make` of `image` into `store` (chunk files `store/xxxx/<id>.cacnk`) and `index`.
pub fn casync_make(image: &Path, store: &Path, index: &Path) {
    run(
        "casync",
        &["make", &format!("--store={}", s(store)), s(index), s(image)],
    );
}

/// The chunk files of a casync store: relative path and size.
fn casync_chunks(store: &Path) -> Vec<(String, u64)> {
    let mut chunks = Vec::new();
    for dir in std::fs::read_dir(store).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for chunk in std::fs::read_dir(&dir).unwrap() {
            let chunk = chunk.unwrap().path();
            if chunk.extension().is_some_and(|e| e == "cacnk") {
                let name = chunk.strip_prefix(store).unwrap().display().to_string();
                chunks.push((name, size(&chunk)));
            }
        }
    }
    chunks
}

/// What casync downloads for `new_index`/`new_store` on a device holding `old_store`'s
/// chunks: the chunk files not in the old store, plus the new index.
pub fn casync_download(old_store: &Path, new_store: &Path, new_index: &Path) -> u64 {
    let old: HashSet<String> = casync_chunks(old_store).into_iter().map(|c| c.0).collect();
    let new_chunks: u64 = casync_chunks(new_store)
        .into_iter()
        .filter(|(name, _)| !old.contains(name))
        .map(|(_, bytes)| bytes)
        .sum();
    new_chunks + size(new_index)
}

/// The `zstd` flags of the patch anchor for images up to `largest` bytes: level 19, a
/// long-distance window that covers the whole old image (at least 2^27), single-threaded (as
/// zstd advises for `--patch-from`).
pub fn zstd_patch_flags(largest: u64) -> Vec<String> {
    let window = (64 - largest.saturating_sub(1).leading_zeros()).max(27);
    vec![
        "-19".into(),
        format!("--long={window}"),
        "--single-thread".into(),
    ]
}

/// `zstd FLAGS --patch-from=old new -o out`: the patch's size.
pub fn zstd_patch(old: &Path, new: &Path, flags: &[String], out: &Path) -> u64 {
    let mut args: Vec<String> = vec!["-q".into(), "-f".into()];
    args.extend(flags.iter().cloned());
    args.push(format!("--patch-from={}", s(old)));
    args.extend([s(new).to_owned(), "-o".into(), s(out).to_owned()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run("zstd", &refs);
    size(out)
}

/// Debian's `bsdiff old new out`: the patch's size.
pub fn bsdiff_patch(old: &Path, new: &Path, out: &Path) -> u64 {
    run("bsdiff", &[s(old), s(new), s(out)]);
    size(out)
}
