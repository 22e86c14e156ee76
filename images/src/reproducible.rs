//! Reproducibility: the build clock (`SOURCE_DATE_EPOCH`), and trees that do not depend on
//! who built them, where, with which umask or in which order the directory was read.
//!
//! The clock comes from, in order: the `SOURCE_DATE_EPOCH` environment variable, the commit
//! time of the source tree's git `HEAD`, the modification time of the config file (a tarball
//! made by `git archive` gives every file the commit time, so it builds what the checkout
//! builds), else 0. The Nix store resets modification times to 1: Nix builds pass the
//! flake's `lastModified` as `SOURCE_DATE_EPOCH`. Every staged file gets mode 0644 or 0755
//! (directories 0755) and mtime = the clock, whatever the umask; every walk is sorted by name.

use std::fs::{self, FileTimes};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{ImageError, Result};
use crate::tool::{ToolCall, ToolRunner};

/// Where the build clock came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochSource {
    /// The `SOURCE_DATE_EPOCH` environment variable (or an explicit override).
    Environment,
    /// The commit time of git `HEAD` of the source tree.
    GitHead,
    /// The modification time of the config file (no git repository).
    ConfigFile,
    /// Nothing was available: 1970-01-01.
    Zero,
}

/// The one timestamp that may appear in build outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceDateEpoch {
    /// Seconds since 1970-01-01 UTC.
    pub seconds: u64,
    /// Where it came from.
    pub source: EpochSource,
}

impl SourceDateEpoch {
    /// Determines the build clock: `explicit` (normally `$SOURCE_DATE_EPOCH`), else git `HEAD`
    /// of `source_root`, else the modification time of `config_file`, else 0.
    pub fn determine(
        explicit: Option<&str>,
        source_root: &Path,
        config_file: Option<&Path>,
        tools: &dyn ToolRunner,
    ) -> Result<Self> {
        if let Some(value) = explicit.filter(|v| !v.trim().is_empty()) {
            let seconds = value
                .trim()
                .parse::<u64>()
                .map_err(|_| ImageError::SourceDateEpoch {
                    value: value.to_owned(),
                })?;
            return Ok(SourceDateEpoch {
                seconds,
                source: EpochSource::Environment,
            });
        }
        if source_root.join(".git").exists() {
            let call = ToolCall::new("git", "reading the commit time of HEAD")
                .arg("-C")
                .arg(source_root.as_os_str())
                .args(["log", "-1", "--format=%ct", "HEAD"]);
            if let Ok(out) = tools.run(&call) {
                if let Ok(seconds) = String::from_utf8_lossy(&out).trim().parse::<u64>() {
                    return Ok(SourceDateEpoch {
                        seconds,
                        source: EpochSource::GitHead,
                    });
                }
            }
        }
        let modified = config_file
            .and_then(|file| fs::metadata(file).ok())
            .and_then(|meta| meta.modified().ok())
            .and_then(|time| time.duration_since(SystemTime::UNIX_EPOCH).ok());
        if let Some(since_epoch) = modified {
            return Ok(SourceDateEpoch {
                seconds: since_epoch.as_secs(),
                source: EpochSource::ConfigFile,
            });
        }
        Ok(SourceDateEpoch {
            seconds: 0,
            source: EpochSource::Zero,
        })
    }

    /// The clock as a `SystemTime`.
    pub fn system_time(self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(self.seconds)
    }
}

/// Every path below `root` (files, directories, symlinks), sorted by relative path bytes,
/// `root` itself excluded. Symlinks are listed, never followed.
pub fn sorted_walk(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk_into(root, Path::new(""), &mut out)?;
    Ok(out)
}

fn walk_into(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(ImageError::read(&dir))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(ImageError::read(&dir))?;
    names.sort();
    for name in names {
        let child = rel.join(&name);
        let meta =
            fs::symlink_metadata(root.join(&child)).map_err(ImageError::read(root.join(&child)))?;
        out.push(child.clone());
        if meta.is_dir() {
            walk_into(root, &child, out)?;
        }
    }
    Ok(())
}

