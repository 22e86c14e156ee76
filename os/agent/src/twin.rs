//! Device twin documents and the desired-state tracker.
//!
//! The hub does not queue desired patches for an offline device, and patches may arrive while a
//! full GET is in flight. [`DesiredTracker`] turns the raw stream (full twins and patches, in any
//! order, with duplicates and gaps) into a sequence of [`DesiredChange`]s whose `$version`s
//! strictly increase, asking for a full GET whenever it cannot prove it has seen every version.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Largest desired or reported section IoT Hub accepts (bytes of JSON).
pub const MAX_SECTION_BYTES: usize = 32 * 1024;
/// Deepest nesting IoT Hub accepts in desired/reported properties.
pub const MAX_DEPTH: usize = 10;
/// Patches held back while waiting for a full twin; older ones are dropped (the GET covers them).
pub const MAX_BUFFERED_PATCHES: usize = 64;

/// Properties (a JSON object without `$`-prefixed metadata keys).
pub type Properties = Map<String, Value>;

/// How a [`DesiredChange`] came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A full twin GET (after connecting, or after a version gap) replaced the desired state.
    Full,
    /// A desired patch was applied on top of the previous state.
    Patch,
}

/// One step of the desired state, in strictly increasing `$version` order.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredChange {
    /// The desired `$version` after this change.
    pub version: u64,
    /// Full or patch.
    pub kind: ChangeKind,
    /// What changed: the patch as sent (with `null` for deletions), or the whole document.
    pub patch: Properties,
    /// The complete desired state after the change.
    pub desired: Properties,
}

impl DesiredChange {
    /// The complete desired state as the application's own type (e.g. a serde struct of the
    /// properties it understands). Unknown properties are ignored unless the type denies them.
    pub fn desired_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(Value::Object(self.desired.clone()))
    }
}

/// A full twin as returned by GET.
#[derive(Debug, Clone, PartialEq)]
pub struct FullTwin {
    /// Desired `$version`.
    pub desired_version: u64,
    /// Desired properties.
    pub desired: Properties,
    /// Reported `$version`.
    pub reported_version: u64,
    /// Reported properties.
    pub reported: Properties,
}

/// Why a twin document, a desired patch or a reported patch is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum TwinDocumentError {
    /// More bytes than the hub allows.
    #[error("{bytes} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON.
    #[error("invalid JSON at line {line} column {column}")]
    NotJson {
        /// Where the parser stopped.
        line: usize,
        /// Where the parser stopped.
        column: usize,
    },
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// A full twin's section is absent.
    #[error("\"{section}\" is missing")]
    SectionMissing {
        /// `desired` or `reported`.
        section: &'static str,
    },
    /// A full twin's section is not an object.
    #[error("\"{section}\" is not an object")]
    SectionNotObject {
        /// `desired` or `reported`.
        section: &'static str,
    },
    /// No `$version`.
    #[error("{what} has no $version")]
    NoVersion {
        /// The section or patch.
        what: &'static str,
    },
    /// `$version` is not a non-negative integer.
    #[error("{what} $version is not a non-negative integer")]
    BadVersion {
        /// The section or patch.
        what: &'static str,
    },
    /// Nested deeper than the hub allows.
    #[error("{what} nesting depth {depth} exceeds {MAX_DEPTH}")]
    TooDeep {
        /// The section or patch.
        what: &'static str,
        /// Its depth.
        depth: usize,
    },
    /// A reported patch is not an object.
    #[error("a reported patch must be a JSON object")]
    ReportedNotObject,
    /// A reported patch uses a key reserved for the hub's metadata.
    #[error("key {key:?} is reserved ($-prefixed)")]
    ReservedKey {
        /// The key.
        key: String,
    },
    /// A reported patch could not be serialised.
    #[error("cannot serialise the reported patch")]
    Serialise(#[source] serde_json::Error),
}

/// Parses a full twin document.
pub fn parse_full_twin(body: &[u8]) -> Result<FullTwin, TwinDocumentError> {
    let value = parse_object(body, 2 * MAX_SECTION_BYTES + 16 * 1024)?;
    let section = |name: &'static str| -> Result<(u64, Properties), TwinDocumentError> {
        match value.get(name) {
            Some(Value::Object(map)) => split_version(map, name),
            Some(_) => Err(TwinDocumentError::SectionNotObject { section: name }),
            None => Err(TwinDocumentError::SectionMissing { section: name }),
        }
    };
    let (desired_version, desired) = section("desired")?;
    let (reported_version, reported) = match value.get("reported") {
        None => (0, Properties::new()),
        Some(_) => section("reported")?,
    };
    Ok(FullTwin {
        desired_version,
        desired,
        reported_version,
        reported,
    })
}

