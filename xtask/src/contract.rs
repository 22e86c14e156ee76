//! `cargo xtask test`'s device-contract check: no device path, component variable or
//! interface name of `testudo_plan` (the contract crate, `plan/`) is spelled as a string
//! literal in the production code of another crate. Such a literal is a second definition
//! of something the builder and the device must agree on; the check names the constant to
//! use instead.
//!
//! What is scanned: every tracked `*.rs` file outside `plan/`, except test code (files under
//! `tests/`, `benches/`, `fuzz/`, and everything from a file's first `#[cfg(test)]` on, where
//! the unit tests live by convention). What counts, per string literal (raw strings too):
//! - a contract **path** (`layout::all`): the literal is the path or lies under it (`P/...`),
//!   or, for paths of two or more components, contains it anywhere (format strings and
//!   scripts) or is its relative form inside an image (`usr/lib/testudo...`);
//! - a contract **word** (`layout::all_words`: kernel command-line words) or **variable**
//!   (`env::ALL`): the literal contains it; a file or binary **name** (`layout::all_names`):
//!   the literal is the name;
//! - an **interface** name (`interfaces::ALL`): the literal is the name and is compared,
//!   matched or looked up as an interface or route (`== "log"`, `"log" =>`, `take("log")`,
//!   `interface: "log"`, `daemon::main("log"`) — the short words themselves occur in many
//!   unrelated places (JSON keys, subcommands).

use std::path::Path;

use anyhow::{bail, Context};

use crate::util;

/// One literal that spells a contract item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// File, relative to the workspace root.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// The literal's text (without quotes).
    pub literal: String,
    /// The contract constant to use instead.
    pub constant: String,
}

/// Runs the check on the tracked files of the workspace; fails listing every finding.
pub fn check() -> anyhow::Result<()> {
    let root = util::workspace_root();
    let rules = Rules::from_contract();
    let mut findings = Vec::new();
    for file in util::tracked_files(&["*.rs"])? {
        if !is_production_source(&file) {
            continue;
        }
        let text =
            std::fs::read_to_string(root.join(&file)).with_context(|| format!("reading {file}"))?;
        findings.extend(rules.scan(&file, &text));
    }
    if findings.is_empty() {
        eprintln!("device contract: no contract literal outside plan/");
        return Ok(());
    }
    for finding in &findings {
        eprintln!(
            "{}:{}: \"{}\" spells {} (use the constant from testudo_plan)",
            finding.file, finding.line, finding.literal, finding.constant
        );
    }
    bail!(
        "{} literal(s) of the device contract outside the contract crate",
        findings.len()
    )
}

/// Whether `file` (relative to the workspace root) is production code of a crate other than
/// the contract crate.
fn is_production_source(file: &str) -> bool {
    let path = Path::new(file);
    let in_dir = |name: &str| path.components().any(|c| c.as_os_str() == name);
    !(file.starts_with("plan/")
        || file.starts_with("xtask/")
        || in_dir("tests")
        || in_dir("benches")
        || in_dir("fuzz"))
}

