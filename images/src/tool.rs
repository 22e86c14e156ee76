//! External tools (mksquashfs, mkfs.vfat, mtools, grub-mkimage, mkfs.ext4, ldd, strip) behind
//! one small trait, so the build logic is unit-tested with a recording fake and the real tools
//! are exercised in the integration tests.
//!
//! The host runner gives every tool the same clean environment: `PATH`, `LC_ALL=C`, `TZ=UTC`,
//! nothing from the caller (a step that wants `SOURCE_DATE_EPOCH` passes it explicitly). That
//! is one half of reproducibility; the other half is the flags each step passes.

use std::ffi::OsString;
use std::process::{Command, Stdio};

use crate::error::{ImageError, Result};

/// One invocation of an external tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// Program name, looked up on `PATH`.
    pub program: String,
    /// Arguments.
    pub args: Vec<OsString>,
    /// Extra environment variables on top of the clean environment.
    pub env: Vec<(String, String)>,
    /// What the call is for, used in error messages ("formatting the ESP").
    pub step: String,
}

impl ToolCall {
    /// A call of `program` made for `step`.
    pub fn new(program: &str, step: &str) -> Self {
        ToolCall {
            program: program.to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            step: step.to_owned(),
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an extra environment variable.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }
}

/// Runs external tools. Returns the tool's standard output.
pub trait ToolRunner: Send + Sync {
    /// Runs `call` to completion; a non-zero exit is an error.
    fn run(&self, call: &ToolCall) -> Result<Vec<u8>>;
}

/// The Debian package that provides `tool`, for "not installed" messages.
pub fn package_of(tool: &str) -> &'static str {
    match tool {
        "mksquashfs" | "unsquashfs" => "squashfs-tools",
        "grub-mkimage" | "grub-editenv" => "grub-common",
        "mkfs.vfat" => "dosfstools",
        "mmd" | "mcopy" | "mdir" | "mtype" => "mtools",
        "mkfs.ext4" | "e2fsck" => "e2fsprogs",
        "ldd" => "libc-bin",
        "strip" => "binutils",
        "git" => "git",
        "sgdisk" => "gdisk",
        "qemu-system-x86_64" => "qemu-system-x86",
        "swtpm" => "swtpm",
        "rauc" => "rauc",
        _ => "unknown",
    }
}

/// Runs tools on the build host with a clean, fixed environment.
#[derive(Debug, Clone)]
pub struct HostTools {
    path: OsString,
}

impl Default for HostTools {
    fn default() -> Self {
        HostTools::new()
    }
}

impl HostTools {
    /// A runner using the caller's `PATH` and nothing else from its environment.
    pub fn new() -> Self {
        let path = std::env::var_os("PATH").unwrap_or_else(|| {
            OsString::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        });
        HostTools { path }
    }
}

impl ToolRunner for HostTools {
    fn run(&self, call: &ToolCall) -> Result<Vec<u8>> {
        let mut command = Command::new(&call.program);
        command
            .args(&call.args)
            .env_clear()
            .env("PATH", &self.path)
            .env("LC_ALL", "C")
            .env("TZ", "UTC")
            .envs(call.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = command.output().map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ImageError::ToolMissing {
                    tool: call.program.clone(),
                    package: package_of(&call.program),
                }
            } else {
                ImageError::ToolStart {
                    tool: call.program.clone(),
                    source,
                }
            }
        })?;
        if !output.status.success() {
            return Err(ImageError::ToolFailed {
                tool: call.program.clone(),
                step: call.step.clone(),
                status: output.status.to_string(),
                stderr: tail(&output.stderr),
            });
        }
        Ok(output.stdout)
    }
}

/// The last few lines of a tool's stderr, for an error message.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(4);
    let joined = lines[start..].join(" | ");
    if joined.is_empty() {
        "no error output".to_owned()
    } else {
        joined
    }
}

/// A runner for unit tests: records every call and answers from a closure.
#[cfg(test)]
pub(crate) mod fake {
    use std::sync::Mutex;

    use super::*;

    type Answer = Box<dyn Fn(&ToolCall) -> Result<Vec<u8>> + Send + Sync>;

    pub(crate) struct RecordingTools {
        pub(crate) calls: Mutex<Vec<ToolCall>>,
        answer: Answer,
    }

    impl RecordingTools {
        pub(crate) fn new(
            answer: impl Fn(&ToolCall) -> Result<Vec<u8>> + Send + Sync + 'static,
        ) -> Self {
            RecordingTools {
                calls: Mutex::new(Vec::new()),
                answer: Box::new(answer),
            }
        }

        pub(crate) fn calls(&self) -> Vec<ToolCall> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    impl ToolRunner for RecordingTools {
        fn run(&self, call: &ToolCall) -> Result<Vec<u8>> {
            if let Ok(mut calls) = self.calls.lock() {
                calls.push(call.clone());
            }
            (self.answer)(call)
        }
    }
}

/// Paths as arguments: a helper so call sites read naturally.
pub(crate) fn path_arg(path: &std::path::Path) -> OsString {
    path.as_os_str().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_names_its_package() {
        let tools = HostTools::new();
        let err = tools
            .run(&ToolCall::new("mksquashfs-does-not-exist", "testing"))
            .err();
        assert!(
            matches!(err, Some(ImageError::ToolMissing { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn failing_tool_reports_step_and_stderr() {
        let tools = HostTools::new();
        let err = tools
            .run(&ToolCall::new("sh", "testing").args(["-c", "echo boom >&2; exit 3"]))
            .err();
        match err {
            Some(ImageError::ToolFailed { stderr, step, .. }) => {
                assert_eq!(stderr, "boom");
                assert_eq!(step, "testing");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn tools_get_a_clean_fixed_environment() {
        let tools = HostTools::new();
        let out = tools
            .run(
                &ToolCall::new("sh", "testing")
                    .env("SOURCE_DATE_EPOCH", "1234")
                    .args(["-c", "echo $TZ $LC_ALL $SOURCE_DATE_EPOCH ${HOME:-nohome}"]),
            )
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out).trim(), "UTC C 1234 nohome");
    }
}
