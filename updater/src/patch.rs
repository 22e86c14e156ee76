//! Binary patches in the bsdiff 4 format (`BSDIFF40`, what Debian's `bsdiff`/`bspatch` and
//! the `qbsdiff` crate read and write), made on the build host and applied on the device.
//!
//! Layout: a 32-byte header (`BSDIFF40`, then the lengths of the compressed control and diff
//! blocks and the size of the new file, each 8 bytes, little-endian magnitude with the sign in
//! the top bit), then three bzip2 streams: control tuples `(add, copy, seek)`, the diff bytes
//! (added byte-wise to the old file) and the extra bytes (copied as they are).
//!
//! [`create`] needs both files in memory (suffix sorting: about 6x the larger file); it runs
//! where images are built. [`apply`] streams: it reads the three blocks once, front to back,
//! reads the old file at the offsets the control block names ([`PatchSource`]) and hands the
//! new bytes to its caller in pieces of at most [`PIECE`] bytes, so a device applies a patch
//! of any size in a few hundred KiB of memory. Every number in a patch is checked before it
//! is used: a hostile patch gets [`PatchError`], never a panic, an overflow or an
//! allocation it chose.

use std::io::{self, Read};

use bzip2::read::BzDecoder;

/// The magic at the start of every bsdiff 4 patch.
pub const MAGIC: &[u8; 8] = b"BSDIFF40";
/// Size of the header.
pub const HEADER_LEN: u64 = 32;
/// Largest piece of new bytes [`apply`] hands over at once.
pub const PIECE: usize = 64 * 1024;

/// What is wrong with a patch (or with reading it).
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The header is not a bsdiff 4 header or its lengths do not fit the patch.
    #[error("patch header: {message}")]
    Header {
        /// What is wrong.
        message: String,
    },
    /// A control tuple names lengths or offsets outside the new or old file.
    #[error("control tuple {index}: {message}")]
    Control {
        /// 0-based index of the tuple.
        index: u64,
        /// What is wrong.
        message: String,
    },
    /// A block ended early or its bzip2 stream is corrupt.
    #[error("reading the {block} block")]
    Block {
        /// `control`, `diff` or `extra`.
        block: &'static str,
        /// The decoder's or reader's error.
        #[source]
        source: io::Error,
    },
    /// Reading the old file failed.
    #[error("reading the old file at offset {offset}")]
    Source {
        /// Where.
        offset: u64,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Creating a patch failed (build host).
    #[error("computing the patch")]
    Create {
        /// The error of the diff or of writing.
        #[source]
        source: io::Error,
    },
}

/// The parsed header of a patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchHeader {
    /// Length of the compressed control block.
    pub control_len: u64,
    /// Length of the compressed diff block.
    pub diff_len: u64,
    /// Size of the file the patch produces.
    pub new_size: u64,
}

impl PatchHeader {
    /// Parses the header of a patch of `patch_len` bytes (the three blocks must fit in it).
    pub fn parse(bytes: &[u8; HEADER_LEN as usize], patch_len: u64) -> Result<Self, PatchError> {
        let header = |message: &str| PatchError::Header {
            message: message.to_owned(),
        };
        if &bytes[..8] != MAGIC {
            return Err(header("not a bsdiff 4 patch (no BSDIFF40 magic)"));
        }
        let field = |at: usize| -> Result<u64, PatchError> {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[at..at + 8]);
            let value = offtin(raw);
            u64::try_from(value).map_err(|_| header("a length is negative"))
        };
        let parsed = PatchHeader {
            control_len: field(8)?,
            diff_len: field(16)?,
            new_size: field(24)?,
        };
        let blocks = HEADER_LEN
            .checked_add(parsed.control_len)
            .and_then(|n| n.checked_add(parsed.diff_len))
            .ok_or_else(|| header("block lengths overflow"))?;
        if blocks > patch_len {
            return Err(PatchError::Header {
                message: format!(
                    "control and diff blocks end at {blocks}, past the patch's {patch_len} bytes"
                ),
            });
        }
        Ok(parsed)
    }

    /// Byte range `(start, len)` of the control, diff and extra blocks in a patch of
    /// `patch_len` bytes (checked by [`Self::parse`]).
    pub fn blocks(&self, patch_len: u64) -> [(u64, u64); 3] {
        let diff_start = HEADER_LEN + self.control_len;
        let extra_start = diff_start + self.diff_len;
        [
            (HEADER_LEN, self.control_len),
            (diff_start, self.diff_len),
            (extra_start, patch_len - extra_start),
        ]
    }
}

