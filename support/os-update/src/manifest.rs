//! The ADU update manifest (`manifestVersion` 5), as the service hands it to a device in the
//! twin's `updateManifest` string, and the one step testudo installs: a RAUC bundle under
//! handler [`HANDLER`].
//!
//! ```json
//! {"manifestVersion":"5",
//!  "updateId":{"provider":"testudo","name":"gateway","version":"1.3.0"},
//!  "compatibility":[{"manufacturer":"testudo","model":"testudo-gateway-qemu-x86_64"}],
//!  "instructions":{"steps":[{"type":"inline","handler":"testudo/bundle:1","files":["bundle"],
//!                            "handlerProperties":{"installedCriteria":"1.3.0"}}]},
//!  "files":{"bundle":{"fileName":"update.raucb","sizeInBytes":81920,
//!                     "hashes":{"sha256":"<base64 of 32 bytes>"}}},
//!  "createdDateTime":"2026-12-04T00:00:00Z"}
//! ```
//!
//! A bundle file may carry delta bundles as ADU's delta updates do: a `downloadHandler` of id
//! [`DELTA_DOWNLOAD_HANDLER`] and `relatedFiles`, each a file whose `properties` name the
//! sha256 of the image it applies to ([`SOURCE_FILE_HASH`], standard base64; for testudo the
//! rootfs image in the running slot, where ADU names the source update file it caches):
//!
//! ```json
//! "files":{"bundle":{"fileName":"update.raucb","sizeInBytes":40000000,"hashes":{"sha256":"…"},
//!   "downloadHandler":{"id":"microsoft/delta:1"},
//!   "relatedFiles":{"delta-1a2b3c4d5e6f":{"fileName":"from-0.1.0.raucb","sizeInBytes":90000,
//!     "hashes":{"sha256":"…"},"properties":{"microsoft.sourceFileHashAlgorithm":"sha256",
//!     "microsoft.sourceFileHash":"…"}}}}}
//! ```
//!
//! [`parse`] reads it defensively: at most [`MAX_MANIFEST_BYTES`] and [`MAX_NESTING`] deep,
//! no repeated keys in `files`, `relatedFiles` or a compatibility set, fields ADU may add
//! (`description`, `mimeType`, other handler properties) ignored. It
//! refuses what a device cannot act on: another `manifestVersion`, a detached manifest,
//! reference steps, a step naming a file `files` lacks, a testudo step without exactly one
//! file, a hash that is not 32 bytes, an empty compatibility set (which would match every
//! device). Which step runs is [`ImportManifest::bundle_step`]'s question.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::OsUpdateError;
use crate::json::{nesting_within, optional_unique_map, unique_maps};

/// The step handler of testudo (RAUC) bundles: a step for it names one file, the bundle,
/// and its `installedCriteria` is the bundle's version.
pub const HANDLER: &str = "testudo/bundle:1";

/// The one `manifestVersion` this crate reads and writes.
pub const MANIFEST_VERSION: &str = "5";

/// The file id [`for_bundle`] gives the bundle (the key of the twin's `fileUrls`).
pub const BUNDLE_FILE_ID: &str = "bundle";

/// Most bytes of a manifest, checked before anything is parsed. A manifest reaches the
/// device inside the twin's desired properties, which IoT Hub caps at 32 KiB in all; a
/// testudo manifest is about 600 bytes.
pub const MAX_MANIFEST_BYTES: usize = 32 * 1024;

/// Deepest nesting of objects and arrays (`{}` is 1). A step's `handlerProperties` is at 5;
/// the rest leaves room for what ADU may add there.
pub const MAX_NESTING: usize = 8;

/// Most steps (ADU's own limit on an update's instructions).
pub const MAX_STEPS: usize = 10;

/// Most files (ADU's own limit on an update's files).
pub const MAX_FILES: usize = 10;

/// Most compatibility sets, and most properties in one.
pub const MAX_COMPATIBILITY: usize = 10;

/// Most bytes of any string the manifest carries (ids, names, versions, criteria, dates).
pub const MAX_FIELD_BYTES: usize = 256;

/// What an update is: ADU's `updateId`. Reported back as `installedUpdateId`, a JSON string
/// of this object ([`UpdateId::to_json_string`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateId {
    /// Who publishes the update (ADU: `^[a-zA-Z0-9.-]+$`, at most 64 characters).
    pub provider: String,
    /// The class of update, e.g. the image's name.
    pub name: String,
    /// The update's version.
    pub version: String,
}

