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

/// The ELF interpreter and `DT_NEEDED` names of a little-endian ELF64 file; `None` if it is
/// not one this parser understands.
pub fn elf_dependencies(data: &[u8]) -> Option<(Option<String>, Vec<String>)> {
    if data.get(..4)? != b"\x7fELF" || *data.get(4)? != 2 || *data.get(5)? != 1 {
        return None;
    }
    let phoff = usize::try_from(u64_at(data, 0x20)?).ok()?;
    let phentsize = usize::from(u16_at(data, 0x36)?);
    let phnum = usize::from(u16_at(data, 0x38)?);
    let mut interp = None;
    let mut dynamic = None;
    let mut loads = Vec::new();
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let kind = u32_at(data, at)?;
        let offset = usize::try_from(u64_at(data, at + 8)?).ok()?;
        let vaddr = u64_at(data, at + 16)?;
        let filesz = usize::try_from(u64_at(data, at + 32)?).ok()?;
        match kind {
            1 => loads.push((vaddr, offset, filesz)),
            2 => dynamic = Some((offset, filesz)),
            3 => {
                let bytes = data.get(offset..offset.checked_add(filesz)?)?;
                let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
                interp = Some(String::from_utf8(bytes[..end].to_vec()).ok()?);
            }
            _ => {}
        }
    }
    let Some((dyn_offset, dyn_size)) = dynamic else {
        return Some((interp, Vec::new()));
    };
    let mut needed = Vec::new();
    let mut strtab = None;
    for entry in 0..dyn_size / 16 {
        let at = dyn_offset.checked_add(entry * 16)?;
        let tag = u64_at(data, at)?;
        let value = u64_at(data, at + 8)?;
        match tag {
            0 => break,
            1 => needed.push(value),
            5 => strtab = Some(value),
            _ => {}
        }
    }
    let strtab = strtab?;
    let (vaddr, offset, _) = loads
        .iter()
        .find(|(vaddr, _, size)| strtab >= *vaddr && strtab < vaddr + *size as u64)?;
    let table = offset.checked_add(usize::try_from(strtab - vaddr).ok()?)?;
    let names = needed
        .into_iter()
        .map(|index| {
            let start = table.checked_add(usize::try_from(index).ok()?)?;
            let rest = data.get(start..)?;
            let end = rest.iter().position(|b| *b == 0)?;
            String::from_utf8(rest[..end].to_vec()).ok()
        })
        .collect::<Option<Vec<_>>>()?;
    Some((interp, names))
}

/// Resolves the shared objects of `binary` by reading ELF headers (interpreter, then every
/// `DT_NEEDED`, recursively, in the standard directories); `None` when something does not
/// parse or resolve, so the caller can fall back to `ldd`.
fn resolve_from_elf(binary: &Path) -> Option<Vec<PathBuf>> {
    let mut found = BTreeSet::new();
    let mut queue = vec![binary.to_owned()];
    while let Some(file) = queue.pop() {
        let data = std::fs::read(&file).ok()?;
        let (interp, needed) = elf_dependencies(&data)?;
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