/// Parses a desired patch, returning its `$version` and the patch without metadata.
pub fn parse_desired_patch(body: &[u8]) -> Result<(u64, Properties), TwinDocumentError> {
    let value = parse_object(body, MAX_SECTION_BYTES + 4 * 1024)?;
    split_version(&value, "desired patch")
}

/// Checks a reported patch before it is queued: an object, within size and depth limits, with
/// no `$`-prefixed keys. Returns its JSON bytes.
pub fn validate_reported(patch: &Value) -> Result<Vec<u8>, TwinDocumentError> {
    let Value::Object(map) = patch else {
        return Err(TwinDocumentError::ReportedNotObject);
    };
    if let Some(key) = map.keys().find(|k| k.starts_with('$')) {
        return Err(TwinDocumentError::ReservedKey { key: key.clone() });
    }
    let depth = depth(patch);
    if depth > MAX_DEPTH {
        return Err(TwinDocumentError::TooDeep {
            what: "reported patch",
            depth,
        });
    }
    let bytes = serde_json::to_vec(patch).map_err(TwinDocumentError::Serialise)?;
    if bytes.len() > MAX_SECTION_BYTES {
        return Err(TwinDocumentError::TooLarge {
            bytes: bytes.len(),
            limit: MAX_SECTION_BYTES,
        });
    }
    Ok(bytes)
}

fn parse_object(body: &[u8], limit: usize) -> Result<Map<String, Value>, TwinDocumentError> {
    if body.len() > limit {
        return Err(TwinDocumentError::TooLarge {
            bytes: body.len(),
            limit,
        });
    }
    // serde_json bounds recursion (128 levels), so hostile nesting cannot overflow the stack.
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(TwinDocumentError::NotAnObject),
        Err(e) => Err(TwinDocumentError::NotJson {
            line: e.line(),
            column: e.column(),
        }),
    }
}

fn split_version(
    map: &Map<String, Value>,
    what: &'static str,
) -> Result<(u64, Properties), TwinDocumentError> {
    let version = match map.get("$version") {
        Some(Value::Number(n)) => n.as_u64().ok_or(TwinDocumentError::BadVersion { what })?,
        Some(_) => return Err(TwinDocumentError::BadVersion { what }),
        None => return Err(TwinDocumentError::NoVersion { what }),
    };
    let properties: Properties = map
        .iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let depth = depth(&Value::Object(properties.clone()));
    if depth > MAX_DEPTH {
        return Err(TwinDocumentError::TooDeep { what, depth });
    }
    Ok((version, properties))
}

/// Nesting depth: a scalar is 0, `{}` is 1, `{"a":{}}` is 2.
fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Applies a JSON merge patch (RFC 7386 as IoT Hub uses it: `null` deletes a key).
pub fn apply_patch(target: &mut Properties, patch: &Properties) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let entry = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                if let Value::Object(existing) = entry {
                    apply_patch(existing, inner);
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

/// What the caller must do after feeding the tracker.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// Changes to deliver to the application, in order.
    pub changes: Vec<DesiredChange>,
    /// True when a full twin GET is needed (a gap was seen).
    pub needs_full_twin: bool,
}

/// Orders desired-state updates by `$version` (see the module docs).
#[derive(Debug, Default)]
pub struct DesiredTracker {
    current: Option<(u64, Properties)>,
    awaiting_full: bool,
    buffered: BTreeMap<u64, Properties>,
}

impl DesiredTracker {
    /// A tracker that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last delivered desired version.
    pub fn version(&self) -> Option<u64> {
        self.current.as_ref().map(|(v, _)| *v)
    }

    /// The last delivered desired state.
    pub fn desired(&self) -> Option<&Properties> {
        self.current.as_ref().map(|(_, d)| d)
    }

    /// Called on every (re)connect: patches are held until the full twin arrives.
    pub fn expect_full_twin(&mut self) {
        self.awaiting_full = true;
        self.buffered.clear();
    }

