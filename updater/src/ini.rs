//! The GLib key-file dialect RAUC uses for `manifest.raucm`, `system.conf` and its status
//! file: `[group]` headers, `key=value` lines, `#` comments. Order is kept (no hash maps), so
//! rendering is deterministic. Values use GLib's escapes (`\s \n \t \r \\`).

use crate::error::{Result, UpdaterError};

/// One `[group]` with its entries in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The name between the brackets.
    pub name: String,
    /// `(key, unescaped value)` pairs in file order.
    pub entries: Vec<(String, String)>,
}

impl Group {
    /// A new empty group.
    pub fn new(name: impl Into<String>) -> Self {
        Group {
            name: name.into(),
            entries: Vec::new(),
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` (replacing an existing value in place, else appending).
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key.to_string(), value)),
        }
    }

    /// Appends `key=value` only when `value` is `Some`.
    pub fn set_opt(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.set(key, value);
        }
    }
}

/// A whole key file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFile {
    /// Groups in file order.
    pub groups: Vec<Group>,
}

impl KeyFile {
    /// Parses `text`; `what` names the document in errors. Duplicate groups or keys, lines
    /// outside a group and NUL bytes are rejected (GLib would merge or ignore them).
    pub fn parse(text: &str, what: &str) -> Result<Self> {
        let err = |line: usize, message: &str| UpdaterError::ParseIni {
            what: what.to_string(),
            line,
            message: message.to_string(),
        };
        let mut groups: Vec<Group> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            if raw.contains('\0') {
                return Err(err(number, "contains a NUL byte"));
            }
            let line = raw.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let name = rest
                    .trim_end()
                    .strip_suffix(']')
                    .ok_or_else(|| err(number, "group header without closing ']'"))?;
                if name.is_empty() || name.contains(['[', ']']) {
                    return Err(err(number, "invalid group name"));
                }
                if groups.iter().any(|g| g.name == name) {
                    return Err(err(number, &format!("duplicate group [{name}]")));
                }
                groups.push(Group::new(name));
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| err(number, "expected key=value"))?;
            let key = key.trim_end();
            if key.is_empty() {
                return Err(err(number, "empty key"));
            }
            let group = groups
                .last_mut()
                .ok_or_else(|| err(number, "key outside of any [group]"))?;
            if group.get(key).is_some() {
                return Err(err(number, &format!("duplicate key {key:?}")));
            }
            let value = unescape(value.trim_start())
                .ok_or_else(|| err(number, "invalid escape sequence in value"))?;
            group.entries.push((key.to_string(), value));
        }
        Ok(KeyFile { groups })
    }

    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The group called `name`, created at the end if missing.
    pub fn group_mut(&mut self, name: &str) -> &mut Group {
        let position = match self.groups.iter().position(|g| g.name == name) {
            Some(position) => position,
            None => {
                self.groups.push(Group::new(name));
                self.groups.len() - 1
            }
        };
        &mut self.groups[position]
    }

    /// Renders in GLib's layout: groups separated by one blank line, values escaped.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (index, group) in self.groups.iter().enumerate() {
            if index > 0 {
                out.push('\n');
            }
            out.push('[');
            out.push_str(&group.name);
            out.push_str("]\n");
            for (key, value) in &group.entries {
                out.push_str(key);
                out.push('=');
                out.push_str(&escape(value));
                out.push('\n');
            }
        }
        out
    }
}

fn unescape(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            's' => out.push(' '),
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '\\' => out.push('\\'),
            // GLib keeps unknown escapes for list separators; we accept `\;` and `\,`.
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            _ => return None,
        }
    }
    Some(out)
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (index, c) in value.chars().enumerate() {
        match c {
            ' ' if index == 0 => out.push_str("\\s"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_order_with_escapes() {
        let text = "# c\n[update]\ncompatible = x\ndescription=\\sa\\nb\n\n[b]\nk=v\n";
        let file = KeyFile::parse(text, "t").unwrap();
        assert_eq!(file.groups[0].get("compatible"), Some("x"));
        assert_eq!(file.groups[0].get("description"), Some(" a\nb"));
        let again = KeyFile::parse(&file.render(), "t").unwrap();
        assert_eq!(file, again);
        assert_eq!(
            file.render(),
            "[update]\ncompatible=x\ndescription=\\sa\\nb\n\n[b]\nk=v\n"
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "k=v\n",
            "[a\n",
            "[a]\nnovalue\n",
            "[a]\n[a]\n",
            "[a]\nk=1\nk=2\n",
            "[a]\nk=\\q\n",
        ] {
            assert!(KeyFile::parse(bad, "t").is_err(), "{bad:?}");
        }
    }
}
