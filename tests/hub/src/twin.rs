//! Device twins: desired and reported property documents with `$version` and `$metadata`,
//! JSON merge-patch semantics (`null` deletes), and IoT Hub's limits (32 KB per document,
//! nesting depth 10). Every update is all-or-nothing: a rejected patch changes nothing.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::TwinError;

/// Largest desired or reported document, in bytes of compact JSON (IoT Hub: 32 KB).
pub const MAX_DOCUMENT_SIZE: usize = 32 * 1024;
/// Deepest nesting of objects/arrays below a properties document (IoT Hub: 10).
pub const MAX_DEPTH: usize = 10;

/// One properties document (desired or reported).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Properties {
    /// The property values (no `$` keys).
    pub values: Map<String, Value>,
    /// `$version`: incremented by every accepted patch.
    pub version: u64,
    /// `$metadata` tree: `$lastUpdated` (and for desired `$lastUpdatedVersion`) per key.
    pub metadata: Map<String, Value>,
}

impl Properties {
    /// The document as IoT Hub shows it to a device: values plus `$version`.
    pub fn device_view(&self) -> Value {
        let mut doc = self.values.clone();
        doc.insert("$version".into(), json!(self.version));
        Value::Object(doc)
    }

    /// The document as the service API shows it: values, `$metadata` and `$version`.
    pub fn service_view(&self) -> Value {
        let mut doc = self.values.clone();
        doc.insert("$metadata".into(), Value::Object(self.metadata.clone()));
        doc.insert("$version".into(), json!(self.version));
        Value::Object(doc)
    }

    /// Applies a merge patch; returns the new `$version`. `with_version` records
    /// `$lastUpdatedVersion` in the metadata (desired properties do, reported do not).
    pub fn apply_patch(
        &mut self,
        patch: &Map<String, Value>,
        now: &str,
        with_version: bool,
    ) -> Result<u64, TwinError> {
        let version = self.version + 1;
        let mut values = self.values.clone();
        let mut metadata = self.metadata.clone();
        let stamp = Stamp {
            now,
            version: with_version.then_some(version),
        };
        merge(&mut values, &mut metadata, patch, &stamp);
        check_size(&values)?;
        metadata.insert("$lastUpdated".into(), json!(now));
        if with_version {
            metadata.insert("$lastUpdatedVersion".into(), json!(version));
        }
        self.values = values;
        self.metadata = metadata;
        self.version = version;
        Ok(version)
    }

    /// Replaces the whole document; returns the new `$version`.
    pub fn replace(
        &mut self,
        document: &Map<String, Value>,
        now: &str,
        with_version: bool,
    ) -> Result<u64, TwinError> {
        let mut patch: Map<String, Value> = self
            .values
            .keys()
            .map(|key| (key.clone(), Value::Null))
            .collect();
        for (key, value) in document {
            patch.insert(key.clone(), value.clone());
        }
        // Removing then setting a key must not merge into the old object: replace it.
        for (key, value) in document {
            if value.is_object() {
                self.values.remove(key);
            }
        }
        self.apply_patch(&patch, now, with_version)
    }
}

struct Stamp<'a> {
    now: &'a str,
    version: Option<u64>,
}

impl Stamp<'_> {
    fn leaf(&self) -> Map<String, Value> {
        let mut meta = Map::new();
        meta.insert("$lastUpdated".into(), json!(self.now));
        if let Some(version) = self.version {
            meta.insert("$lastUpdatedVersion".into(), json!(version));
        }
        meta
    }

    fn for_value(&self, value: &Value) -> Value {
        let mut meta = self.leaf();
        if let Value::Object(object) = value {
            for (key, child) in object {
                meta.insert(key.clone(), self.for_value(child));
            }
        }
        Value::Object(meta)
    }
}