impl UpdateId {
    /// The JSON string ADU reports as `installedUpdateId`:
    /// `{"provider":"…","name":"…","version":"…"}`, in that order.
    pub fn to_json_string(&self) -> String {
        // A struct of three strings always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The `downloadHandler` id of a file whose related files are deltas (ADU's delta updates).
pub const DELTA_DOWNLOAD_HANDLER: &str = "microsoft/delta:1";

/// The related-file property naming the sha256 of what a delta applies to.
pub const SOURCE_FILE_HASH: &str = "microsoft.sourceFileHash";

/// The related-file property naming that hash's algorithm (`sha256`, the only one read).
pub const SOURCE_FILE_HASH_ALGORITHM: &str = "microsoft.sourceFileHashAlgorithm";

/// One file of the update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Its name (what the file was called when imported; not a path on the device).
    pub file_name: String,
    /// Its size in bytes.
    pub size_in_bytes: u64,
    /// Its SHA-256 (JSON: `hashes.sha256`, standard base64).
    pub sha256: [u8; 32],
    /// `downloadHandler.id`, if any ([`DELTA_DOWNLOAD_HANDLER`] for a file with deltas).
    pub download_handler: Option<String>,
    /// `relatedFiles`, by file id (also keys of the twin's `fileUrls`).
    pub related_files: BTreeMap<String, RelatedFile>,
}

/// A related file: for a file whose download handler is [`DELTA_DOWNLOAD_HANDLER`], a delta
/// bundle that makes the same image from the one whose sha256 is `source_sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedFile {
    /// Its name.
    pub file_name: String,
    /// Its size in bytes.
    pub size_in_bytes: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// [`SOURCE_FILE_HASH`], when present with algorithm `sha256`.
    pub source_sha256: Option<[u8; 32]>,
}

impl FileEntry {
    /// A file without download handler or related files.
    pub fn plain(file_name: &str, size_in_bytes: u64, sha256: [u8; 32]) -> FileEntry {
        FileEntry {
            file_name: file_name.to_owned(),
            size_in_bytes,
            sha256,
            download_handler: None,
            related_files: BTreeMap::new(),
        }
    }

    /// Its deltas: the related files with a source hash, when its download handler is
    /// [`DELTA_DOWNLOAD_HANDLER`] (none otherwise), in file id order.
    pub fn deltas(&self) -> impl Iterator<Item = (&str, &RelatedFile, [u8; 32])> {
        let handled = self.download_handler.as_deref() == Some(DELTA_DOWNLOAD_HANDLER);
        self.related_files
            .iter()
            .filter(move |_| handled)
            .filter_map(|(id, file)| Some((id.as_str(), file, file.source_sha256?)))
    }
}

/// One instruction step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestStep {
    /// The handler that runs the step (e.g. [`HANDLER`]).
    pub handler: String,
    /// The file ids it uses, each a key of [`ImportManifest::files`].
    pub files: Vec<String>,
    /// `handlerProperties.installedCriteria`: for [`HANDLER`], the bundle's version.
    pub installed_criteria: Option<String>,
}

/// An ADU update manifest, as [`parse`] reads it and [`ImportManifest::to_json`] writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportManifest {
    /// [`MANIFEST_VERSION`].
    pub manifest_version: String,
    /// What the update is.
    pub update_id: UpdateId,
    /// The device property sets it fits: a device fits when every property of one set
    /// equals the device's ([`ImportManifest::is_compatible`]).
    pub compatibility: Vec<BTreeMap<String, String>>,
    /// The instruction steps, in order.
    pub steps: Vec<ManifestStep>,
    /// The files, by file id.
    pub files: BTreeMap<String, FileEntry>,
    /// When the manifest was made (ISO 8601), as written.
    pub created_date_time: String,
}

/// The bundle step of a manifest: the one step for [`HANDLER`], its file and the version it
/// installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleStep<'m> {
    /// The bundle's file id (the key of the twin's `fileUrls`).
    pub file_id: &'m str,
    /// The bundle's name, size and hash.
    pub file: &'m FileEntry,
    /// The bundle's version (`installedCriteria`).
    pub installed_criteria: &'m str,
}