    /// Feeds a full twin's desired section.
    pub fn on_full_twin(&mut self, version: u64, desired: Properties) -> Step {
        self.awaiting_full = false;
        let mut step = Step::default();
        let unchanged = matches!(&self.current, Some((v, d)) if *v == version && *d == desired);
        if !unchanged {
            // The full document is the truth, even if its version went backwards (a hub whose
            // state was restored): deliver it so the application can reconcile.
            step.changes.push(DesiredChange {
                version,
                kind: ChangeKind::Full,
                patch: desired.clone(),
                desired: desired.clone(),
            });
            self.current = Some((version, desired));
        }
        self.buffered = std::mem::take(&mut self.buffered).split_off(&version.saturating_add(1));
        self.drain(&mut step);
        step
    }

    /// Feeds a desired patch.
    pub fn on_patch(&mut self, version: u64, patch: Properties) -> Step {
        let mut step = Step::default();
        if self.awaiting_full || self.current.is_none() {
            self.buffer(version, patch);
            return step;
        }
        if self.version().is_some_and(|current| version <= current) {
            return step; // duplicate or stale: already covered
        }
        self.buffer(version, patch);
        self.drain(&mut step);
        if !self.buffered.is_empty() {
            // A version is missing; only a full GET can fill it.
            self.awaiting_full = true;
            step.needs_full_twin = true;
        }
        step
    }

    fn buffer(&mut self, version: u64, patch: Properties) {
        self.buffered.insert(version, patch);
        while self.buffered.len() > MAX_BUFFERED_PATCHES {
            self.buffered.pop_first();
        }
    }

