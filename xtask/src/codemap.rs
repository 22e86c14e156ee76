//! `cargo xtask test`'s codemap check: `ARCHITECTURE.md` names every module file of every
//! crate, so a reader can find where each concept lives and the map cannot silently go stale.
//!
//! A module file is a tracked `*.rs` file under a crate's `src/` (a crate is a directory with
//! a tracked `Cargo.toml`). It is named when `ARCHITECTURE.md` contains its full path, or when
//! a part of the codemap that is about its crate — a `###` section whose heading names the
//! crate's directory (`` `updater/` ``) or a bullet that does — contains, in backticks, its
//! path relative to `src/` (`` `bootloader/grub.rs` ``) or its file name (`` `grub.rs` ``).

use anyhow::{bail, Context};
use std::collections::BTreeSet;

use crate::util;

/// The document the check reads, relative to the workspace root.
const DOCUMENT: &str = "ARCHITECTURE.md";

/// Runs the check on the tracked files of the workspace; fails listing every unnamed file.
pub fn check() -> anyhow::Result<()> {
    let files = util::tracked_files(&["*.rs", "*Cargo.toml"])?;
    let document = std::fs::read_to_string(util::workspace_root().join(DOCUMENT))
        .with_context(|| format!("reading {DOCUMENT}"))?;
    let missing = unnamed_module_files(&document, &files);
    for file in &missing {
        eprintln!("{DOCUMENT}: the codemap does not name {file}");
    }
    if !missing.is_empty() {
        bail!("{} module file(s) missing from the codemap", missing.len());
    }
    eprintln!("codemap: {DOCUMENT} names every module file");
    Ok(())
}

/// The module files among `files` that `document` does not name, sorted.
pub fn unnamed_module_files(document: &str, files: &[String]) -> Vec<String> {
    let crates: BTreeSet<&str> = files
        .iter()
        .filter_map(|f| f.strip_suffix("Cargo.toml"))
        .map(|dir| dir.trim_end_matches('/'))
        .collect();
    let scopes = scopes(document);
    let mut missing: Vec<String> = files
        .iter()
        .filter(|f| f.ends_with(".rs"))
        .filter_map(|file| module_file(file, &crates).map(|m| (file, m)))
        .filter(|(file, module)| !document.contains(file.as_str()) && !named(module, &scopes))
        .map(|(file, _)| file.clone())
        .collect();
    missing.sort();
    missing
}

/// A module file: its crate directory and its path relative to the crate's `src/`.
struct ModuleFile<'a> {
    crate_dir: &'a str,
    relative: &'a str,
}

/// `file` as a module file of the crate (among `crates`) that owns it, if it is one.
fn module_file<'a>(file: &'a str, crates: &BTreeSet<&'a str>) -> Option<ModuleFile<'a>> {
    crates
        .iter()
        .filter_map(|crate_dir| {
            let prefix = if crate_dir.is_empty() {
                "src/".to_owned()
            } else {
                format!("{crate_dir}/src/")
            };
            let relative = file.strip_prefix(prefix.as_str())?;
            Some(ModuleFile {
                crate_dir,
                relative,
            })
        })
        .max_by_key(|module| module.crate_dir.len())
}

/// The parts of the document a crate can be named in: every `###` section and every bullet.
fn scopes(document: &str) -> Vec<String> {
    let mut sections = Vec::new();
    let mut bullets = Vec::new();
    let mut section = String::new();
    let mut bullet = String::new();
    for line in document.lines() {
        if line.starts_with('#') {
            sections.push(std::mem::take(&mut section));
            bullets.push(std::mem::take(&mut bullet));
        } else if line.starts_with("- ") {
            bullets.push(std::mem::take(&mut bullet));
        }
        section.push_str(line);
        section.push('\n');
        if !line.starts_with('#') {
            bullet.push_str(line);
            bullet.push('\n');
        }
    }
    sections.push(section);
    bullets.push(bullet);
    sections.retain(|s| s.starts_with("###"));
    sections.extend(bullets);
    sections
}

/// Whether a scope about `module`'s crate names it.
fn named(module: &ModuleFile<'_>, scopes: &[String]) -> bool {
    let crate_mention = format!("`{}/", module.crate_dir);
    let file_name = module
        .relative
        .rsplit('/')
        .next()
        .unwrap_or(module.relative);
    let by_path = format!("`{}`", module.relative);
    let by_name = format!("`{file_name}`");
    scopes.iter().any(|scope| {
        let about_crate = match scope.lines().next() {
            Some(heading) if heading.starts_with("###") => heading.contains(&crate_mention),
            _ => scope.contains(&crate_mention),
        } || (scope.starts_with("- ") && scope.contains(&crate_mention));
        about_crate && (scope.contains(&by_path) || scope.contains(&by_name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_file_named_in_its_crates_bullet_or_section_is_named() {
        let document = "\
## Codemap
### Updater: `updater/` (crate `testudo-updater`)
- `lib.rs`; `bundle.rs` — bundles; `bootloader/grub.rs`.
### OS
- `os/init/` — `supervisor.rs`, `lib.rs`.
- `os/sandbox/` — `spec.rs`.
";
        let all = files(&[
            "updater/Cargo.toml",
            "updater/src/lib.rs",
            "updater/src/bundle.rs",
            "updater/src/bootloader/grub.rs",
            "os/init/Cargo.toml",
            "os/init/src/lib.rs",
            "os/init/src/supervisor.rs",
            "os/sandbox/Cargo.toml",
            "os/sandbox/src/spec.rs",
            "os/sandbox/src/lib.rs",
            "os/sandbox/tests/real.rs",
        ]);
        assert_eq!(
            unnamed_module_files(document, &all),
            vec!["os/sandbox/src/lib.rs".to_owned()],
            "lib.rs is named only in another crate's bullet; tests are not module files"
        );
    }

    #[test]
    fn a_full_path_anywhere_names_the_file() {
        let all = files(&["cli/Cargo.toml", "cli/src/commands/app.rs"]);
        assert!(unnamed_module_files("see cli/src/commands/app.rs", &all).is_empty());
        assert_eq!(
            unnamed_module_files("nothing here", &all),
            vec!["cli/src/commands/app.rs".to_owned()]
        );
    }
}