impl ImportManifest {
    /// The bundle step: every step must be for [`HANDLER`] (a device has no other
    /// handler) and there must be exactly one, naming one file, with a non-empty
    /// `installedCriteria`.
    pub fn bundle_step(&self) -> Result<BundleStep<'_>, OsUpdateError> {
        if let Some((step, other)) = self
            .steps
            .iter()
            .enumerate()
            .find(|(_, step)| step.handler != HANDLER)
        {
            return Err(OsUpdateError::UnsupportedHandler {
                step,
                handler: other.handler.clone(),
            });
        }
        let [step] = &self.steps[..] else {
            return Err(OsUpdateError::BundleSteps {
                found: self.steps.len(),
            });
        };
        let [file_id] = &step.files[..] else {
            return Err(OsUpdateError::StepFiles {
                step: 0,
                found: step.files.len(),
            });
        };
        let file = self
            .files
            .get(file_id)
            .ok_or_else(|| OsUpdateError::UnknownFileId {
                step: 0,
                file_id: file_id.clone(),
            })?;
        let installed_criteria = step
            .installed_criteria
            .as_deref()
            .filter(|criteria| !criteria.is_empty())
            .ok_or(OsUpdateError::MissingInstalledCriteria { step: 0 })?;
        Ok(BundleStep {
            file_id,
            file,
            installed_criteria,
        })
    }

    /// Whether a device with properties `device` fits: some compatibility set whose every
    /// property is among the device's with the same value (compared exactly). An empty set
    /// fits no device.
    pub fn is_compatible(&self, device: &BTreeMap<String, String>) -> bool {
        self.compatibility.iter().any(|set| {
            !set.is_empty()
                && set
                    .iter()
                    .all(|(name, value)| device.get(name) == Some(value))
        })
    }

    /// The JSON form: what `testudo deploy os` signs. Deterministic (fields in ADU's order,
    /// maps sorted by key, no whitespace), and [`parse`] of it gives this manifest back.
    pub fn to_json(&self) -> String {
        let wire = ManifestOut {
            manifest_version: &self.manifest_version,
            update_id: &self.update_id,
            compatibility: &self.compatibility,
            instructions: InstructionsOut {
                steps: self
                    .steps
                    .iter()
                    .map(|step| StepOut {
                        kind: "inline",
                        handler: &step.handler,
                        files: &step.files,
                        handler_properties: HandlerPropertiesOut {
                            installed_criteria: step.installed_criteria.as_deref(),
                        },
                    })
                    .collect(),
            },
            files: self
                .files
                .iter()
                .map(|(id, file)| {
                    (
                        id.as_str(),
                        FileOut {
                            file_name: &file.file_name,
                            size_in_bytes: file.size_in_bytes,
                            hashes: HashesOut {
                                sha256: STANDARD.encode(file.sha256),
                            },
                            download_handler: file
                                .download_handler
                                .as_deref()
                                .map(|id| DownloadHandlerOut { id }),
                            related_files: file
                                .related_files
                                .iter()
                                .map(|(id, related)| (id.as_str(), related_out(related)))
                                .collect(),
                        },
                    )
                })
                .collect(),
            created_date_time: &self.created_date_time,
        };
        // Structs, strings, numbers and string-keyed maps always serialize.
        serde_json::to_string(&wire).unwrap_or_default()
    }
}

/// The manifest of one bundle: one [`HANDLER`] step naming file [`BUNDLE_FILE_ID`],
/// installing `bundle_version`, for devices with the properties `compatibility`.
pub fn for_bundle(
    update_id: UpdateId,
    compatibility: BTreeMap<String, String>,
    file_name: &str,
    size: u64,
    sha256: [u8; 32],
    bundle_version: &str,
    created_date_time: &str,
) -> ImportManifest {
    ImportManifest {
        manifest_version: MANIFEST_VERSION.to_owned(),
        update_id,
        compatibility: vec![compatibility],
        steps: vec![ManifestStep {
            handler: HANDLER.to_owned(),
            files: vec![BUNDLE_FILE_ID.to_owned()],
            installed_criteria: Some(bundle_version.to_owned()),
        }],
        files: BTreeMap::from([(
            BUNDLE_FILE_ID.to_owned(),
            FileEntry::plain(file_name, size, sha256),
        )]),
        created_date_time: created_date_time.to_owned(),
    }
}

/// The wire form of a related file.
fn related_out(related: &RelatedFile) -> RelatedFileOut<'_> {
    let properties = related
        .source_sha256
        .map(|source| {
            BTreeMap::from([
                (SOURCE_FILE_HASH, STANDARD.encode(source)),
                (SOURCE_FILE_HASH_ALGORITHM, "sha256".to_owned()),
            ])
        })
        .unwrap_or_default();
    RelatedFileOut {
        file_name: &related.file_name,
        size_in_bytes: related.size_in_bytes,
        hashes: HashesOut {
            sha256: STANDARD.encode(related.sha256),
        },
        properties,
    }
}

impl ImportManifest {
    /// Offers `delta` as a delta of the bundle file [`BUNDLE_FILE_ID`] under file id `id`
    /// (its download handler becomes [`DELTA_DOWNLOAD_HANDLER`]); false when the manifest has
    /// no such file.
    pub fn add_delta(&mut self, id: &str, delta: RelatedFile) -> bool {
        let Some(file) = self.files.get_mut(BUNDLE_FILE_ID) else {
            return false;
        };
        file.download_handler = Some(DELTA_DOWNLOAD_HANDLER.to_owned());
        file.related_files.insert(id.to_owned(), delta);
        true
    }
}