/// bsdiff's signed 64-bit encoding: little-endian magnitude, sign in the top bit.
fn offtin(raw: [u8; 8]) -> i64 {
    let magnitude = u64::from_le_bytes(raw) & !(1u64 << 63);
    // The magnitude has 63 bits, so it fits an i64.
    let value = magnitude as i64;
    if raw[7] & 0x80 != 0 {
        -value
    } else {
        value
    }
}

/// The old file a patch reads from: a slot device, a file, or bytes in memory.
pub trait PatchSource {
    /// Its length; bytes at or past it read as zero, as bspatch does.
    fn len(&self) -> u64;
    /// Fills `buf` from `offset` (which lies within the source).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Whether it is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PatchSource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let bytes = self
            .get(start..start + buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// A file (or block device) of `len` bytes read with `pread`.
#[derive(Debug)]
pub struct FileSource<'f> {
    /// The open file.
    pub file: &'f std::fs::File,
    /// How much of it is the old image.
    pub len: u64,
}

impl PatchSource for FileSource<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self.file, buf, offset)
    }
}

/// The three blocks of a patch as readers positioned at their starts (each limited to its
/// block), e.g. three readers of one patch file.
#[derive(Debug)]
pub struct PatchBlocks<C, D, E> {
    /// The compressed control block.
    pub control: C,
    /// The compressed diff block.
    pub diff: D,
    /// The compressed extra block.
    pub extra: E,
}

/// Applies a patch whose header is `header` and blocks `blocks` to `source`, handing the new
/// file to `emit` front to back in pieces of at most [`PIECE`] bytes. Returns the number of
/// bytes emitted (the header's `new_size`). An error from `emit` stops the application and is
/// returned as is.
pub fn apply<C: Read, D: Read, E: Read, X>(
    header: &PatchHeader,
    blocks: PatchBlocks<C, D, E>,
    source: &(impl PatchSource + ?Sized),
    mut emit: impl FnMut(&[u8]) -> Result<(), X>,
) -> Result<u64, ApplyError<X>> {
    let mut control = BzDecoder::new(blocks.control);
    let mut diff = BzDecoder::new(blocks.diff);
    let mut extra = BzDecoder::new(blocks.extra);
    let mut piece = vec![0u8; PIECE];
    let mut old = vec![0u8; PIECE];
    let mut new_pos = 0u64;
    let mut old_pos = 0i64;
    let mut index = 0u64;
    while new_pos < header.new_size {
        let tuple = read_control(&mut control, index)?;
        let add = tuple.checked_len(0, new_pos, header.new_size, index)?;
        let mut done = 0u64;
        while done < add {
            let n = (add - done).min(PIECE as u64) as usize;
            read_block(&mut diff, &mut piece[..n], "diff")?;
            let at = old_pos
                .checked_add(done as i64)
                .ok_or_else(|| control_err(index, "old offset overflows"))?;
            add_old(source, at, &mut piece[..n], &mut old[..n])?;
            emit(&piece[..n]).map_err(ApplyError::Emit)?;
            done += n as u64;
        }
        new_pos += add;
        old_pos = old_pos
            .checked_add(add as i64)
            .ok_or_else(|| control_err(index, "old offset overflows"))?;
        let copy = tuple.checked_len(1, new_pos, header.new_size, index)?;
        let mut done = 0u64;
        while done < copy {
            let n = (copy - done).min(PIECE as u64) as usize;
            read_block(&mut extra, &mut piece[..n], "extra")?;
            emit(&piece[..n]).map_err(ApplyError::Emit)?;
            done += n as u64;
        }
        new_pos += copy;
        old_pos = old_pos
            .checked_add(tuple.0[2])
            .ok_or_else(|| control_err(index, "old offset overflows"))?;
        index += 1;
    }
    Ok(new_pos)
}

/// Why [`apply`] stopped: the patch, or the caller's `emit`.
#[derive(Debug)]
pub enum ApplyError<X> {
    /// The patch is malformed or could not be read.
    Patch(PatchError),
    /// `emit` failed.
    Emit(X),
}

impl<X> From<PatchError> for ApplyError<X> {
    fn from(error: PatchError) -> Self {
        ApplyError::Patch(error)
    }
}

/// One control tuple: bytes to add from the diff block, bytes to copy from the extra block,
/// seek in the old file.
struct Control([i64; 3]);

