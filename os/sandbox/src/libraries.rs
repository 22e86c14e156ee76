//! The shared libraries a binary needs (so the minimal root contains exactly those).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use crate::SandboxError;

/// A binary's identity for the library cache: path, size, modification time.
type CacheKey = (PathBuf, u64, Option<SystemTime>);

/// Directories searched for `DT_NEEDED` libraries (Debian multiarch, then the classic ones).
const LIBRARY_DIRS: [&str; 6] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

/// Largest dynamic section or string table read from a binary.
const MAX_TABLE: usize = 16 << 20;

/// The ELF interpreter and `DT_NEEDED` names of a little-endian ELF64 file in memory;
/// `None` if it is not one this parser understands (the tests' reference for
/// [`file_dependencies`]).
#[cfg(test)]
fn elf_dependencies(data: &[u8]) -> Option<(Option<String>, Vec<String>)> {
    elf_dependencies_with(|at, len| data.get(at..at.checked_add(len)?).map(<[u8]>::to_vec))
}

/// [`elf_dependencies`] reading only the parts it needs (`read(offset, len)`): the header,
/// the program headers, the interpreter, the dynamic section and the string table, so a
/// large binary is not read whole.
fn elf_dependencies_with(
    read: impl Fn(usize, usize) -> Option<Vec<u8>>,
) -> Option<(Option<String>, Vec<String>)> {
    let header = read(0, 64)?;
    if header.get(..4)? != b"\x7fELF" || *header.get(4)? != 2 || *header.get(5)? != 1 {
        return None;
    }
    let phoff = usize::try_from(u64_at(&header, 0x20)?).ok()?;
    let phentsize = usize::from(u16_at(&header, 0x36)?);
    let phnum = usize::from(u16_at(&header, 0x38)?);
    let table = read(phoff, phentsize.checked_mul(phnum)?)?;
    let mut interp = None;
    let mut dynamic = None;
    let mut loads = Vec::new();
    for i in 0..phnum {
        let at = i.checked_mul(phentsize)?;
        let kind = u32_at(&table, at)?;
        let offset = usize::try_from(u64_at(&table, at + 8)?).ok()?;
        let vaddr = u64_at(&table, at + 16)?;
        let filesz = usize::try_from(u64_at(&table, at + 32)?).ok()?;
        match kind {
            1 => loads.push((vaddr, offset, filesz)),
            2 => dynamic = Some((offset, filesz.min(MAX_TABLE))),
            3 => {
                let bytes = read(offset, filesz.min(4096))?;
                let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
                interp = Some(String::from_utf8(bytes[..end].to_vec()).ok()?);
            }
            _ => {}
        }
    }
    let Some((dyn_offset, dyn_size)) = dynamic else {
        return Some((interp, Vec::new()));
    };
    let entries = read(dyn_offset, dyn_size)?;
    let mut needed = Vec::new();
    let mut strtab = None;
    let mut strsz = None;
    for entry in 0..dyn_size / 16 {
        let at = entry * 16;
        let tag = u64_at(&entries, at)?;
        let value = u64_at(&entries, at + 8)?;
        match tag {
            0 => break,
            1 => needed.push(value),
            5 => strtab = Some(value),
            10 => strsz = usize::try_from(value).ok(),
            _ => {}
        }
    }
    if needed.is_empty() {
        return Some((interp, Vec::new()));
    }
    let strtab = strtab?;
    let (vaddr, offset, size) = loads
        .iter()
        .find(|(vaddr, _, size)| strtab >= *vaddr && strtab < vaddr + *size as u64)?;
    let within = usize::try_from(strtab - vaddr).ok()?;
    let start = offset.checked_add(within)?;
    let len = strsz
        .unwrap_or(size - within)
        .min(size - within)
        .min(MAX_TABLE);
    let strings = read(start, len)?;
    let names = needed
        .into_iter()
        .map(|index| {
            let rest = strings.get(usize::try_from(index).ok()?..)?;
            let end = rest.iter().position(|b| *b == 0)?;
            String::from_utf8(rest[..end].to_vec()).ok()
        })
        .collect::<Option<Vec<_>>>()?;
    Some((interp, names))
}