    fn drain(&mut self, step: &mut Step) {
        while let Some((version, desired)) = self.current.as_mut() {
            let Some(patch) = version
                .checked_add(1)
                .and_then(|next| self.buffered.remove(&next))
            else {
                break;
            };
            *version += 1;
            apply_patch(desired, &patch);
            step.changes.push(DesiredChange {
                version: *version,
                kind: ChangeKind::Patch,
                patch,
                desired: desired.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn props(value: Value) -> Properties {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn versions(step: &Step) -> Vec<u64> {
        step.changes.iter().map(|c| c.version).collect()
    }

    #[test]
    fn full_then_patches_in_order() {
        let mut t = DesiredTracker::new();
        t.expect_full_twin();
        let s = t.on_full_twin(3, props(json!({"a": 1})));
        assert_eq!(versions(&s), [3]);
        assert_eq!(s.changes[0].kind, ChangeKind::Full);
        let s = t.on_patch(4, props(json!({"b": 2})));
        assert_eq!(versions(&s), [4]);
        assert_eq!(s.changes[0].desired, props(json!({"a": 1, "b": 2})));
        let s = t.on_patch(5, props(json!({"a": null})));
        assert_eq!(s.changes[0].desired, props(json!({"b": 2})));
    }

    #[test]
    fn stale_and_duplicate_patches_are_ignored() {
        let mut t = DesiredTracker::new();
        t.on_full_twin(5, props(json!({"a": 1})));
        assert_eq!(t.on_patch(5, props(json!({"a": 9}))), Step::default());
        assert_eq!(t.on_patch(2, props(json!({"a": 9}))), Step::default());
        assert_eq!(t.desired(), Some(&props(json!({"a": 1}))));
    }

    #[test]
    fn a_gap_asks_for_a_full_twin_and_buffers() {
        let mut t = DesiredTracker::new();
        t.on_full_twin(1, props(json!({})));
        let s = t.on_patch(3, props(json!({"c": 3})));
        assert!(s.needs_full_twin);
        assert!(s.changes.is_empty());
        // While waiting, later patches are held.
        assert_eq!(t.on_patch(4, props(json!({"d": 4}))), Step::default());
        // The full twin covers version 3; buffered 4 is applied after it.
        let s = t.on_full_twin(3, props(json!({"b": 2, "c": 3})));
        assert_eq!(versions(&s), [3, 4]);
        assert_eq!(s.changes[1].desired, props(json!({"b": 2, "c": 3, "d": 4})));
        assert!(!s.needs_full_twin);
    }

    #[test]
    fn out_of_order_patches_fill_in() {
        let mut t = DesiredTracker::new();
        t.on_full_twin(1, props(json!({})));
        let s = t.on_patch(3, props(json!({"c": 3})));
        assert!(s.needs_full_twin);
        let s = t.on_full_twin(2, props(json!({"b": 2})));
        assert_eq!(versions(&s), [2, 3]);
    }

    #[test]
    fn patches_before_the_first_full_twin_wait_for_it() {
        let mut t = DesiredTracker::new();
        t.expect_full_twin();
        assert_eq!(t.on_patch(8, props(json!({"x": 1}))), Step::default());
        let s = t.on_full_twin(7, props(json!({})));
        assert_eq!(versions(&s), [7, 8]);
    }

    #[test]
    fn unchanged_full_twin_after_reconnect_delivers_nothing() {
        let mut t = DesiredTracker::new();
        t.on_full_twin(4, props(json!({"a": 1})));
        t.expect_full_twin();
        assert!(t.on_full_twin(4, props(json!({"a": 1}))).changes.is_empty());
        // A change missed while offline arrives as a full change.
        t.expect_full_twin();
        let s = t.on_full_twin(6, props(json!({"a": 2})));
        assert_eq!(versions(&s), [6]);
    }

    #[test]
    fn desired_state_deserialises_into_application_types() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct App {
            image: String,
            replicas: u32,
        }
        let change = DesiredChange {
            version: 2,
            kind: ChangeKind::Patch,
            patch: Properties::new(),
            desired: props(json!({"image": "a", "replicas": 3, "other": true})),
        };
        assert_eq!(
            change.desired_as::<App>().unwrap(),
            App {
                image: "a".into(),
                replicas: 3
            }
        );
        let wrong = DesiredChange {
            desired: props(json!({"image": 1})),
            ..change
        };
        assert!(wrong.desired_as::<App>().is_err());
    }

    #[test]
    fn nested_merge_patch() {
        let mut d = props(json!({"app": {"image": "a", "env": {"X": "1"}}, "k": 1}));
        apply_patch(
            &mut d,
            &props(json!({"app": {"env": {"X": null, "Y": "2"}}, "k": {"n": 1}})),
        );
        assert_eq!(
            d,
            props(json!({"app": {"image": "a", "env": {"Y": "2"}}, "k": {"n": 1}}))
        );
    }

    #[test]
    fn parses_full_twins_and_patches_defensively() {
        let twin = parse_full_twin(
            br#"{"desired":{"a":1,"$version":4,"$metadata":{}},"reported":{"$version":2}}"#,
        )
        .unwrap();
        assert_eq!(twin.desired_version, 4);
        assert_eq!(twin.desired, props(json!({"a": 1})));
        assert_eq!(twin.reported_version, 2);
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"desired":[]}"#,
            br#"{"desired":{"$version":-1}}"#,
            br#"{"desired":{"$version":"1"}}"#,
            br#"{"desired":{"a":1}}"#,
        ] {
            assert!(
                parse_full_twin(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_desired_patch(br#"{"x":null,"$version":9}"#)
                .unwrap()
                .0,
            9
        );
        assert!(matches!(
            parse_desired_patch(br#"{"x":1}"#),
            Err(TwinDocumentError::NoVersion { .. })
        ));
        let deep = format!("{}1{}", "{\"a\":".repeat(12), "}".repeat(12));
        let deep = format!("{{\"$version\":1,\"d\":{deep}}}");
        assert!(matches!(
            parse_desired_patch(deep.as_bytes()),
            Err(TwinDocumentError::TooDeep { depth, .. }) if depth > MAX_DEPTH
        ));
        let hostile = "[".repeat(100_000);
        assert!(parse_desired_patch(hostile.as_bytes()).is_err());
    }

    #[test]
    fn reported_patches_are_checked_before_sending() {
        assert!(validate_reported(&json!({"a": 1})).is_ok());
        assert!(matches!(
            validate_reported(&json!([1])),
            Err(TwinDocumentError::ReportedNotObject)
        ));
        assert!(matches!(
            validate_reported(&json!({"$version": 1})),
            Err(TwinDocumentError::ReservedKey { key }) if key == "$version"
        ));
        let big = "x".repeat(MAX_SECTION_BYTES);
        assert!(matches!(
            validate_reported(&json!({ "big": big })),
            Err(TwinDocumentError::TooLarge {
                limit: MAX_SECTION_BYTES,
                ..
            })
        ));
    }
}