impl Control {
    /// Field `which` (0: add, 1: copy) as a length that keeps the new file within
    /// `new_size` from `new_pos`.
    fn checked_len(
        &self,
        which: usize,
        new_pos: u64,
        new_size: u64,
        index: u64,
    ) -> Result<u64, PatchError> {
        let name = ["add", "copy"][which];
        let len = u64::try_from(self.0[which])
            .map_err(|_| control_err(index, &format!("{name} length is negative")))?;
        if len > new_size - new_pos {
            return Err(control_err(
                index,
                &format!(
                    "{name} length {len} runs past the new file's {new_size} bytes (at {new_pos})"
                ),
            ));
        }
        Ok(len)
    }
}

fn control_err(index: u64, message: &str) -> PatchError {
    PatchError::Control {
        index,
        message: message.to_owned(),
    }
}

fn read_control(control: &mut impl Read, index: u64) -> Result<Control, PatchError> {
    let mut raw = [0u8; 24];
    read_block(control, &mut raw, "control").map_err(|error| match error {
        PatchError::Block { source, .. } if source.kind() == io::ErrorKind::UnexpectedEof => {
            control_err(
                index,
                "the control block ends before the new file is complete",
            )
        }
        other => other,
    })?;
    let field = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&raw[at..at + 8]);
        offtin(bytes)
    };
    Ok(Control([field(0), field(8), field(16)]))
}

fn read_block(
    reader: &mut impl Read,
    buf: &mut [u8],
    block: &'static str,
) -> Result<(), PatchError> {
    reader
        .read_exact(buf)
        .map_err(|source| PatchError::Block { block, source })
}

/// Adds the old file's bytes at `at..at + piece.len()` to `piece` (bytes outside the old
/// file count as zero). `scratch` is as long as `piece`.
fn add_old(
    source: &(impl PatchSource + ?Sized),
    at: i64,
    piece: &mut [u8],
    scratch: &mut [u8],
) -> Result<(), PatchError> {
    let len = piece.len() as i64;
    let start = at.max(0);
    let end = at
        .saturating_add(len)
        .min(i64::try_from(source.len()).unwrap_or(i64::MAX));
    if start >= end {
        return Ok(());
    }
    let (from, to) = ((start - at) as usize, (end - at) as usize);
    let offset = start as u64;
    source
        .read_exact_at(&mut scratch[from..to], offset)
        .map_err(|source| PatchError::Source { offset, source })?;
    for (new, old) in piece[from..to].iter_mut().zip(&scratch[from..to]) {
        *new = new.wrapping_add(*old);
    }
    Ok(())
}

/// Target bytes each parallel search of [`create`] covers. Fixed (not derived from the
/// number of cores, as `qbsdiff`'s automatic scheme is), so the same inputs give the same
/// patch on every machine.
pub const CREATE_CHUNK: usize = 4 << 20;