/// The contract items and how each is recognised.
#[derive(Debug)]
struct Rules {
    paths: Vec<(String, &'static str)>,
    /// Distinctive names, found anywhere inside a literal.
    words: Vec<(String, &'static str)>,
    /// File and binary names, found as whole literals only (log prefixes such as
    /// `testudo-init: ...` are not the binary's path).
    names: Vec<(String, &'static str)>,
    interfaces: Vec<(String, &'static str)>,
}

impl Rules {
    fn from_contract() -> Rules {
        let named = |items: Vec<(&'static str, &'static str)>| -> Vec<(String, &'static str)> {
            items
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect()
        };
        // The most specific path first, so a finding names the deepest constant it spells.
        let mut paths = named(testudo_plan::layout::all());
        paths.sort_by_key(|(_, path)| std::cmp::Reverse(path.len()));
        Rules {
            paths,
            words: named(
                testudo_plan::layout::all_words()
                    .into_iter()
                    .chain(testudo_plan::env::ALL.iter().map(|v| ("env::*", *v)))
                    .collect(),
            ),
            names: named(testudo_plan::layout::all_names()),
            interfaces: testudo_plan::interfaces::ALL
                .iter()
                .map(|name| (format!("interfaces::{}", name.to_uppercase()), *name))
                .collect(),
        }
    }

    /// Every finding in `text`, the contents of `file`.
    fn scan(&self, file: &str, text: &str) -> Vec<Finding> {
        let production = text.find("#[cfg(test)]").map_or(text, |end| &text[..end]);
        let mut findings = Vec::new();
        for literal in string_literals(production) {
            let found = |constant: &str| Finding {
                file: file.to_owned(),
                line: literal.line,
                literal: literal.text.to_owned(),
                constant: constant.to_owned(),
            };
            if let Some((constant, _)) = self
                .paths
                .iter()
                .find(|(_, path)| spells_path(literal.text, path))
            {
                findings.push(found(constant));
            } else if let Some((constant, _)) = self
                .words
                .iter()
                .find(|(_, word)| literal.text.contains(*word))
                .or_else(|| self.names.iter().find(|(_, name)| literal.text == *name))
            {
                findings.push(found(constant));
            } else if let Some((constant, _)) = self.interfaces.iter().find(|(_, name)| {
                literal.text == *name && used_as_interface(literal.before, literal.after)
            }) {
                findings.push(found(constant));
            }
        }
        findings
    }
}

/// Whether `literal` spells the contract path `path` (see the module docs).
fn spells_path(literal: &str, path: &str) -> bool {
    let under = |base: &str| literal == base || literal.starts_with(&format!("{base}/"));
    let components = path.split('/').filter(|c| !c.is_empty()).count();
    under(path)
        || (components >= 2 && (literal.contains(path) || under(path.trim_start_matches('/'))))
}

/// Whether a literal between `before` and `after` (the source text around it) is compared,
/// matched or looked up as an interface or a route name.
fn used_as_interface(before: &str, after: &str) -> bool {
    let before = before.trim_end();
    let after = after.trim_start();
    before.ends_with("==")
        || before.ends_with("!=")
        || before.ends_with("take(")
        || before.ends_with("interface:")
        || before.ends_with("daemon::main(")
        || after.starts_with("=>")
        || after.starts_with("==")
}

/// A string literal in source text.
#[derive(Debug)]
struct Literal<'a> {
    text: &'a str,
    line: usize,
    /// Up to 40 bytes of source before the opening quote.
    before: &'a str,
    /// Up to 40 bytes of source after the closing quote.
    after: &'a str,
}

/// The string literals of Rust source `text` (plain and raw), skipping comments and char
/// literals. A lexer good enough for the check, not a Rust parser.
fn string_literals(text: &str) -> Vec<Literal<'_>> {
    let bytes = text.as_bytes();
    let mut literals = Vec::new();
    let mut i = 0;
    let line_at = |at: usize| text[..at].bytes().filter(|b| *b == b'\n').count() + 1;
    let context = |from: usize, to: usize| {
        let from = floor_char(text, from);
        let to = floor_char(text, to.min(text.len()));
        &text[from..to]
    };
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = text[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |n| i + 2 + n + 2);
            }
            b'\'' => {
                // A char literal ('x', '\n', '\'') or a lifetime ('a): skip just past it.
                let rest = &bytes[i + 1..];
                i += match rest {
                    [b'\\', _, ..] => rest
                        .iter()
                        .skip(2)
                        .position(|b| *b == b'\'')
                        .map_or(1, |n| n + 4),
                    [_, b'\'', ..] => 3,
                    _ => 1,
                };
            }
            b'r' if matches!(bytes.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric() && bytes[i - 1] != b'_') =>
            {
                let hashes = bytes[i + 1..].iter().take_while(|b| **b == b'#').count();
                let open = i + 1 + hashes;
                if bytes.get(open) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let start = open + 1;
                let end = text[start..]
                    .find(&close)
                    .map_or(bytes.len(), |n| start + n);
                literals.push(Literal {
                    text: &text[start..end],
                    line: line_at(start),
                    before: context(i.saturating_sub(40), i),
                    after: context(end + close.len(), end + close.len() + 40),
                });
                i = end + close.len();
            }
            b'"' => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end] != b'"' {
                    end += if bytes[end] == b'\\' { 2 } else { 1 };
                }
                let end = end.min(bytes.len());
                literals.push(Literal {
                    text: &text[start..end],
                    line: line_at(start),
                    before: context(i.saturating_sub(40), i),
                    after: context(end + 1, end + 41),
                });
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    literals
}

/// The largest char boundary of `text` at or below `at`.
fn floor_char(text: &str, at: usize) -> usize {
    (0..=at.min(text.len()))
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Vec<(usize, String, String)> {
        Rules::from_contract()
            .scan("src/x.rs", text)
            .into_iter()
            .map(|f| (f.line, f.literal, f.constant))
            .collect()
    }

    #[test]
    fn paths_variables_and_interface_uses_are_found() {
        let found = scan(
            "fn f() {\n\
             let a = \"/etc/testudo/plan.json\";\n\
             let b = format!(\"linux {x}/boot/vmlinuz quiet\");\n\
             let c = \"usr/lib/testudo\";\n\
             let d = \"/data/rauc/central.raucs\";\n\
             env.push((\"TESTUDO_CLOUD_HUB\".into(), hub));\n\
             if route.interface == \"storage\" {}\n\
             match i { \"net\" => 1, _ => 2 };\n\
             handles.take(\"tpm\");\n\
             let e = r#\"root=PARTLABEL=$l testudo.slot=$s\"#;\n\
             }\n",
        );
        let lines: Vec<usize> = found.iter().map(|f| f.0).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6, 7, 8, 9, 10], "{found:?}");
        assert_eq!(found[0].2, "layout::rootfs::PLAN");
        assert_eq!(found[4].2, "env::*");
        assert_eq!(found[5].2, "interfaces::STORAGE");
    }

    #[test]
    fn unrelated_words_comments_and_tests_are_not_findings() {
        let found = scan(
            "// see /etc/testudo/plan.json\n\
             /* \"/usr/lib/testudo\" */\n\
             fn f() { json!({\"identity\": id, \"log\": 1}); let c = 'x'; let s = \"/database\"; }\n\
             #[cfg(test)]\n\
             mod tests { const P: &str = \"/etc/testudo/plan.json\"; }\n",
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn test_code_and_the_contract_crate_are_not_scanned() {
        for file in [
            "plan/src/layout.rs",
            "os/init/tests/plan_format.rs",
            "os/agent/benches/fleet.rs",
            "updater/fuzz/fuzz_targets/bundle.rs",
        ] {
            assert!(!is_production_source(file), "{file}");
        }
        assert!(is_production_source("os/init/src/launch.rs"));
    }
}
