//! The shared libraries a binary needs (so the minimal root contains exactly those).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::SandboxError;

/// Absolute paths of the shared objects `binary` loads, including the ELF interpreter,
/// from `ldd` (empty for a static binary).
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, SandboxError> {
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
