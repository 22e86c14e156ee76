//! RAUC's `custom` bootloader backend: an external handler program, called as
//! `HANDLER get-primary`, `HANDLER set-primary NAME`, `HANDLER get-state NAME`,
//! `HANDLER set-state NAME good|bad`, `HANDLER get-current`; answers on stdout, exit 0.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{BootState, Bootloader};
use crate::error::{Result, UpdaterError};

/// The custom backend.
#[derive(Debug)]
pub struct CustomBackend {
    handler: PathBuf,
}

impl CustomBackend {
    /// Backend calling `handler`.
    pub fn new(handler: PathBuf) -> Self {
        CustomBackend { handler }
    }

    fn call(&self, args: &[&str]) -> Result<String> {
        let output = Command::new(&self.handler)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| UpdaterError::ToolMissing {
                tool: self.handler.display().to_string(),
                source,
            })?;
        if !output.status.success() {
            return Err(crate::error::tool_failed(
                format!("{} {}", self.handler.display(), args.join(" ")),
                output.status,
                &output.stderr,
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// The handler's idea of the booted slot (`get-current`).
    pub fn current(&self) -> Result<String> {
        self.call(&["get-current"])
    }
}

impl Bootloader for CustomBackend {
    fn name(&self) -> &'static str {
        "custom"
    }

    fn primary(&mut self) -> Result<Option<String>> {
        let answer = self.call(&["get-primary"])?;
        Ok(if answer.is_empty() {
            None
        } else {
            Some(answer)
        })
    }

    fn set_primary(&mut self, bootname: &str) -> Result<()> {
        self.call(&["set-primary", bootname]).map(drop)
    }

    fn state(&mut self, bootname: &str) -> Result<BootState> {
        match self.call(&["get-state", bootname])?.as_str() {
            "good" => Ok(BootState::Good),
            "bad" => Ok(BootState::Bad),
            other => Err(UpdaterError::Bootloader {
                backend: "custom",
                message: format!("get-state answered {other:?}, expected good or bad"),
            }),
        }
    }

    fn set_state(&mut self, bootname: &str, state: BootState) -> Result<()> {
        self.call(&["set-state", bootname, state.as_str()])
            .map(drop)
    }
}