/// Gives every file and directory under `root` (and `root`) a fixed mode and mtime:
/// directories and executables 0755, other files 0644, mtime = `epoch`.
pub fn normalize_tree(root: &Path, epoch: SourceDateEpoch) -> Result<()> {
    let mut paths: Vec<PathBuf> = sorted_walk(root)?
        .into_iter()
        .map(|rel| root.join(rel))
        .collect();
    paths.push(root.to_path_buf());
    for path in paths {
        let meta = fs::symlink_metadata(&path).map_err(ImageError::read(&path))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = normalized_mode(meta.is_dir(), meta.permissions().mode());
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(ImageError::write(&path))?;
        let file = fs::File::open(&path).map_err(ImageError::read(&path))?;
        let time = epoch.system_time();
        file.set_times(FileTimes::new().set_modified(time).set_accessed(time))
            .map_err(ImageError::write(&path))?;
    }
    Ok(())
}

/// The mode a staged entry gets: 0755 for directories and anything executable, else 0644.
pub fn normalized_mode(is_dir: bool, mode: u32) -> u32 {
    if is_dir || mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool::fake::RecordingTools;

    #[test]
    fn explicit_epoch_wins_and_is_validated() {
        let tools = RecordingTools::new(|_| Ok(b"99\n".to_vec()));
        let dir = tempfile::tempdir().unwrap();
        let epoch =
            SourceDateEpoch::determine(Some("1700000000"), dir.path(), None, &tools).unwrap();
        assert_eq!(epoch.seconds, 1_700_000_000);
        assert_eq!(epoch.source, EpochSource::Environment);
        assert!(tools.calls().is_empty());
        let err = SourceDateEpoch::determine(Some("yesterday"), dir.path(), None, &tools).err();
        assert!(matches!(err, Some(ImageError::SourceDateEpoch { .. })));
    }

    #[test]
    fn git_head_time_is_used_in_a_repository() {
        let tools = RecordingTools::new(|_| Ok(b"1650000000\n".to_vec()));
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(".git")).unwrap();
        let config = dir.path().join("system.ncl");
        fs::write(&config, "{}").unwrap();
        let epoch = SourceDateEpoch::determine(None, dir.path(), Some(&config), &tools).unwrap();
        assert_eq!(epoch.seconds, 1_650_000_000);
        assert_eq!(epoch.source, EpochSource::GitHead);
        assert_eq!(tools.calls()[0].program, "git");
    }

    /// A tree without git (a tarball, the Nix store): the config file's modification time,
    /// which `git archive` sets to the commit time.
    #[test]
    fn without_git_the_config_file_time_is_used() {
        let tools = RecordingTools::new(|_| Ok(b"1650000000\n".to_vec()));
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("system.ncl");
        fs::write(&config, "{}").unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
        fs::File::options()
            .write(true)
            .open(&config)
            .unwrap()
            .set_times(FileTimes::new().set_modified(at))
            .unwrap();
        let epoch = SourceDateEpoch::determine(None, dir.path(), Some(&config), &tools).unwrap();
        assert_eq!(epoch.seconds, 1_600_000_000);
        assert_eq!(epoch.source, EpochSource::ConfigFile);
        assert!(
            tools.calls().is_empty(),
            "git was asked without a repository"
        );
    }

    #[test]
    fn no_clock_source_means_zero() {
        let tools = RecordingTools::new(|_| Ok(Vec::new()));
        let dir = tempfile::tempdir().unwrap();
        let epoch = SourceDateEpoch::determine(None, dir.path(), None, &tools).unwrap();
        assert_eq!(epoch.seconds, 0);
        assert_eq!(epoch.source, EpochSource::Zero);
    }

    #[test]
    fn walk_is_sorted_and_normalize_fixes_modes_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/sub")).unwrap();
        fs::write(root.join("b/sub/z"), "z").unwrap();
        fs::write(root.join("a"), "a").unwrap();
        fs::write(root.join("c"), "c").unwrap();
        fs::set_permissions(root.join("c"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o600)).unwrap();
        let walk = sorted_walk(root).unwrap();
        let names: Vec<_> = walk
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a", "b", "b/sub", "b/sub/z", "c"]);
        let epoch = SourceDateEpoch {
            seconds: 1_000_000,
            source: EpochSource::Environment,
        };
        normalize_tree(root, epoch).unwrap();
        let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("a"), 0o644);
        assert_eq!(mode("c"), 0o755);
        assert_eq!(mode("b/sub"), 0o755);
        let mtime = fs::metadata(root.join("b/sub/z"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(mtime, epoch.system_time());
    }
}