/// Reads a manifest (the exact bytes of the twin's `updateManifest`); see the module
/// documentation for what is refused. Call it on a manifest whose signature verified
/// (`signature::verify` does).
pub fn parse(bytes: &[u8]) -> Result<ImportManifest, OsUpdateError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(OsUpdateError::ManifestSize {
            found: bytes.len(),
            max: MAX_MANIFEST_BYTES,
        });
    }
    if !nesting_within(bytes, MAX_NESTING) {
        return Err(OsUpdateError::ManifestNesting { max: MAX_NESTING });
    }
    let wire: ManifestIn =
        serde_json::from_slice(bytes).map_err(|source| OsUpdateError::ManifestJson { source })?;
    if wire.manifest_version != MANIFEST_VERSION {
        return Err(OsUpdateError::ManifestVersion {
            found: bounded_display(&wire.manifest_version),
        });
    }
    if let Some(file_id) = wire.detached_manifest_file_id {
        return Err(OsUpdateError::ManifestDetached {
            file_id: bounded_display(&file_id),
        });
    }
    check_field("updateId.provider", &wire.update_id.provider)?;
    check_field("updateId.name", &wire.update_id.name)?;
    check_field("updateId.version", &wire.update_id.version)?;
    check_field("createdDateTime", &wire.created_date_time)?;

    if wire.compatibility.is_empty() || wire.compatibility.len() > MAX_COMPATIBILITY {
        return Err(field_error(
            "compatibility",
            format!("{} sets", wire.compatibility.len()),
            "1 to 10 device property sets",
        ));
    }
    for (index, set) in wire.compatibility.iter().enumerate() {
        if set.is_empty() || set.len() > MAX_COMPATIBILITY {
            return Err(field_error(
                &format!("compatibility[{index}]"),
                format!("{} properties", set.len()),
                "1 to 10 properties (an empty set would fit every device)",
            ));
        }
        for (name, value) in set {
            check_field(&format!("compatibility[{index}] name"), name)?;
            check_field(&format!("compatibility[{index}].{name}"), value)?;
        }
    }

    if wire.files.len() > MAX_FILES {
        return Err(field_error(
            "files",
            format!("{} files", wire.files.len()),
            "at most 10 files",
        ));
    }
    let mut files = BTreeMap::new();
    let mut related_ids = 0usize;
    for (id, file) in wire.files {
        check_field("files (a file id)", &id)?;
        check_field(&format!("files.{id}.fileName"), &file.file_name)?;
        let sha256 = sha256_field(&format!("files.{id}.hashes.sha256"), &file.hashes.sha256)?;
        let download_handler = file.download_handler.map(|handler| handler.id);
        if let Some(handler) = &download_handler {
            check_field(&format!("files.{id}.downloadHandler.id"), handler)?;
        }
        related_ids += file.related_files.len();
        if related_ids > MAX_FILES {
            return Err(field_error(
                &format!("files.{id}.relatedFiles"),
                format!("{related_ids} related files in all"),
                "at most 10 related files",
            ));
        }
        let mut related_files = BTreeMap::new();
        for (related_id, related) in file.related_files {
            check_field(&format!("files.{id}.relatedFiles (a file id)"), &related_id)?;
            let field = format!("files.{id}.relatedFiles.{related_id}");
            related_files.insert(related_id, parse_related(&field, related)?);
        }
        files.insert(
            id,
            FileEntry {
                file_name: file.file_name,
                size_in_bytes: file.size_in_bytes,
                sha256,
                download_handler,
                related_files,
            },
        );
    }
    // A related file's id names its URL in the twin's `fileUrls`, as a file's does: one id
    // for two files would leave which one a URL serves to chance.
    let mut ids: Vec<&String> = files.keys().collect();
    ids.extend(files.values().flat_map(|file| file.related_files.keys()));
    ids.sort();
    if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(field_error(
            "files",
            format!("\"{}\" names two files", bounded_display(pair[0])),
            "file ids, related ones included, are unique",
        ));
    }

    let instructions = wire.instructions.ok_or_else(|| {
        field_error(
            "instructions",
            "absent".to_owned(),
            "instructions are required",
        )
    })?;
    if instructions.steps.is_empty() || instructions.steps.len() > MAX_STEPS {
        return Err(field_error(
            "instructions.steps",
            format!("{} steps", instructions.steps.len()),
            "1 to 10 steps",
        ));
    }
    let mut steps = Vec::with_capacity(instructions.steps.len());
    for (index, step) in instructions.steps.into_iter().enumerate() {
        if step.kind.as_deref().is_some_and(|kind| kind != "inline") {
            return Err(field_error(
                &format!("instructions.steps[{index}].type"),
                format!(
                    "\"{}\"",
                    bounded_display(step.kind.as_deref().unwrap_or(""))
                ),
                "only inline steps are supported",
            ));
        }
        let handler = step.handler.ok_or_else(|| {
            field_error(
                &format!("instructions.steps[{index}].handler"),
                "absent".to_owned(),
                "an inline step names its handler",
            )
        })?;
        check_field(&format!("instructions.steps[{index}].handler"), &handler)?;
        let step_files = step.files.unwrap_or_default();
        if step_files.len() > MAX_FILES {
            return Err(field_error(
                &format!("instructions.steps[{index}].files"),
                format!("{} file ids", step_files.len()),
                "at most 10 file ids",
            ));
        }
        for file_id in &step_files {
            if !files.contains_key(file_id) {
                return Err(OsUpdateError::UnknownFileId {
                    step: index,
                    file_id: bounded_display(file_id),
                });
            }
        }
        if handler == HANDLER && step_files.len() != 1 {
            return Err(OsUpdateError::StepFiles {
                step: index,
                found: step_files.len(),
            });
        }
        let installed_criteria = step
            .handler_properties
            .and_then(|properties| properties.installed_criteria);
        if let Some(criteria) = &installed_criteria {
            check_field(
                &format!("instructions.steps[{index}].handlerProperties.installedCriteria"),
                criteria,
            )?;
        }
        steps.push(ManifestStep {
            handler,
            files: step_files,
            installed_criteria,
        });
    }

    Ok(ImportManifest {
        manifest_version: wire.manifest_version,
        update_id: wire.update_id,
        compatibility: wire.compatibility,
        steps,
        files,
        created_date_time: wire.created_date_time,
    })
}