/// The dependencies of the ELF file at `path`, reading only what is needed.
fn file_dependencies(path: &Path) -> Option<(Option<String>, Vec<String>)> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).ok()?;
    elf_dependencies_with(|at, len| {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, u64::try_from(at).ok()?).ok()?;
        Some(buf)
    })
}

/// Resolves the shared objects of `binary` by reading ELF headers (interpreter, then every
/// `DT_NEEDED`, recursively, in the standard directories); `None` when something does not
/// parse or resolve, so the caller can fall back to `ldd`.
fn resolve_from_elf(binary: &Path) -> Option<Vec<PathBuf>> {
    let mut found = BTreeSet::new();
    let mut queue = vec![binary.to_owned()];
    while let Some(file) = queue.pop() {
        let (interp, needed) = file_dependencies(&file)?;
        if let Some(interp) = interp {
            if found.insert(PathBuf::from(&interp)) {
                queue.push(PathBuf::from(interp));
            }
        }
        for name in needed {
            let path = LIBRARY_DIRS
                .iter()
                .map(|dir| Path::new(dir).join(&name))
                .find(|path| path.is_file())?;
            if found.insert(path.clone()) {
                queue.push(path);
            }
        }
    }
    Some(found.into_iter().collect())
}

/// Absolute paths of the shared objects `binary` loads, including the ELF interpreter
/// (empty for a static binary): read from the ELF headers, falling back to `ldd`.
/// Results are cached per (path, size, modification time) for the life of the process, so
/// restarts and repeated starts do not re-read binaries.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    static CACHE: Mutex<BTreeMap<CacheKey, Vec<PathBuf>>> = Mutex::new(BTreeMap::new());
    let key = std::fs::metadata(binary)
        .ok()
        .map(|meta| (binary.to_owned(), meta.len(), meta.modified().ok()));
    if let Some(key) = &key {
        if let Some(found) = CACHE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return Ok(found.clone());
        }
    }
    let libraries = match resolve_from_elf(binary) {
        Some(libraries) => libraries,
        None => shared_libraries_ldd(binary)?,
    };
    if let Some(key) = key {
        CACHE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, libraries.clone());
    }
    Ok(libraries)
}

/// [`shared_libraries`] through `ldd`.
pub fn shared_libraries_ldd(binary: &Path) -> Result<Vec<PathBuf>, SandboxError> {
    let output = Command::new("ldd")
        .arg(binary)
        .env_clear()
        .output()
        .map_err(|source| SandboxError::Libraries {
            binary: binary.to_owned(),
            source,
        })?;
    Ok(parse_ldd(&String::from_utf8_lossy(&output.stdout)))
}

/// Parses `ldd` output lines (`name => /path (addr)` or `/path (addr)`).
pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let candidate = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line.trim(),
        };
        let path = candidate.split_whitespace().next().unwrap_or("");
        if path.starts_with('/') {
            found.insert(PathBuf::from(path));
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_reading_agrees_with_ldd() {
        for binary in ["/usr/bin/cat", "/usr/bin/true"] {
            let from_elf = resolve_from_elf(Path::new(binary)).expect("parses");
            let from_ldd: Vec<PathBuf> = shared_libraries_ldd(Path::new(binary))
                .expect("ldd")
                .into_iter()
                .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
                .collect();
            let canonical: Vec<PathBuf> = from_elf
                .iter()
                .map(|p| std::fs::canonicalize(p).expect("exists"))
                .collect();
            for library in &from_ldd {
                assert!(
                    canonical.contains(library),
                    "{binary}: {library:?} missing from {from_elf:?}"
                );
            }
        }
        // Reading only the needed parts gives what parsing the whole file gives.
        let me = std::env::current_exe().expect("test binary");
        for binary in [me.as_path(), Path::new("/usr/bin/cat")] {
            let whole = std::fs::read(binary).expect("read");
            assert_eq!(
                file_dependencies(binary),
                elf_dependencies(&whole),
                "{}",
                binary.display()
            );
            assert!(file_dependencies(binary).is_some());
        }
        assert!(elf_dependencies(b"not an elf").is_none());
        assert!(elf_dependencies(b"\x7fELF\x02\x01").is_none());
    }

    #[test]
    fn parses_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x1)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x2)\n\t/lib64/ld-linux-x86-64.so.2 (0x3)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
    }
}
