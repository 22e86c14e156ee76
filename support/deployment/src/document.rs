//! The deployment document: what a signed token's payload says, its JSON form, and the
//! checks every document passes before it is signed and after it is verified.
//!
//! JSON form (format 1), one flat object, `action` first:
//!
//! ```json
//! {"action": "deploy", "format": 1, "slot": "cloud-app", "compatible": "testudo-gateway-qemu-x86_64",
//!  "serial": 7, "app": {"name": "forwarder", "version": "1.2.0", "sha256": "<64 hex>", "size": 53412},
//!  "uses": {"log": Route, ...}, "url": "https://..."}
//! {"action": "remove", "format": 1, "slot": "cloud-app", "compatible": "...", "serial": 8}
//! ```
//!
//! `uses` maps local names to the plan's own [`Route`] (the shape of a slot's `max_uses`);
//! `url` is optional. Unknown, missing and repeated fields are refused, so is a removal that
//! names an app.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use testudo_plan::Route;

use crate::error::{DeploymentError, Segment};
use crate::{FORMAT, MAX_NESTING};

/// Most bytes of a module URL.
pub const MAX_URL_BYTES: usize = 2048;

/// A signed instruction for one app slot of one system: run an app in it, or empty it.
///
/// Its serial orders the documents of a slot: a device accepts only a serial greater than
/// the one it last installed there, so an older document (replayed by the untrusted agent)
/// is refused. A removal consumes a serial too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Wire", into = "Wire")]
pub struct Deployment {
    /// The app slot, by its name in the plan (`app_slots`).
    pub slot: String,
    /// The system it is for: the plan's `compatible` (RAUC's `compatible` of the image).
    pub compatible: String,
    /// Orders the slot's documents: only grows.
    pub serial: u64,
    /// What to do with the slot.
    pub action: Action,
}

/// What a deployment does with its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run this app in the slot (replacing whatever runs there).
    Deploy(AppRelease),
    /// Stop the slot's app and leave the slot empty.
    Remove,
}

/// An app to run in a slot: the module and the routes it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRelease {
    /// The module.
    pub app: App,
    /// Routes the app asks for, by local name: each within the slot's `max_uses`
    /// (`AppSlot::admits`).
    pub uses: BTreeMap<String, Route>,
    /// Where the module can be fetched, if the document says; its integrity comes from
    /// `app.sha256`, not from the URL.
    pub url: Option<String>,
}

/// A WebAssembly module, by name, version and content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// The app's name (a plan name: `^[a-z][a-z0-9_-]{0,62}$`).
    pub name: String,
    /// Its semantic version.
    pub version: String,
    /// sha256 of the module, 64 lower-case hex digits.
    pub sha256: String,
    /// The module's size in bytes (a fetcher can stop reading there).
    pub size: u64,
}

/// The JSON form: `action` tags two flat variants.
#[derive(Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum Wire {
    Deploy {
        format: u32,
        slot: String,
        compatible: String,
        serial: u64,
        app: App,
        #[serde(deserialize_with = "unique_keys")]
        uses: BTreeMap<String, Route>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    Remove {
        format: u32,
        slot: String,
        compatible: String,
        serial: u64,
    },
}

impl TryFrom<Wire> for Deployment {
    type Error = DeploymentError;

    fn try_from(wire: Wire) -> Result<Deployment, DeploymentError> {
        let (format, deployment) = match wire {
            Wire::Deploy {
                format,
                slot,
                compatible,
                serial,
                app,
                uses,
                url,
            } => (
                format,
                Deployment {
                    slot,
                    compatible,
                    serial,
                    action: Action::Deploy(AppRelease { app, uses, url }),
                },
            ),
            Wire::Remove {
                format,
                slot,
                compatible,
                serial,
            } => (
                format,
                Deployment {
                    slot,
                    compatible,
                    serial,
                    action: Action::Remove,
                },
            ),
        };
        if format != FORMAT {
            return Err(DeploymentError::Format {
                found: Some(u64::from(format)),
                expected: FORMAT,
            });
        }
        Ok(deployment)
    }
}

impl From<Deployment> for Wire {
    fn from(deployment: Deployment) -> Wire {
        let Deployment {
            slot,
            compatible,
            serial,
            action,
        } = deployment;
        match action {
            Action::Deploy(AppRelease { app, uses, url }) => Wire::Deploy {
                format: FORMAT,
                slot,
                compatible,
                serial,
                app,
                uses,
                url,
            },
            Action::Remove => Wire::Remove {
                format: FORMAT,
                slot,
                compatible,
                serial,
            },
        }
    }
}

/// A map whose keys must be unique: JSON allows a repeated key and parsers disagree about
/// which value wins; a signed document must mean one thing to every reader.
fn unique_keys<'de, D>(deserializer: D) -> Result<BTreeMap<String, Route>, D::Error>
where
    D: Deserializer<'de>,
{
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = BTreeMap<String, Route>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of routes by local name")
        }
        fn visit_map<A>(self, mut map: A) -> Result<Self::Value, A::Error>
        where
            A: serde::de::MapAccess<'de>,
        {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, Route>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format_args!(
                        "local name `{key}` appears twice in `uses`"
                    )));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Visitor)
}