/// A related file as read, its fields checked like a file's; the source hash is read only
/// for algorithm `sha256`.
fn parse_related(field: &str, related: RelatedFileIn) -> Result<RelatedFile, OsUpdateError> {
    check_field(&format!("{field}.fileName"), &related.file_name)?;
    let sha256 = sha256_field(&format!("{field}.hashes.sha256"), &related.hashes.sha256)?;
    if related.properties.len() > MAX_COMPATIBILITY {
        return Err(field_error(
            &format!("{field}.properties"),
            format!("{} properties", related.properties.len()),
            "at most 10 properties",
        ));
    }
    for (name, value) in &related.properties {
        check_field(&format!("{field}.properties (a name)"), name)?;
        check_field(&format!("{field}.properties.{name}"), value)?;
    }
    let source_sha256 = match (
        related
            .properties
            .get(SOURCE_FILE_HASH_ALGORITHM)
            .map(String::as_str),
        related.properties.get(SOURCE_FILE_HASH),
    ) {
        (Some("sha256") | None, Some(hash)) => Some(sha256_field(
            &format!("{field}.properties.{SOURCE_FILE_HASH}"),
            hash,
        )?),
        _ => None,
    };
    Ok(RelatedFile {
        file_name: related.file_name,
        size_in_bytes: related.size_in_bytes,
        sha256,
        source_sha256,
    })
}

/// A `hashes.sha256`-like field: the standard base64 of 32 bytes.
fn sha256_field(field: &str, text: &str) -> Result<[u8; 32], OsUpdateError> {
    STANDARD
        .decode(text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| {
            field_error(
                field,
                format!("\"{}\"", bounded_display(text)),
                "the standard base64 of 32 bytes",
            )
        })
}

/// Refuses a string longer than [`MAX_FIELD_BYTES`].
fn check_field(field: &str, value: &str) -> Result<(), OsUpdateError> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(field_error(
            field,
            format!("{} bytes long", value.len()),
            "at most 256 bytes",
        ));
    }
    Ok(())
}

fn field_error(field: &str, value: String, rule: &'static str) -> OsUpdateError {
    OsUpdateError::ManifestField {
        field: bounded_display(field),
        value,
        rule,
    }
}

/// `text` cut to [`MAX_FIELD_BYTES`] (at a character boundary), for an error message.
pub(crate) fn bounded_display(text: &str) -> String {
    if text.len() <= MAX_FIELD_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_FIELD_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The manifest as read: ADU's fields, others ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestIn {
    manifest_version: String,
    update_id: UpdateId,
    #[serde(deserialize_with = "unique_maps")]
    compatibility: Vec<BTreeMap<String, String>>,
    #[serde(default)]
    instructions: Option<InstructionsIn>,
    #[serde(default, deserialize_with = "optional_unique_map")]
    files: BTreeMap<String, FileIn>,
    created_date_time: String,
    #[serde(default)]
    detached_manifest_file_id: Option<String>,
}

