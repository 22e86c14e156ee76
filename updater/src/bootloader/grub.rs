//! RAUC's GRUB backend: variables in a GRUB environment block, plus the boot-selection
//! script GRUB runs and a simulator of that script (the rollback harness uses it).
//!
//! Environment block format (GRUB `grub-editenv`): exactly 1024 bytes, starting with
//! `# GRUB Environment Block\n`, then `NAME=value\n` lines (`\` escapes `\` and newline),
//! padded with `#`.

use std::path::PathBuf;

use super::{write_atomically, BootState, Bootloader};
use crate::error::{Result, UpdaterError};

/// Size of a GRUB environment block.
pub const ENV_SIZE: usize = 1024;
const HEADER: &str = "# GRUB Environment Block\n";

fn bad(message: impl Into<String>) -> UpdaterError {
    UpdaterError::Bootloader {
        backend: "grub",
        message: message.into(),
    }
}

/// The variables of a grubenv, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrubEnv {
    /// `(name, value)` pairs.
    pub vars: Vec<(String, String)>,
}

impl GrubEnv {
    /// Parses a grubenv block.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let rest = bytes
            .strip_prefix(HEADER.as_bytes())
            .ok_or_else(|| bad("not a GRUB environment block (bad header)"))?;
        let mut vars = Vec::new();
        let mut i = 0;
        while i < rest.len() {
            if rest[i] == b'#' {
                // Padding (or a comment line): skip to the end of the line.
                while i < rest.len() && rest[i] != b'\n' {
                    i += 1;
                }
                i += 1;
                continue;
            }
            if rest[i] == b'\n' {
                i += 1;
                continue;
            }
            let mut line = Vec::new();
            while i < rest.len() && rest[i] != b'\n' {
                if rest[i] == b'\\' && i + 1 < rest.len() {
                    i += 1;
                }
                line.push(rest[i]);
                i += 1;
            }
            i += 1;
            let line = String::from_utf8(line).map_err(|_| bad("variable is not UTF-8"))?;
            let (name, value) = line
                .split_once('=')
                .ok_or_else(|| bad(format!("line without '=': {line:?}")))?;
            vars.push((name.to_string(), value.to_string()));
        }
        Ok(GrubEnv { vars })
    }

    /// Renders the 1024-byte block.
    pub fn render(&self) -> Result<Vec<u8>> {
        let mut out = HEADER.as_bytes().to_vec();
        for (name, value) in &self.vars {
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            for byte in value.bytes() {
                if byte == b'\\' || byte == b'\n' {
                    out.push(b'\\');
                }
                out.push(byte);
            }
            out.push(b'\n');
        }
        if out.len() > ENV_SIZE {
            return Err(bad("variables do not fit in 1024 bytes"));
        }
        out.resize(ENV_SIZE, b'#');
        Ok(out)
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` (in place, or appended).
    pub fn set(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(var) => var.1 = value.to_string(),
            None => self.vars.push((name.to_string(), value.to_string())),
        }
    }

    /// ORDER as a list.
    pub fn order(&self) -> Vec<String> {
        self.get("ORDER")
            .map(|o| o.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The initial environment for slots `bootnames`: ORDER in the given order, every slot
    /// OK=1 TRY=0 (what an image ships).
    pub fn initial(bootnames: &[&str]) -> Self {
        let mut env = GrubEnv::default();
        env.set("ORDER", &bootnames.join(" "));
        for name in bootnames {
            env.set(&format!("{name}_OK"), "1");
            env.set(&format!("{name}_TRY"), "0");
        }
        env
    }
}

/// The GRUB backend on a grubenv file.
#[derive(Debug)]
pub struct GrubBackend {
    path: PathBuf,
    bootnames: Vec<String>,
}

impl GrubBackend {
    /// Backend on `path` for the configured `bootnames` (used to complete ORDER).
    pub fn new(path: PathBuf, bootnames: Vec<String>) -> Self {
        GrubBackend { path, bootnames }
    }

    fn load(&self) -> Result<GrubEnv> {
        let bytes = std::fs::read(&self.path).map_err(crate::error::read_err(&self.path))?;
        GrubEnv::parse(&bytes)
    }

    fn store(&self, env: &GrubEnv) -> Result<()> {
        write_atomically(&self.path, &env.render()?)
    }

    fn check(&self, bootname: &str) -> Result<()> {
        if !self.bootnames.iter().any(|b| b == bootname) || bootname.contains(char::is_whitespace) {
            return Err(bad(format!("unknown bootname {bootname:?}")));
        }
        Ok(())
    }
}

impl Bootloader for GrubBackend {
    fn name(&self) -> &'static str {
        "grub"
    }

    fn primary(&mut self) -> Result<Option<String>> {
        let env = self.load()?;
        Ok(env.order().into_iter().find(|name| {
            env.get(&format!("{name}_OK")) == Some("1")
                && env.get(&format!("{name}_TRY")) == Some("0")
        }))
    }

    fn set_primary(&mut self, bootname: &str) -> Result<()> {
        self.check(bootname)?;
        let mut env = self.load()?;
        let mut order = vec![bootname.to_string()];
        for name in env
            .order()
            .into_iter()
            .chain(self.bootnames.iter().cloned())
        {
            if !order.contains(&name) {
                order.push(name);
            }
        }
        env.set("ORDER", &order.join(" "));
        env.set(&format!("{bootname}_OK"), "1");
        env.set(&format!("{bootname}_TRY"), "0");
        self.store(&env)
    }

    fn state(&mut self, bootname: &str) -> Result<BootState> {
        self.check(bootname)?;
        let env = self.load()?;
        let ok = env.get(&format!("{bootname}_OK")) == Some("1");
        let tried = env.get(&format!("{bootname}_TRY")) == Some("1");
        Ok(if ok && !tried {
            BootState::Good
        } else {
            BootState::Bad
        })
    }

    fn set_state(&mut self, bootname: &str, state: BootState) -> Result<()> {
        self.check(bootname)?;
        let mut env = self.load()?;
        let ok = match state {
            BootState::Good => "1",
            BootState::Bad => "0",
        };
        env.set(&format!("{bootname}_OK"), ok);
        env.set(&format!("{bootname}_TRY"), "0");
        self.store(&env)
    }
}

/// What GRUB does at power-on with this environment, as the script from
/// [`boot_selection_script`]: the first slot in ORDER with OK=1 and TRY=0 gets TRY=1 and is
/// booted. If no slot qualifies (e.g. power was cut while the only good slot was booting,
/// before it confirmed), every slot with OK=1 gets TRY=0 again and the selection is repeated
/// once, so a device never ends up with nothing to boot while a good slot exists.
/// Returns the bootname, or None when no slot has OK=1. Mutates `env` as GRUB's `save_env`.
pub fn simulate_boot(env: &mut GrubEnv) -> Option<String> {
    for round in 0..2 {
        for name in env.order() {
            let ok = env.get(&format!("{name}_OK")) == Some("1");
            let fresh = env.get(&format!("{name}_TRY")) == Some("0");
            if ok && fresh {
                env.set(&format!("{name}_TRY"), "1");
                return Some(name);
            }
        }
        if round == 0 {
            for name in env.order() {
                if env.get(&format!("{name}_OK")) == Some("1") {
                    env.set(&format!("{name}_TRY"), "0");
                }
            }
        }
    }
    None
}

/// The grub.cfg fragment that implements [`simulate_boot`]; it expects `menuentry`s whose
/// `--id` is `slot-<bootname>`, reads and saves the grubenv at `env_file` (on the current
/// `root`), and sets `default`. Slots are listed by bootname.
pub fn boot_selection_script(bootnames: &[&str], env_file: &str) -> String {
    let mut script = String::new();
    script.push_str(&format!("set ORDER=\"{}\"\n", bootnames.join(" ")));
    for name in bootnames {
        script.push_str(&format!("set {name}_OK=0\nset {name}_TRY=0\n"));
    }
    script.push_str(&format!("load_env -f {env_file}\n"));
    script.push_str("set default=\"\"\n");
    let select = |script: &mut String| {
        script.push_str("for SLOT in $ORDER; do\n");
        for name in bootnames {
            script.push_str(&format!(
                "  if [ \"$default\" = \"\" -a \"$SLOT\" = \"{name}\" ]; then\n    if [ \"${name}_OK\" = \"1\" -a \"${name}_TRY\" = \"0\" ]; then\n      set {name}_TRY=1\n      set default=slot-{name}\n    fi\n  fi\n"
            ));
        }
        script.push_str("done\n");
    };
    select(&mut script);
    script.push_str("if [ \"$default\" = \"\" ]; then\n");
    for name in bootnames {
        script.push_str(&format!(
            "  if [ \"${name}_OK\" = \"1\" ]; then set {name}_TRY=0; fi\n"
        ));
    }
    script.push_str("fi\n");
    select(&mut script);
    let vars: Vec<String> = bootnames
        .iter()
        .flat_map(|n| [format!("{n}_OK"), format!("{n}_TRY")])
        .collect();
    script.push_str(&format!(
        "save_env -f {env_file} ORDER {}\n",
        vars.join(" ")
    ));
    script.push_str("if [ \"$default\" = \"\" ]; then\n  echo \"testudo: no bootable slot\"\n  sleep 5\n  reboot\nfi\n");
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_1024_bytes_and_parses_back() {
        let env = GrubEnv::initial(&["A", "B"]);
        let bytes = env.render().unwrap();
        assert_eq!(bytes.len(), ENV_SIZE);
        assert!(bytes.starts_with(b"# GRUB Environment Block\nORDER=A B\nA_OK=1\nA_TRY=0\n"));
        assert_eq!(GrubEnv::parse(&bytes).unwrap(), env);
    }

    #[test]
    fn one_try_then_fall_back() {
        let mut env = GrubEnv::initial(&["A", "B"]);
        env.set("ORDER", "B A");
        env.set("B_OK", "1");
        env.set("B_TRY", "0");
        assert_eq!(simulate_boot(&mut env).as_deref(), Some("B"));
        // B was not marked good: next boot falls back to A.
        assert_eq!(simulate_boot(&mut env).as_deref(), Some("A"));
    }

    #[test]
    fn a_used_up_good_slot_gets_another_try_rather_than_nothing() {
        let mut env = GrubEnv::initial(&["A", "B"]);
        env.set("B_OK", "0");
        assert_eq!(simulate_boot(&mut env).as_deref(), Some("A"));
        // Power cut before A confirmed: A_TRY=1, B abandoned. A boots again.
        assert_eq!(simulate_boot(&mut env).as_deref(), Some("A"));
        env.set("A_OK", "0");
        assert_eq!(simulate_boot(&mut env), None);
    }

    #[test]
    fn script_lists_every_slot_and_saves_the_env() {
        let script = boot_selection_script(&["A", "B"], "/grubenv");
        assert!(script.contains("load_env -f /grubenv\n"));
        assert!(script.contains("set default=slot-B\n"));
        assert!(script.contains("save_env -f /grubenv ORDER A_OK A_TRY B_OK B_TRY\n"));
    }
}
