//! One workspace binary rebuilt from a copy of the committed sources, with and without an
//! edit: the copy (`git archive HEAD`, extracted once per commit) and its own persistent
//! target directory live side by side, so the unmodified and the edited build differ only by
//! the edit (same source path, flags and target dir), and reruns are incremental. The
//! checkout itself is only read.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A copy of the repository's committed sources and the target dir its builds use.
pub struct SourceCopy {
    /// The extracted sources.
    pub src: PathBuf,
    /// `CARGO_TARGET_DIR` of its builds.
    pub target: PathBuf,
}

/// `program args` in `dir`, which must succeed; its stdout.
fn output_in(dir: &Path, program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl SourceCopy {
    /// The copy of `repo`'s `HEAD` under `dir` (`dir/src`, target dir `dir/target`),
    /// extracted unless it already holds that commit.
    pub fn of_head(repo: &Path, dir: &Path) -> SourceCopy {
        let commit = String::from_utf8(output_in(repo, "git", &["rev-parse", "HEAD"])).unwrap();
        let commit = commit.trim();
        let src = dir.join("src");
        let stamp = dir.join("src.commit");
        let current = std::fs::read_to_string(&stamp).unwrap_or_default();
        if current.trim() != commit || !src.is_dir() {
            if src.exists() {
                std::fs::remove_dir_all(&src).unwrap();
            }
            std::fs::create_dir_all(&src).unwrap();
            let archive = output_in(repo, "git", &["archive", "--format=tar", commit]);
            let mut tar = Command::new("tar")
                .args(["-x", "-C"])
                .arg(&src)
                .stdin(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("tar is needed: {e}"));
            std::io::Write::write_all(&mut tar.stdin.take().unwrap(), &archive).unwrap();
            assert!(tar.wait().unwrap().success(), "extracting {commit} failed");
            std::fs::write(&stamp, commit).unwrap();
        }
        SourceCopy {
            src,
            target: dir.join("target"),
        }
    }

    /// The text of `relative` in the copy.
    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.src.join(relative)).unwrap()
    }

    /// Makes `relative` hold `text`, writing only when it differs (an unchanged file keeps
    /// its mtime, so cargo has nothing to rebuild).
    pub fn set(&self, relative: &str, text: &str) {
        if self.read(relative) != text {
            std::fs::write(self.src.join(relative), text).unwrap();
        }
    }

    /// `cargo build --release --locked -p package --bin bin` in the copy; the binary copied
    /// to `out_dir/bin`, and how long the build took.
    pub fn build(&self, package: &str, bin: &str, out_dir: &Path) -> (PathBuf, Duration) {
        let started = Instant::now();
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--locked", "--quiet", "-p", package])
            .args(["--bin", bin])
            .current_dir(&self.src)
            .env("CARGO_TARGET_DIR", &self.target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .unwrap_or_else(|e| panic!("cargo is needed: {e}"));
        assert!(status.success(), "building {bin} in {}", self.src.display());
        let took = started.elapsed();
        std::fs::create_dir_all(out_dir).unwrap();
        let out = out_dir.join(bin);
        std::fs::copy(self.target.join("release").join(bin), &out).unwrap();
        (out, took)
    }
}
