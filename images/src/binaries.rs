//! Native binaries for the image: found by name in the binary directories (normally the
//! cargo target directory the `testudo` executable itself lives in), stripped, and brought
//! with the shared libraries they link (their `ldd` closure, staged at the same paths).

use std::path::{Path, PathBuf};

use crate::error::{ImageError, Result};
use crate::tool::{path_arg, ToolCall, ToolRunner};

/// Finds `name` in the first directory of `dirs` that has it.
pub fn find_binary(name: &str, dirs: &[PathBuf], needed_by: &str) -> Result<PathBuf> {
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| ImageError::BinaryMissing {
            name: name.to_owned(),
            needed_by: needed_by.to_owned(),
            searched: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The shared libraries `binary` loads (including the ELF interpreter), as absolute paths;
/// empty for a static binary.
pub fn shared_libraries(tools: &dyn ToolRunner, binary: &Path) -> Result<Vec<PathBuf>> {
    let call = ToolCall::new("ldd", "listing shared libraries").arg(path_arg(binary));
    match tools.run(&call) {
        Ok(out) => parse_ldd(binary, &String::from_utf8_lossy(&out)),
        Err(ImageError::ToolFailed { stderr, .. })
            if stderr.contains("not a dynamic executable") =>
        {
            Ok(Vec::new())
        }
        Err(err) => Err(err),
    }
}

/// Parses `ldd` output into library paths, sorted and deduplicated.
pub fn parse_ldd(binary: &Path, text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("statically linked") {
            continue;
        }
        if line.contains("=> not found") {
            return Err(ImageError::SharedLibraries {
                binary: binary.to_path_buf(),
                detail: format!("missing library: {line}"),
            });
        }
        let path_part = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line,
        };
        let path = path_part.split(" (").next().unwrap_or("").trim();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        } else if !path.is_empty() && !line.starts_with("linux-vdso") && !line.contains("(0x") {
            return Err(ImageError::SharedLibraries {
                binary: binary.to_path_buf(),
                detail: format!("unexpected ldd line: {line}"),
            });
        }
    }
    libs.sort();
    libs.dedup();
    Ok(libs)
}

/// Writes a stripped copy of `binary` to `out`.
pub fn strip(tools: &dyn ToolRunner, binary: &Path, out: &Path) -> Result<()> {
    tools.run(
        &ToolCall::new("strip", "stripping a binary")
            .args(["--strip-all", "-o"])
            .arg(path_arg(out))
            .arg(path_arg(binary)),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_becomes_sorted_library_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let libs = parse_ldd(Path::new("b"), text).unwrap();
        assert_eq!(
            libs,
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn missing_library_is_an_error() {
        let err = parse_ldd(Path::new("b"), "\tlibtss2.so => not found\n").err();
        assert!(matches!(err, Some(ImageError::SharedLibraries { .. })));
    }

    #[test]
    fn binary_search_names_every_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_binary("testudo-init", &[dir.path().to_path_buf()], "the image").err();
        match err {
            Some(ImageError::BinaryMissing { searched, .. }) => {
                assert!(searched.contains(&dir.path().display().to_string()))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn real_ldd_lists_libc_for_a_dynamic_binary() {
        let tools = crate::tool::HostTools::new();
        let libs = shared_libraries(&tools, Path::new("/bin/sh")).unwrap();
        assert!(
            libs.iter().any(|l| l.to_string_lossy().contains("libc.so")),
            "{libs:?}"
        );
        let none = shared_libraries(&tools, Path::new("/usr/bin/busybox")).unwrap();
        assert!(none.is_empty());
    }
}
