//! RAUC's GRUB backend: variables in a GRUB environment block, plus the boot-selection
//! script GRUB runs and a simulator of that script (the rollback harness uses it).
//!
//! Environment block format (GRUB `grub-editenv`): exactly 1024 bytes, starting with
//! `# GRUB Environment Block\n`, then `NAME=value\n` lines (`\` escapes `\` and newline),
//! padded with `#`.

use std::path::PathBuf;

use super::esp::EspGrubEnv;
use super::{write_atomically, BootState, Bootloader};
use crate::error::{Result, UpdaterError};

/// Size of a GRUB environment block.
pub const ENV_SIZE: usize = 1024;

/// The variable naming the slot on trial: activated by an update ([`GrubBackend::set_primary`],
/// RAUC's `mark-active`) and not confirmed since (marking it good removes the variable). GRUB
/// ignores it; the device's updater reboots a slot on trial that does not become healthy.
pub const TRIAL: &str = "TESTUDO_TRIAL";

/// The most boots a slot may get before it is abandoned (`update.boot_tries`), so a `TRY`
/// counter is one digit and the script's comparisons stay few.
pub const MAX_BOOT_TRIES: u32 = testudo_plan::plan::MAX_BOOT_TRIES;
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

    /// Removes `name`, if set.
    pub fn remove(&mut self, name: &str) {
        self.vars.retain(|(n, _)| n != name);
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

/// Where a grubenv is kept.
#[derive(Debug)]
enum EnvStore {
    /// A file (a mounted ESP, or a development host), replaced atomically.
    File(PathBuf),
    /// Inside the ESP's FAT file system, rewritten in place through the partition.
    Esp(EspGrubEnv),
}

/// The GRUB backend on a grubenv.
#[derive(Debug)]
pub struct GrubBackend {
    store: EnvStore,
    bootnames: Vec<String>,
}

impl GrubBackend {
    /// Backend on the grubenv file `path` for the configured `bootnames` (used to complete
    /// ORDER).
    pub fn new(path: PathBuf, bootnames: Vec<String>) -> Self {
        GrubBackend {
            store: EnvStore::File(path),
            bootnames,
        }
    }

    /// Backend on a grubenv inside an ESP, reached through its partition.
    pub fn on_esp(env: EspGrubEnv, bootnames: Vec<String>) -> Self {
        GrubBackend {
            store: EnvStore::Esp(env),
            bootnames,
        }
    }

    /// The grubenv as it is now.
    pub fn load(&self) -> Result<GrubEnv> {
        match &self.store {
            EnvStore::File(path) => {
                let bytes = std::fs::read(path).map_err(crate::error::read_err(path))?;
                GrubEnv::parse(&bytes)
            }
            EnvStore::Esp(esp) => esp.load(),
        }
    }

    fn store(&self, env: &GrubEnv) -> Result<()> {
        match &self.store {
            EnvStore::File(path) => write_atomically(path, &env.render()?),
            EnvStore::Esp(esp) => esp.store(env),
        }
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
        env.set(TRIAL, bootname);
        self.store(&env)
    }

    fn state(&mut self, bootname: &str) -> Result<BootState> {
        self.check(bootname)?;
        let env = self.load()?;
        // Good: marked good or activated and not booted since (a booted slot counts its try
        // until it confirms).
        let ok = env.get(&format!("{bootname}_OK")) == Some("1");
        let fresh = env.get(&format!("{bootname}_TRY")) == Some("0");
        Ok(if ok && fresh {
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
        if let Some(trial) = env.get(TRIAL).map(str::to_owned) {
            // Good: the trial is over. Bad: there is nothing left to try. A trial of another
            // slot GRUB abandoned (`OK=0`, tries used up) is over too.
            let abandoned = env.get(&format!("{trial}_OK")) != Some("1");
            if trial == bootname || abandoned {
                env.remove(TRIAL);
            }
        }
        self.store(&env)
    }
}

/// Whether `value` is a `<slot>_TRY` counter with a boot left: one of `0` .. `boot_tries - 1`,
/// written exactly as GRUB's script compares it. Anything else (used up, damaged) has none.
fn has_try_left(value: Option<&str>, boot_tries: u32) -> Option<u32> {
    let value = value?;
    (0..effective_tries(boot_tries)).find(|n| value == n.to_string())
}

/// `boot_tries` as the script uses it: at least 1, at most [`MAX_BOOT_TRIES`].
fn effective_tries(boot_tries: u32) -> u32 {
    boot_tries.clamp(1, MAX_BOOT_TRIES)
}

/// What GRUB does at power-on with this environment, as the script from
/// [`boot_selection_script`] does it, for a system whose slots get `boot_tries` boots each:
///
/// 1. The first slot in ORDER with `OK=1` and a try left (`TRY` below `boot_tries`) is booted,
///    its `TRY` counted up first. A slot marked good or activated has `TRY=0`.
/// 2. Every other slot with `OK=1` whose tries are used up is abandoned (`OK=0`): it had its
///    chances and another slot boots. This is what keeps a new slot that never confirmed
///    from being chosen again once the previous, confirmed slot is back.
/// 3. If no slot has a try left (e.g. power cut during every boot of the only good slot),
///    every slot with `OK=1` gets `TRY=0` again and the selection runs once more, so a device
///    never ends up with nothing to boot while a good slot exists. A slot abandoned in step 2
///    is not among them.
///
/// Returns the bootname, or None when no slot has OK=1. Mutates `env` as GRUB's `save_env`.
pub fn simulate_boot(env: &mut GrubEnv, boot_tries: u32) -> Option<String> {
    let order = env.order();
    let ok = |env: &GrubEnv, name: &str| env.get(&format!("{name}_OK")) == Some("1");
    let select = |env: &mut GrubEnv| {
        for name in &order {
            if !ok(env, name) {
                continue;
            }
            if let Some(used) = has_try_left(env.get(&format!("{name}_TRY")), boot_tries) {
                env.set(&format!("{name}_TRY"), &(used + 1).to_string());
                return Some(name.clone());
            }
        }
        None
    };
    let mut chosen = select(env);
    if chosen.is_none() {
        for name in &order {
            if ok(env, name) {
                env.set(&format!("{name}_TRY"), "0");
            }
        }
        chosen = select(env);
    }
    if let Some(chosen) = &chosen {
        for name in &order {
            let used_up = has_try_left(env.get(&format!("{name}_TRY")), boot_tries).is_none();
            if name != chosen && ok(env, name) && used_up {
                env.set(&format!("{name}_OK"), "0");
            }
        }
    }
    chosen
}

/// The values the boot-selection script starts from, before `load_env` overlays the grubenv's:
/// `ORDER` in slot order, the first slot good with all its tries, the others not bootable.
/// They are what GRUB uses when the grubenv cannot be read (damaged, missing): the device
/// then boots the first slot, the factory slot, instead of nothing at all.
pub fn script_defaults(bootnames: &[&str]) -> GrubEnv {
    let mut env = GrubEnv::default();
    env.set("ORDER", &bootnames.join(" "));
    for (index, name) in bootnames.iter().enumerate() {
        env.set(&format!("{name}_OK"), if index == 0 { "1" } else { "0" });
        env.set(&format!("{name}_TRY"), "0");
    }
    env
}

/// One slot in the boot-selection script.
#[derive(Debug, Clone)]
pub struct ScriptSlot<'a> {
    /// The bootname (`A`, `B`): `ORDER` names it, `<bootname>_OK` and `_TRY` are its state.
    pub bootname: &'a str,
    /// GRUB commands run when this slot is chosen (e.g. setting the partition to boot from),
    /// one per line.
    pub on_select: Vec<String>,
}

/// The GRUB script that implements [`simulate_boot`]: defaults, `load_env` of `env_file` (on
/// the current `root`), the selection with its fallback, the abandoning of used-up slots, and
/// `save_env` — all before anything is booted, so the counted try is on disk first. It sets
/// `slot` to the chosen bootname, or leaves it empty when nothing is bootable; what to boot
/// (and what to do when nothing is) follows it in the caller's script.
pub fn boot_selection_script(slots: &[ScriptSlot<'_>], env_file: &str, boot_tries: u32) -> String {
    let tries = effective_tries(boot_tries);
    let names: Vec<&str> = slots.iter().map(|slot| slot.bootname).collect();
    let mut script = String::new();
    for (name, value) in &script_defaults(&names).vars {
        script.push_str(&format!("set {name}=\"{value}\"\n"));
    }
    script.push_str(&format!("load_env -f {env_file}\n"));
    script.push_str("set slot=\"\"\n");
    push_selection(&mut script, slots, tries);
    script.push_str("if [ -z \"$slot\" ]; then\n");
    for name in &names {
        script.push_str(&format!(
            "  if [ \"${name}_OK\" = \"1\" ]; then set {name}_TRY=0; fi\n"
        ));
    }
    script.push_str("fi\n");
    push_selection(&mut script, slots, tries);
    for name in &names {
        let used_up: Vec<String> = (0..tries)
            .map(|n| format!("-a \"${name}_TRY\" != \"{n}\""))
            .collect();
        script.push_str(&format!(
            "if [ -n \"$slot\" -a \"$slot\" != \"{name}\" -a \"${name}_OK\" = \"1\" {} ]; then set {name}_OK=0; fi\n",
            used_up.join(" ")
        ));
    }
    let vars: Vec<String> = names
        .iter()
        .flat_map(|n| [format!("{n}_OK"), format!("{n}_TRY")])
        .collect();
    script.push_str(&format!(
        "save_env -f {env_file} ORDER {}\n",
        vars.join(" ")
    ));
    script
}

/// Appends the loop that picks the first slot in `ORDER` with `OK=1` and a try left, counts
/// the try and runs the slot's `on_select`. Does nothing once `slot` is set.
fn push_selection(script: &mut String, slots: &[ScriptSlot<'_>], tries: u32) {
    script.push_str("for s in $ORDER; do\n");
    for slot in slots {
        let name = slot.bootname;
        script.push_str(&format!(
            "  if [ -z \"$slot\" -a \"$s\" = \"{name}\" -a \"${name}_OK\" = \"1\" ]; then\n"
        ));
        for n in 0..tries {
            let keyword = if n == 0 { "if" } else { "elif" };
            script.push_str(&format!(
                "    {keyword} [ \"${name}_TRY\" = \"{n}\" ]; then set {name}_TRY={}; set slot={name}\n",
                n + 1
            ));
        }
        script.push_str("    fi\n");
        if !slot.on_select.is_empty() {
            script.push_str(&format!("    if [ \"$slot\" = \"{name}\" ]; then\n"));
            for line in &slot.on_select {
                script.push_str(&format!("      {line}\n"));
            }
            script.push_str("    fi\n");
        }
        script.push_str("  fi\n");
    }
    script.push_str("done\n");
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
    fn a_new_slot_gets_its_tries_then_the_previous_slot_boots_and_it_is_abandoned() {
        let mut env = GrubEnv::initial(&["A", "B"]);
        env.set("ORDER", "B A");
        for try_number in 1..=3 {
            assert_eq!(simulate_boot(&mut env, 3).as_deref(), Some("B"));
            assert_eq!(env.get("B_TRY"), Some(try_number.to_string().as_str()));
        }
        // B never confirmed: A boots and B is abandoned.
        assert_eq!(simulate_boot(&mut env, 3).as_deref(), Some("A"));
        assert_eq!(env.get("B_OK"), Some("0"));
        // A does not confirm either (power cut three times): it still boots, B never again.
        for _ in 0..5 {
            assert_eq!(simulate_boot(&mut env, 3).as_deref(), Some("A"));
        }
    }

    #[test]
    fn confirming_the_slot_grub_fell_back_to_ends_the_abandoned_slots_trial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grubenv");
        std::fs::write(&path, GrubEnv::initial(&["A", "B"]).render().unwrap()).unwrap();
        let mut backend = GrubBackend::new(path, vec!["A".into(), "B".into()]);
        backend.set_primary("B").unwrap();
        let mut env = backend.load().unwrap();
        while simulate_boot(&mut env, 2).as_deref() == Some("B") {}
        backend.store(&env).unwrap();
        assert_eq!(backend.load().unwrap().get(TRIAL), Some("B"));
        backend.set_state("A", BootState::Good).unwrap();
        let env = backend.load().unwrap();
        assert_eq!(env.get(TRIAL), None);
        assert_eq!(env.get("B_OK"), Some("0"));

        // A trial still under way is kept when the other slot is marked.
        backend.set_primary("B").unwrap();
        backend.set_state("A", BootState::Good).unwrap();
        assert_eq!(backend.load().unwrap().get(TRIAL), Some("B"));
    }

    #[test]
    fn a_used_up_good_slot_gets_another_try_rather_than_nothing() {
        let mut env = GrubEnv::initial(&["A", "B"]);
        env.set("B_OK", "0");
        assert_eq!(simulate_boot(&mut env, 1).as_deref(), Some("A"));
        // Power cut before A confirmed: A_TRY=1, B abandoned. A boots again.
        assert_eq!(simulate_boot(&mut env, 1).as_deref(), Some("A"));
        env.set("A_OK", "0");
        assert_eq!(simulate_boot(&mut env, 1), None);
    }

    #[test]
    fn an_unreadable_grubenv_boots_the_first_slot_not_nothing() {
        let mut env = script_defaults(&["A", "B"]);
        assert_eq!(simulate_boot(&mut env, 3).as_deref(), Some("A"));
        let slots = ["A", "B"].map(|bootname| ScriptSlot {
            bootname,
            on_select: Vec::new(),
        });
        let script = boot_selection_script(&slots, "/grubenv", 3);
        let load = script.find("load_env").unwrap();
        let defaults =
            "set ORDER=\"A B\"\nset A_OK=\"1\"\nset A_TRY=\"0\"\nset B_OK=\"0\"\nset B_TRY=\"0\"\n";
        assert_eq!(script.find(defaults), Some(0), "{script}");
        assert!(defaults.len() <= load);
    }

    #[test]
    fn a_damaged_counter_counts_as_used_up() {
        let mut env = GrubEnv::initial(&["A", "B"]);
        env.set("A_TRY", "01");
        assert_eq!(simulate_boot(&mut env, 3).as_deref(), Some("B"));
        assert_eq!(env.get("A_OK"), Some("0"));
    }

    /// Model check of the rules over every sequence of up to 9 events from a fresh device —
    /// power-on (GRUB, then the booted system confirms or not), an update of the other slot
    /// (`mark-active`) while the booted slot is confirmed — with a ghost record of which slots
    /// proved healthy since they were last written:
    /// - a slot that never confirmed since it was written is not booted once its tries are
    ///   used up while a confirmed slot exists;
    /// - something always boots while a confirmed slot exists.
    #[test]
    fn an_unconfirmed_slot_is_never_preferred_over_a_confirmed_one() {
        #[derive(Clone)]
        struct World {
            env: GrubEnv,
            confirmed: [bool; 2],
            booted: Option<usize>,
            tries_since_written: [u32; 2],
        }
        let index = |name: &str| usize::from(name == "B");
        let names = ["A", "B"];
        for boot_tries in [1, 3] {
            let mut fresh_env = GrubEnv::initial(&["A", "B"]);
            fresh_env.set("B_OK", "0");
            let mut frontier = vec![World {
                env: fresh_env,
                confirmed: [true, false],
                booted: None,
                tries_since_written: [0, 0],
            }];
            for _depth in 0..9 {
                let mut next = Vec::new();
                for world in frontier {
                    // Power-on, then the system confirms (healthy) or not (broken / power cut).
                    for healthy in [true, false] {
                        let mut w = world.clone();
                        let booted = simulate_boot(&mut w.env, boot_tries);
                        let any_confirmed = w.confirmed.iter().any(|c| *c);
                        assert!(booted.is_some() || !any_confirmed, "nothing boots");
                        let Some(name) = booted else { continue };
                        let slot = index(&name);
                        w.tries_since_written[slot] += 1;
                        if !w.confirmed[slot] && any_confirmed {
                            assert!(
                                w.tries_since_written[slot] <= boot_tries,
                                "unconfirmed {name} booted beyond its {boot_tries} tries"
                            );
                        }
                        if healthy && w.confirmed[slot] {
                            // An old, confirmed slot confirms again.
                            w.env.set(&format!("{name}_TRY"), "0");
                        } else if healthy && w.tries_since_written[slot] <= boot_tries {
                            w.env.set(&format!("{name}_TRY"), "0");
                            w.confirmed[slot] = true;
                        }
                        w.booted = Some(slot);
                        next.push(w);
                    }
                    // An update written to the other slot and activated, from a confirmed boot.
                    if let Some(slot) = world.booted {
                        let booted_name = names[slot];
                        if world.confirmed[slot]
                            && world.env.get(&format!("{booted_name}_TRY")) == Some("0")
                        {
                            let other = 1 - slot;
                            let mut w = world.clone();
                            w.env
                                .set("ORDER", &format!("{} {}", names[other], booted_name));
                            w.env.set(&format!("{}_OK", names[other]), "1");
                            w.env.set(&format!("{}_TRY", names[other]), "0");
                            w.confirmed[other] = false;
                            w.tries_since_written[other] = 0;
                            next.push(w);
                        }
                    }
                }
                frontier = next;
            }
        }
    }

    #[test]
    fn script_lists_every_slot_and_saves_the_env() {
        let slots = [
            ScriptSlot {
                bootname: "A",
                on_select: vec!["set part=gpt2".into()],
            },
            ScriptSlot {
                bootname: "B",
                on_select: Vec::new(),
            },
        ];
        let script = boot_selection_script(&slots, "/grubenv", 2);
        assert!(script.contains("load_env -f /grubenv\n"));
        assert!(script.contains("elif [ \"$B_TRY\" = \"1\" ]; then set B_TRY=2; set slot=B\n"));
        assert!(script.contains("    if [ \"$slot\" = \"A\" ]; then\n      set part=gpt2\n"));
        assert!(script.contains("save_env -f /grubenv ORDER A_OK A_TRY B_OK B_TRY\n"));
    }
}