/// Computes the patch from `old` to `new` into `out`: the target is cut into
/// [`CREATE_CHUNK`]-byte chunks, each searched against the whole old file on any free core.
pub fn create(old: &[u8], new: &[u8], out: &mut impl io::Write) -> Result<u64, PatchError> {
    if old.len() > qbsdiff::bsdiff::MAX_LENGTH {
        return Err(PatchError::Create {
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the old file is larger than {} bytes",
                    qbsdiff::bsdiff::MAX_LENGTH
                ),
            ),
        });
    }
    qbsdiff::Bsdiff::new(old, new)
        .parallel_scheme(qbsdiff::ParallelScheme::ChunkSize(CREATE_CHUNK))
        .compare(out)
        .map_err(|source| PatchError::Create { source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    type SliceBlocks<'p> = PatchBlocks<&'p [u8], &'p [u8], &'p [u8]>;

    fn blocks(patch: &[u8]) -> (PatchHeader, SliceBlocks<'_>) {
        let header =
            PatchHeader::parse(patch[..32].try_into().unwrap(), patch.len() as u64).unwrap();
        let [c, d, e] = header.blocks(patch.len() as u64);
        let slice = |(start, len): (u64, u64)| &patch[start as usize..(start + len) as usize];
        (
            header,
            PatchBlocks {
                control: slice(c),
                diff: slice(d),
                extra: slice(e),
            },
        )
    }

    fn apply_all(patch: &[u8], old: &[u8]) -> Result<Vec<u8>, PatchError> {
        let (header, blocks) = blocks(patch);
        let mut out = Vec::new();
        apply(&header, blocks, old, |piece| {
            assert!(piece.len() <= PIECE);
            out.extend_from_slice(piece);
            Ok::<(), ()>(())
        })
        .map_err(|error| match error {
            ApplyError::Patch(error) => error,
            ApplyError::Emit(()) => unreachable!("emit never fails here"),
        })?;
        Ok(out)
    }

    fn sample(len: usize, seed: u32) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (state >> 16) as u8
            })
            .collect()
    }

    #[test]
    fn round_trips_an_insertion_that_shifts_the_rest() {
        let old = sample(300_000, 1);
        let mut new = old.clone();
        new.splice(1000..1000, sample(777, 2));
        new[200_000] ^= 0x55;
        let mut patch = Vec::new();
        create(&old, &new, &mut Cursor::new(&mut patch)).unwrap();
        assert!(
            patch.len() < 5_000,
            "a small change gives a small patch: {}",
            patch.len()
        );
        assert_eq!(apply_all(&patch, &old).unwrap(), new);
    }

    #[test]
    fn signed_numbers_decode_as_bsdiff_writes_them() {
        assert_eq!(offtin(5u64.to_le_bytes()), 5);
        assert_eq!(offtin((5u64 | 1 << 63).to_le_bytes()), -5);
    }

    #[test]
    fn refuses_headers_that_do_not_fit() {
        let mut header = [0u8; 32];
        assert!(matches!(
            PatchHeader::parse(&header, 32),
            Err(PatchError::Header { .. })
        ));
        header[..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&100u64.to_le_bytes());
        let error = PatchHeader::parse(&header, 64).unwrap_err();
        assert!(error.to_string().contains("past the patch"), "{error}");
        header[8..16].copy_from_slice(&(1u64 << 63 | 1).to_le_bytes());
        let error = PatchHeader::parse(&header, 64).unwrap_err();
        assert!(error.to_string().contains("negative"), "{error}");
    }

    #[test]
    fn a_patch_that_claims_more_output_than_its_control_block_gives_is_refused() {
        let old = sample(10_000, 3);
        let new = sample(10_000, 4);
        let mut patch = Vec::new();
        create(&old, &new, &mut Cursor::new(&mut patch)).unwrap();
        patch[24..32].copy_from_slice(&20_000u64.to_le_bytes());
        let error = apply_all(&patch, &old).unwrap_err();
        assert!(matches!(error, PatchError::Control { .. }), "{error}");
    }

    #[test]
    fn a_control_tuple_running_past_the_new_file_is_refused() {
        let old = sample(10_000, 5);
        let mut patch = Vec::new();
        create(&old, &old, &mut Cursor::new(&mut patch)).unwrap();
        // Same patch, but the header says the new file is shorter than the tuple's add.
        patch[24..32].copy_from_slice(&100u64.to_le_bytes());
        let error = apply_all(&patch, &old).unwrap_err();
        assert!(error.to_string().contains("runs past"), "{error}");
    }

    #[test]
    fn a_corrupt_block_is_an_error_not_a_panic() {
        let old = sample(50_000, 6);
        let mut new = old.clone();
        new[10] = 0;
        let mut patch = Vec::new();
        create(&old, &new, &mut Cursor::new(&mut patch)).unwrap();
        let header =
            PatchHeader::parse(patch[..32].try_into().unwrap(), patch.len() as u64).unwrap();
        let [_, (diff_start, diff_len), _] = header.blocks(patch.len() as u64);
        let mut corrupt = patch.clone();
        corrupt[(diff_start + diff_len / 2) as usize] ^= 0xff;
        let error = apply_all(&corrupt, &old).unwrap_err();
        assert!(
            matches!(error, PatchError::Block { block: "diff", .. }),
            "{error}"
        );
        // Cut inside the control block: the header no longer fits.
        let error = PatchHeader::parse(patch[..32].try_into().unwrap(), 40).unwrap_err();
        assert!(matches!(error, PatchError::Header { .. }), "{error}");
    }

    #[test]
    fn emit_errors_stop_the_application() {
        let old = sample(200_000, 7);
        let mut patch = Vec::new();
        create(&old, &old, &mut Cursor::new(&mut patch)).unwrap();
        let (header, blocks) = blocks(&patch);
        let mut calls = 0;
        let result = apply(&header, blocks, old.as_slice(), |_| {
            calls += 1;
            Err("disk full")
        });
        assert!(matches!(result, Err(ApplyError::Emit("disk full"))));
        assert_eq!(calls, 1);
    }
}
