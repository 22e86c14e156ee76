//! The canonical JSON writer behind [`crate::Plan::to_canonical_json`].
//!
//! Written by hand rather than relying on `serde_json`'s map type, whose key order depends
//! on a cargo feature (`preserve_order`) any crate in a build can switch on. Keys are sorted
//! by their UTF-8 bytes; strings and numbers use `serde_json`'s escaping and formatting.

use serde_json::Value;

const INDENT: &str = "  ";

/// Appends `value` to `out`, pretty-printed with sorted keys, at nesting `depth`.
pub fn write_value(out: &mut String, value: &Value, depth: usize) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push_str("{\n");
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                push_indent(out, depth + 1);
                out.push_str(&serde_json::to_string(key)?);
                out.push_str(": ");
                write_value(out, item, depth + 1)?;
            }
            out.push('\n');
            push_indent(out, depth);
            out.push('}');
        }
        Value::Array(items) if !items.is_empty() => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(",\n");
                }
                push_indent(out, depth + 1);
                write_value(out, item, depth + 1)?;
            }
            out.push('\n');
            push_indent(out, depth);
            out.push(']');
        }
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
        scalar => out.push_str(&serde_json::to_string(scalar)?),
    }
    Ok(())
}

fn push_indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str(INDENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_keys_at_every_level_and_escapes_strings() {
        let value =
            serde_json::json!({"b": {"z": 1, "a": [true, null]}, "a": "q\"\n", "c": {}, "d": []});
        let mut out = String::new();
        write_value(&mut out, &value, 0).unwrap();
        assert_eq!(
            out,
            "{\n  \"a\": \"q\\\"\\n\",\n  \"b\": {\n    \"a\": [\n      true,\n      null\n    ],\n    \"z\": 1\n  },\n  \"c\": {},\n  \"d\": []\n}"
        );
    }
}