impl Deployment {
    /// The app release, for a deployment; `None` for a removal.
    pub fn release(&self) -> Option<&AppRelease> {
        match &self.action {
            Action::Deploy(release) => Some(release),
            Action::Remove => None,
        }
    }

    /// True for a removal.
    pub fn is_removal(&self) -> bool {
        matches!(self.action, Action::Remove)
    }

    /// Parses and checks a document from the bytes of a verified payload: bounded nesting,
    /// then the format, then the shape, then [`Deployment::validate`].
    pub(crate) fn from_payload(payload: &[u8]) -> Result<Deployment, DeploymentError> {
        if !nesting_within(payload, MAX_NESTING) {
            return Err(DeploymentError::Nesting {
                segment: Segment::Payload,
                max: MAX_NESTING,
            });
        }
        // The format first, so a document of another format is refused as such rather than
        // for some field it has or lacks.
        // (The payload is small and shallow: reading it as a map first costs little.)
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(payload)
            .map_err(|source| DeploymentError::Document { source })?;
        let found = object.get("format").and_then(serde_json::Value::as_u64);
        if found != Some(u64::from(FORMAT)) {
            return Err(DeploymentError::Format {
                found,
                expected: FORMAT,
            });
        }
        let deployment: Deployment = serde_json::from_slice(payload)
            .map_err(|source| DeploymentError::Document { source })?;
        deployment.validate()?;
        Ok(deployment)
    }

    /// Checks what the JSON shape cannot: names are plan names, the version is a semantic
    /// version, the hash is 64 lower-case hex digits, the size can be a module, local names
    /// are non-empty, the URL is bounded and printable. `sign` refuses what fails here, and
    /// so does `verify`, so a signer never produces what a device refuses for its form.
    pub fn validate(&self) -> Result<(), DeploymentError> {
        check_field("slot", &self.slot, is_name(&self.slot), NAME_RULE)?;
        check_field(
            "compatible",
            &self.compatible,
            !self.compatible.is_empty()
                && self.compatible.len() <= 255
                && self.compatible.chars().all(|c| !c.is_control()),
            "1 to 255 bytes without control characters",
        )?;
        let Action::Deploy(release) = &self.action else {
            return Ok(());
        };
        let app = &release.app;
        check_field("app.name", &app.name, is_name(&app.name), NAME_RULE)?;
        check_field(
            "app.version",
            &app.version,
            is_semver(&app.version),
            "a semantic version like 1.2.3 (at most 64 bytes)",
        )?;
        check_field(
            "app.sha256",
            &app.sha256,
            app.sha256.len() == 64
                && app
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "64 lower-case hex digits",
        )?;
        if app.size < MIN_MODULE_BYTES {
            return Err(DeploymentError::Field {
                field: "app.size".into(),
                value: app.size.to_string(),
                rule: "at least 8 bytes (a WebAssembly module's header)",
            });
        }
        if let Some(local) = release.uses.keys().find(|local| local.is_empty()) {
            return Err(DeploymentError::Field {
                field: "uses".into(),
                value: json_string(local),
                rule: "local names are not empty",
            });
        }
        if let Some(url) = &release.url {
            check_field(
                "url",
                url,
                !url.is_empty()
                    && url.len() <= MAX_URL_BYTES
                    && url.chars().all(|c| !c.is_control() && !c.is_whitespace()),
                "1 to 2048 bytes without whitespace or control characters",
            )?;
        }
        Ok(())
    }
}

/// The smallest WebAssembly module: magic and version.
const MIN_MODULE_BYTES: u64 = 8;

const NAME_RULE: &str =
    "a name: lower-case letters, digits, - and _, starting with a letter, at most 63 bytes";

fn check_field(
    field: &str,
    value: &str,
    ok: bool,
    rule: &'static str,
) -> Result<(), DeploymentError> {
    if ok {
        Ok(())
    } else {
        Err(DeploymentError::Field {
            field: field.to_owned(),
            value: json_string(value),
            rule,
        })
    }
}

/// `value` as a JSON string literal (quoted, escaped), as errors show values.
fn json_string(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

/// A plan name (the config schema's `Name`): `^[a-z][a-z0-9_-]{0,62}$`.
pub(crate) fn is_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    matches!(bytes.first(), Some(b'a'..=b'z'))
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// A semantic version (the config schema's `SemVer`), at most 64 bytes:
/// `MAJOR.MINOR.PATCH`, numbers without leading zeros, optional `-prerelease` and `+build`
/// of `[0-9A-Za-z.-]`.
pub(crate) fn is_semver(version: &str) -> bool {
    if version.is_empty() || version.len() > 64 {
        return false;
    }
    let (rest, build) = match version.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (version, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    let number_ok = |n: &&str| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && (*n == "0" || !n.starts_with('0'))
    };
    let tail_ok = |t: Option<&str>| {
        t.is_none_or(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        })
    };
    numbers.len() == 3 && numbers.iter().all(number_ok) && tail_ok(pre) && tail_ok(build)
}

/// True when the JSON text `bytes` nests objects and arrays at most `max` deep (`{}` is 1,
/// `{"a":[]}` is 2), without parsing it: a cheap bound before any parser recurses. Brackets
/// inside strings do not count.
pub(crate) fn nesting_within(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}