fn strip_nulls(value: &Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(
            object
                .iter()
                .filter(|(_, child)| !child.is_null())
                .map(|(key, child)| (key.clone(), strip_nulls(child)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn merge(
    values: &mut Map<String, Value>,
    metadata: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    stamp: &Stamp<'_>,
) {
    for (key, change) in patch {
        match change {
            Value::Null => {
                values.remove(key);
                metadata.remove(key);
            }
            Value::Object(child_patch) => {
                if let Some(Value::Object(existing)) = values.get_mut(key) {
                    let child_meta = metadata
                        .entry(key.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if !child_meta.is_object() {
                        *child_meta = Value::Object(Map::new());
                    }
                    if let Value::Object(child_meta) = child_meta {
                        merge(existing, child_meta, child_patch, stamp);
                        child_meta.extend(stamp.leaf());
                    }
                } else {
                    let value = strip_nulls(change);
                    metadata.insert(key.clone(), stamp.for_value(&value));
                    values.insert(key.clone(), value);
                }
            }
            other => {
                values.insert(key.clone(), other.clone());
                metadata.insert(key.clone(), Value::Object(stamp.leaf()));
            }
        }
    }
}

fn check_size(values: &Map<String, Value>) -> Result<(), TwinError> {
    let size = serde_json::to_vec(values)
        .map(|bytes| bytes.len())
        .unwrap_or(usize::MAX);
    if size > MAX_DOCUMENT_SIZE {
        return Err(TwinError::TooLarge {
            size,
            limit: MAX_DOCUMENT_SIZE,
        });
    }
    Ok(())
}

/// Parses and validates a patch from untrusted bytes: a JSON object of at most
/// [`MAX_DOCUMENT_SIZE`] bytes and [`MAX_DEPTH`] levels, with valid property names.
/// A top-level `$version` (sent by some clients) is dropped; other `$` names are rejected.
pub fn parse_patch(bytes: &[u8]) -> Result<Map<String, Value>, TwinError> {
    if bytes.len() > 4 * MAX_DOCUMENT_SIZE {
        return Err(TwinError::TooLarge {
            size: bytes.len(),
            limit: MAX_DOCUMENT_SIZE,
        });
    }
    // serde_json's own recursion limit (128) bounds the parser before our depth check.
    let value: Value =
        serde_json::from_slice(bytes).map_err(|error| TwinError::InvalidJson(error.to_string()))?;
    let Value::Object(mut patch) = value else {
        return Err(TwinError::NotAnObject);
    };
    patch.remove("$version");
    patch.remove("$metadata");
    validate_patch(&patch)?;
    Ok(patch)
}

/// Validates an already-parsed patch (names, depth).
pub fn validate_patch(patch: &Map<String, Value>) -> Result<(), TwinError> {
    let depth = object_depth(patch, 1)?;
    if depth > MAX_DEPTH {
        return Err(TwinError::TooDeep {
            depth,
            limit: MAX_DEPTH,
        });
    }
    Ok(())
}

fn object_depth(object: &Map<String, Value>, level: usize) -> Result<usize, TwinError> {
    let mut deepest = level;
    for (key, value) in object {
        if key.is_empty()
            || key.len() > 1024
            || key.starts_with('$')
            || key.contains(['.', ' '])
            || key.chars().any(char::is_control)
        {
            return Err(TwinError::InvalidKey(key.clone()));
        }
        deepest = deepest.max(value_depth(value, level)?);
    }
    Ok(deepest)
}

fn value_depth(value: &Value, level: usize) -> Result<usize, TwinError> {
    if level > MAX_DEPTH {
        return Err(TwinError::TooDeep {
            depth: level + 1,
            limit: MAX_DEPTH,
        });
    }
    match value {
        Value::Object(child) => object_depth(child, level + 1),
        Value::Array(items) => items.iter().try_fold(level + 1, |deepest, item| {
            Ok(deepest.max(value_depth(item, level + 1)?))
        }),
        _ => Ok(level),
    }
}

/// A device twin: tags, desired and reported properties, and the twin version behind the etag.
/// A new twin starts, as on IoT Hub, with desired and reported `$version` 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Twin {
    /// Service-side tags.
    pub tags: Map<String, Value>,
    /// Desired properties (written by the service).
    pub desired: Properties,
    /// Reported properties (written by the device).
    pub reported: Properties,
    /// Incremented by every change; the etag is derived from it.
    pub version: u64,
}

impl Default for Twin {
    fn default() -> Self {
        let fresh = Properties {
            version: 1,
            ..Properties::default()
        };
        Twin {
            tags: Map::new(),
            desired: fresh.clone(),
            reported: fresh,
            version: 1,
        }
    }
}

impl Twin {
    /// The full-twin document a device receives for `$iothub/twin/GET`.
    pub fn device_document(&self) -> Value {
        json!({
            "desired": self.desired.device_view(),
            "reported": self.reported.device_view(),
        })
    }

    /// The twin etag: base64 of the big-endian twin version (IoT Hub's shape).
    pub fn etag(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.version.to_be_bytes())
    }

    /// Applies a desired-properties patch; returns the new desired `$version`.
    pub fn patch_desired(
        &mut self,
        patch: &Map<String, Value>,
        now: &str,
    ) -> Result<u64, TwinError> {
        validate_patch(patch)?;
        let version = self.desired.apply_patch(patch, now, true)?;
        self.version += 1;
        Ok(version)
    }

    /// Applies a reported-properties patch; returns the new reported `$version`.
    pub fn patch_reported(
        &mut self,
        patch: &Map<String, Value>,
        now: &str,
    ) -> Result<u64, TwinError> {
        validate_patch(patch)?;
        let version = self.reported.apply_patch(patch, now, false)?;
        self.version += 1;
        Ok(version)
    }

    /// Merges tags (merge-patch semantics).
    pub fn patch_tags(&mut self, patch: &Map<String, Value>) -> Result<(), TwinError> {
        validate_patch(patch)?;
        let mut tags = self.tags.clone();
        let mut ignored = Map::new();
        merge(
            &mut tags,
            &mut ignored,
            patch,
            &Stamp {
                now: "",
                version: None,
            },
        );
        check_size(&tags)?;
        self.tags = tags;
        self.version += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn merge_patch_sets_nests_and_deletes() {
        let mut twin = Twin::default();
        let v1 = twin
            .patch_desired(&obj(json!({"a": 1, "b": {"c": 2, "d": 3}})), "t1")
            .unwrap();
        let v2 = twin
            .patch_desired(&obj(json!({"a": null, "b": {"c": null, "e": 4}})), "t2")
            .unwrap();
        assert_eq!((v1, v2), (2, 3));
        assert_eq!(
            twin.device_document()["desired"],
            json!({"b": {"d": 3, "e": 4}, "$version": 3})
        );
        let meta = &twin.desired.metadata;
        assert_eq!(meta["$lastUpdatedVersion"], json!(3));
        assert_eq!(meta["b"]["e"]["$lastUpdatedVersion"], json!(3));
        assert_eq!(meta["b"]["d"]["$lastUpdatedVersion"], json!(2));
        assert!(meta.get("a").is_none());
        assert_eq!(twin.etag(), "AAAAAAAAAAM=");
    }

    #[test]
    fn limits_reject_without_changing_anything() {
        let mut twin = Twin::default();
        twin.patch_reported(&obj(json!({"keep": true})), "t")
            .unwrap();
        let before = twin.clone();
        let big = "x".repeat(MAX_DOCUMENT_SIZE);
        assert!(matches!(
            twin.patch_reported(&obj(json!({ "big": big })), "t"),
            Err(TwinError::TooLarge { .. })
        ));
        let mut deep = json!(1);
        for _ in 0..11 {
            deep = json!({ "n": deep });
        }
        assert!(matches!(
            parse_patch(deep.to_string().as_bytes()),
            Err(TwinError::TooDeep { .. })
        ));
        let mut ok_depth = json!(1);
        for _ in 0..10 {
            ok_depth = json!({ "n": ok_depth });
        }
        assert!(parse_patch(ok_depth.to_string().as_bytes()).is_ok());
        assert!(matches!(
            parse_patch(b"{not json"),
            Err(TwinError::InvalidJson(_))
        ));
        assert_eq!(parse_patch(b"[1]"), Err(TwinError::NotAnObject));
        assert!(matches!(
            parse_patch(br#"{"a.b":1}"#),
            Err(TwinError::InvalidKey(_))
        ));
        assert!(matches!(
            parse_patch(br#"{"$x":1}"#),
            Err(TwinError::InvalidKey(_))
        ));
        assert_eq!(twin, before);
    }

    #[test]
    fn replace_drops_missing_keys() {
        let mut props = Properties::default();
        props
            .apply_patch(&obj(json!({"a": 1, "o": {"x": 1}})), "t", true)
            .unwrap();
        props
            .replace(&obj(json!({"o": {"y": 2}})), "t", true)
            .unwrap();
        assert_eq!(props.values, obj(json!({"o": {"y": 2}})));
    }
}