#[derive(Deserialize)]
struct InstructionsIn {
    steps: Vec<StepIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StepIn {
    /// `inline` (the default) or `reference`.
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    handler: Option<String>,
    #[serde(default)]
    files: Option<Vec<String>>,
    #[serde(default)]
    handler_properties: Option<HandlerPropertiesIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HandlerPropertiesIn {
    #[serde(default)]
    installed_criteria: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileIn {
    /// ADU writes `fileName`; its documentation's examples spell it `filename`.
    #[serde(alias = "filename")]
    file_name: String,
    size_in_bytes: u64,
    hashes: HashesIn,
    #[serde(default)]
    download_handler: Option<DownloadHandlerIn>,
    #[serde(default, deserialize_with = "optional_unique_map")]
    related_files: BTreeMap<String, RelatedFileIn>,
}

#[derive(Deserialize)]
struct DownloadHandlerIn {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RelatedFileIn {
    #[serde(alias = "filename")]
    file_name: String,
    size_in_bytes: u64,
    hashes: HashesIn,
    #[serde(default, deserialize_with = "optional_unique_map")]
    properties: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct HashesIn {
    sha256: String,
}

/// The manifest as written, fields in ADU's order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestOut<'m> {
    manifest_version: &'m str,
    update_id: &'m UpdateId,
    compatibility: &'m [BTreeMap<String, String>],
    instructions: InstructionsOut<'m>,
    files: BTreeMap<&'m str, FileOut<'m>>,
    created_date_time: &'m str,
}

#[derive(Serialize)]
struct InstructionsOut<'m> {
    steps: Vec<StepOut<'m>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StepOut<'m> {
    #[serde(rename = "type")]
    kind: &'static str,
    handler: &'m str,
    files: &'m [String],
    handler_properties: HandlerPropertiesOut<'m>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HandlerPropertiesOut<'m> {
    #[serde(skip_serializing_if = "Option::is_none")]
    installed_criteria: Option<&'m str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileOut<'m> {
    file_name: &'m str,
    size_in_bytes: u64,
    hashes: HashesOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    download_handler: Option<DownloadHandlerOut<'m>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    related_files: BTreeMap<&'m str, RelatedFileOut<'m>>,
}

#[derive(Serialize)]
struct DownloadHandlerOut<'m> {
    id: &'m str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RelatedFileOut<'m> {
    file_name: &'m str,
    size_in_bytes: u64,
    hashes: HashesOut,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    properties: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct HashesOut {
    sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update_id() -> UpdateId {
        UpdateId {
            provider: "testudo".into(),
            name: "gateway".into(),
            version: "1.3.0".into(),
        }
    }

    fn device() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("manufacturer".to_owned(), "testudo".to_owned()),
            ("model".to_owned(), "testudo-gateway-qemu-x86_64".to_owned()),
        ])
    }

    fn manifest() -> ImportManifest {
        for_bundle(
            update_id(),
            device(),
            "update.raucb",
            81_920,
            [0xab; 32],
            "1.3.0",
            "2026-12-04T00:00:00Z",
        )
    }

    /// A manifest written by hand as ADU writes one: other field order, fields this crate
    /// does not use, `type` absent.
    const ADU_SHAPED: &str = r#"{
        "updateId": {"provider": "testudo", "name": "gateway", "version": "1.3.0"},
        "manifestVersion": "5",
        "description": "ignored",
        "compatibility": [{"model": "testudo-gateway-qemu-x86_64", "manufacturer": "testudo"}],
        "instructions": {"steps": [{"handler": "testudo/bundle:1", "files": ["f1"],
            "handlerProperties": {"installedCriteria": "1.3.0", "extra": {"a": [1]}}}]},
        "files": {"f1": {"fileName": "update.raucb", "sizeInBytes": 81920,
            "hashes": {"sha256": "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="},
            "mimeType": "application/octet-stream", "relatedFiles": {}}},
        "createdDateTime": "2026-12-04T00:00:00Z"
    }"#;

    #[test]
    fn the_json_form_round_trips_and_is_deterministic() {
        let manifest = manifest();
        let json = manifest.to_json();
        assert_eq!(parse(json.as_bytes()).unwrap(), manifest);
        assert_eq!(manifest.clone().to_json(), json);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["manifestVersion"], "5");
        assert_eq!(value["instructions"]["steps"][0]["type"], "inline");
        assert_eq!(value["instructions"]["steps"][0]["handler"], HANDLER);
        assert_eq!(
            value["instructions"]["steps"][0]["handlerProperties"]["installedCriteria"],
            "1.3.0"
        );
        assert_eq!(value["files"]["bundle"]["fileName"], "update.raucb");
        assert_eq!(value["files"]["bundle"]["sizeInBytes"], 81_920);
        assert_eq!(
            value["files"]["bundle"]["hashes"]["sha256"],
            STANDARD.encode([0xab; 32])
        );
        assert!(json.starts_with(r#"{"manifestVersion":"5","updateId":{"provider":"testudo""#));
    }

    #[test]
    fn an_adu_shaped_manifest_is_read_and_its_bundle_step_found() {
        let manifest = parse(ADU_SHAPED.as_bytes()).unwrap();
        let step = manifest.bundle_step().unwrap();
        assert_eq!(step.file_id, "f1");
        assert_eq!(step.file.size_in_bytes, 81_920);
        assert_eq!(step.file.sha256, [0xab; 32]);
        assert_eq!(step.installed_criteria, "1.3.0");
        assert_eq!(manifest.update_id, update_id());
        // The documentation's spelling `filename` is read too.
        let lower = ADU_SHAPED.replace("fileName", "filename");
        assert_eq!(parse(lower.as_bytes()).unwrap(), manifest);
    }

    fn with_delta() -> ImportManifest {
        let mut manifest = manifest();
        assert!(manifest.add_delta(
            "delta-1",
            RelatedFile {
                file_name: "from-1.2.0.raucb".into(),
                size_in_bytes: 900,
                sha256: [0xcd; 32],
                source_sha256: Some([0xef; 32]),
            },
        ));
        manifest
    }

    #[test]
    fn deltas_are_related_files_in_adus_shape_and_round_trip() {
        let manifest = with_delta();
        let json = manifest.to_json();
        assert_eq!(parse(json.as_bytes()).unwrap(), manifest);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let bundle = &value["files"]["bundle"];
        assert_eq!(bundle["downloadHandler"]["id"], DELTA_DOWNLOAD_HANDLER);
        let delta = &bundle["relatedFiles"]["delta-1"];
        assert_eq!(delta["fileName"], "from-1.2.0.raucb");
        assert_eq!(delta["sizeInBytes"], 900);
        assert_eq!(
            delta["properties"][SOURCE_FILE_HASH],
            STANDARD.encode([0xef; 32])
        );
        assert_eq!(delta["properties"][SOURCE_FILE_HASH_ALGORITHM], "sha256");
        let step = manifest.bundle_step().unwrap();
        let deltas: Vec<_> = step.file.deltas().collect();
        assert_eq!(deltas.len(), 1);
        assert_eq!((deltas[0].0, deltas[0].2), ("delta-1", [0xef; 32]));
        // Without the delta download handler, related files are not deltas.
        let mut other = manifest.clone();
        other
            .files
            .get_mut(BUNDLE_FILE_ID)
            .unwrap()
            .download_handler = Some("x/y:1".into());
        assert_eq!(other.bundle_step().unwrap().file.deltas().count(), 0);
        // Another hash algorithm: no source hash, not a delta this device can use.
        let algorithm = "\"microsoft.sourceFileHashAlgorithm\":\"sha256\"";
        assert!(json.contains(algorithm), "{json}");
        let md5 = json.replace(algorithm, "\"microsoft.sourceFileHashAlgorithm\":\"md5\"");
        let parsed = parse(md5.as_bytes()).unwrap();
        assert_eq!(parsed.bundle_step().unwrap().file.deltas().count(), 0);
    }

    #[test]
    fn malformed_related_files_are_refused() {
        let json = with_delta().to_json();
        let edit = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
            edit(&mut value);
            parse(&serde_json::to_vec(&value).unwrap())
                .unwrap_err()
                .to_string()
        };
        let bad_hash = edit(&|v| {
            v["files"]["bundle"]["relatedFiles"]["delta-1"]["properties"][SOURCE_FILE_HASH] =
                "short".into()
        });
        assert!(bad_hash.contains("microsoft.sourceFileHash"), "{bad_hash}");
        let same_id = edit(&|v| {
            let delta = v["files"]["bundle"]["relatedFiles"]["delta-1"].clone();
            v["files"]["bundle"]["relatedFiles"]["bundle"] = delta;
        });
        assert!(same_id.contains("names two files"), "{same_id}");
        let many = edit(&|v| {
            let delta = v["files"]["bundle"]["relatedFiles"]["delta-1"].clone();
            for i in 0..11 {
                v["files"]["bundle"]["relatedFiles"][format!("d{i}")] = delta.clone();
            }
        });
        assert!(many.contains("at most 10 related files"), "{many}");
        let repeated = json.replace(
            "\"relatedFiles\":{",
            "\"relatedFiles\":{\"delta-1\":{\"fileName\":\"a\",\"sizeInBytes\":1,\"hashes\":{\"sha256\":\"q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\"}},",
        );
        assert!(
            parse(repeated.as_bytes()).is_err(),
            "a repeated related file id"
        );
    }

    #[test]
    fn the_update_id_is_reported_as_a_json_string() {
        assert_eq!(
            update_id().to_json_string(),
            r#"{"provider":"testudo","name":"gateway","version":"1.3.0"}"#
        );
    }

    fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut value: serde_json::Value = serde_json::from_str(&manifest().to_json()).unwrap();
        edit(&mut value);
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn malformed_manifests_are_refused_with_the_failing_step() {
        let error = |bytes: &[u8]| parse(bytes).unwrap_err();
        assert!(matches!(
            error(&with(|v| v["manifestVersion"] = "4".into())),
            OsUpdateError::ManifestVersion { found } if found == "4"
        ));
        assert!(matches!(
            error(&with(|v| v["instructions"]["steps"][0]["files"] = serde_json::json!(["nope"]))),
            OsUpdateError::UnknownFileId { step: 0, file_id } if file_id == "nope"
        ));
        assert!(matches!(
            error(&with(|v| {
                v["files"]["second"] = v["files"]["bundle"].clone();
                v["instructions"]["steps"][0]["files"] = serde_json::json!(["bundle", "second"]);
            })),
            OsUpdateError::StepFiles { step: 0, found: 2 }
        ));
        assert!(matches!(
            error(&with(
                |v| v["instructions"]["steps"][0]["files"] = serde_json::json!([])
            )),
            OsUpdateError::StepFiles { step: 0, found: 0 }
        ));
        assert!(matches!(
            error(&with(|v| v["files"]["bundle"]["hashes"]["sha256"] = "q6urqw==".into())),
            OsUpdateError::ManifestField { field, .. } if field == "files.bundle.hashes.sha256"
        ));
        assert!(matches!(
            error(&with(|v| v["compatibility"] = serde_json::json!([{}]))),
            OsUpdateError::ManifestField { field, .. } if field == "compatibility[0]"
        ));
        assert!(matches!(
            error(&with(|v| v["compatibility"] = serde_json::json!([]))),
            OsUpdateError::ManifestField { field, .. } if field == "compatibility"
        ));
        assert!(matches!(
            error(&with(|v| v["instructions"]["steps"][0]["type"] = "reference".into())),
            OsUpdateError::ManifestField { field, .. } if field == "instructions.steps[0].type"
        ));
        assert!(matches!(
            error(&with(|v| v["detachedManifestFileId"] = "f9".into())),
            OsUpdateError::ManifestDetached { file_id } if file_id == "f9"
        ));
        assert!(matches!(
            error(&with(|v| v["updateId"]["version"] = "1".repeat(300).into())),
            OsUpdateError::ManifestField { field, .. } if field == "updateId.version"
        ));
        assert!(matches!(
            error(&with(|v| v["files"]["bundle"]["sizeInBytes"] = (-1).into())),
            OsUpdateError::ManifestJson { .. }
        ));
        assert!(matches!(
            error(&with(|v| v["compatibility"][0]["model"] = 7.into())),
            OsUpdateError::ManifestJson { .. }
        ));
        assert!(matches!(
            error(br#"{"manifestVersion":"5"}"#),
            OsUpdateError::ManifestJson { .. }
        ));
        assert!(matches!(
            error(b"not json"),
            OsUpdateError::ManifestJson { .. }
        ));
    }

    #[test]
    fn repeated_keys_oversize_and_deep_nesting_are_refused_before_use() {
        // Two entries for one file id: which would a reader take?
        let json = manifest().to_json();
        let file = r#""bundle":{"fileName":"update.raucb""#;
        let twice = json.replacen(
            file,
            &format!(
                r#""bundle":{{"fileName":"x","sizeInBytes":1,"hashes":{{"sha256":"{}"}}}},{file}"#,
                STANDARD.encode([0; 32])
            ),
            1,
        );
        assert!(matches!(
            parse(twice.as_bytes()),
            Err(OsUpdateError::ManifestJson { source }) if source.to_string().contains("twice")
        ));
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            parse(&big),
            Err(OsUpdateError::ManifestSize { found, .. }) if found == MAX_MANIFEST_BYTES + 1
        ));
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_NESTING + 1),
            "]".repeat(MAX_NESTING + 1)
        );
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(OsUpdateError::ManifestNesting { .. })
        ));
    }

    #[test]
    fn the_bundle_step_is_the_one_testudo_step() {
        let mut manifest = manifest();
        let mut other = manifest.steps[0].clone();
        other.handler = "microsoft/swupdate:1".into();
        manifest.steps.push(other);
        assert!(matches!(
            manifest.bundle_step(),
            Err(OsUpdateError::UnsupportedHandler { step: 1, handler }) if handler == "microsoft/swupdate:1"
        ));
        manifest.steps[1].handler = HANDLER.into();
        assert!(matches!(
            manifest.bundle_step(),
            Err(OsUpdateError::BundleSteps { found: 2 })
        ));
        manifest.steps.pop();
        manifest.steps[0].installed_criteria = None;
        assert!(matches!(
            manifest.bundle_step(),
            Err(OsUpdateError::MissingInstalledCriteria { step: 0 })
        ));
        // Through the JSON form too: a manifest without criteria parses, has no bundle step.
        let parsed = parse(manifest.to_json().as_bytes()).unwrap();
        assert!(matches!(
            parsed.bundle_step(),
            Err(OsUpdateError::MissingInstalledCriteria { step: 0 })
        ));
        manifest.steps.clear();
        assert!(matches!(
            manifest.bundle_step(),
            Err(OsUpdateError::BundleSteps { found: 0 })
        ));
    }

    #[test]
    fn compatibility_is_one_set_matched_whole() {
        let mut manifest = manifest();
        assert!(manifest.is_compatible(&device()));
        let mut more = device();
        more.insert("group".into(), "eu".into());
        assert!(
            manifest.is_compatible(&more),
            "extra device properties do not matter"
        );
        let mut other = device();
        other.insert("model".into(), "another-board".into());
        assert!(!manifest.is_compatible(&other));
        let mut partial = device();
        partial.remove("model");
        assert!(!manifest.is_compatible(&partial));
        let mut upper = device();
        upper.insert("manufacturer".into(), "Testudo".into());
        assert!(!manifest.is_compatible(&upper), "values compare exactly");
        manifest.compatibility.push(other.clone());
        assert!(manifest.is_compatible(&other), "any set may fit");
        manifest.compatibility = vec![BTreeMap::new()];
        assert!(
            !manifest.is_compatible(&device()),
            "an empty set fits nothing"
        );
    }
}
