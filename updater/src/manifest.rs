//! `manifest.raucm`: what a bundle contains and for which system. RAUC 1.8's fields only
//! (`type=` in image sections is 1.15+ and rejected by 1.8, so it is never written).

use crate::delta::{DeltaSpec, META_GROUP_PREFIX};
use crate::error::{Result, UpdaterError};
use crate::ini::{Group, KeyFile};

/// The file name of the manifest inside the payload.
pub const MANIFEST_FILENAME: &str = "manifest.raucm";

/// How the payload is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleFormat {
    /// Detached CMS over the whole squashfs.
    Plain,
    /// Inline CMS over the manifest, which carries a dm-verity root hash of the squashfs.
    Verity,
}

impl BundleFormat {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BundleFormat::Plain => "plain",
            BundleFormat::Verity => "verity",
        }
    }
}

impl std::str::FromStr for BundleFormat {
    type Err = UpdaterError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "plain" => Ok(BundleFormat::Plain),
            "verity" => Ok(BundleFormat::Verity),
            other => Err(UpdaterError::Manifest {
                message: format!("unsupported bundle format {other:?} (plain or verity)"),
            }),
        }
    }
}

/// The `verity-*` fields of a verity bundle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerityParams {
    /// Root hash of the hash tree, 32 bytes.
    #[serde(with = "hex_bytes")]
    pub root_hash: [u8; 32],
    /// Salt, 32 bytes.
    #[serde(with = "hex_bytes")]
    pub salt: [u8; 32],
    /// Size of the hash tree in bytes (follows the squashfs directly).
    pub hash_tree_size: u64,
}

/// One `[image.<slotclass>]` section.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageEntry {
    /// The slot class it installs into (e.g. `rootfs`).
    pub slot_class: String,
    /// File name in the payload.
    pub filename: String,
    /// sha256 of the image.
    #[serde(with = "hex_bytes")]
    pub sha256: [u8; 32],
    /// Size in bytes.
    pub size: u64,
    /// `hooks=` value, if any.
    pub hooks: Option<String>,
    /// `adaptive=` value, if any.
    pub adaptive: Option<String>,
    /// For a delta bundle: the `[meta.delta.<slot class>]` record; the file is then a patch
    /// and `sha256`/`size` are the patch's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaSpec>,
}

impl ImageEntry {
    /// Bytes this image occupies in its slot once installed: the target's size for a delta.
    pub fn installed_size(&self) -> u64 {
        self.delta.as_ref().map_or(self.size, |d| d.target.size)
    }

    /// sha256 of what the slot holds once installed: the target's for a delta.
    pub fn installed_sha256(&self) -> [u8; 32] {
        self.delta.as_ref().map_or(self.sha256, |d| d.target.sha256)
    }
}

/// A parsed manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Manifest {
    /// `[update] compatible=`.
    pub compatible: String,
    /// `[update] version=`.
    pub version: Option<String>,
    /// `[update] description=`.
    pub description: Option<String>,
    /// `[update] build=`.
    pub build: Option<String>,
    /// `[bundle] format=` (plain when absent, as in RAUC).
    pub format: BundleFormat,
    /// Present exactly when `format` is verity.
    pub verity: Option<VerityParams>,
    /// `[hooks] filename=`.
    pub hooks_filename: Option<String>,
    /// Images in file order.
    pub images: Vec<ImageEntry>,
}

fn bad(message: impl Into<String>) -> UpdaterError {
    UpdaterError::Manifest {
        message: message.into(),
    }
}

pub(crate) fn hex32(group: &Group, key: &str) -> Result<[u8; 32]> {
    let text = group
        .get(key)
        .ok_or_else(|| bad(format!("[{}] lacks {key}=", group.name)))?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| bad(format!("[{}] {key}= is not 64 hex digits", group.name)))?;
    Ok(out)
}

pub(crate) fn number(group: &Group, key: &str) -> Result<u64> {
    let text = group
        .get(key)
        .ok_or_else(|| bad(format!("[{}] lacks {key}=", group.name)))?;
    text.parse()
        .map_err(|_| bad(format!("[{}] {key}={text:?} is not a number", group.name)))
}

/// Checks a file name from the manifest cannot escape the extraction directory.
pub fn check_filename(name: &str) -> Result<()> {
    if name.is_empty()
        || name == "."
        || name == ".."
        // No path separators; no glob characters (unsquashfs, which `rauc` runs, matches names
        // as patterns).
        || name.contains(['/', '\0', '*', '?', '[', '\\'])
        || name == MANIFEST_FILENAME
    {
        return Err(bad(format!("invalid image file name {name:?}")));
    }
    Ok(())
}

impl Manifest {
    /// Parses manifest text (untrusted until the signature is checked; parsed defensively).
    pub fn parse(text: &str) -> Result<Self> {
        let file = KeyFile::parse(text, MANIFEST_FILENAME)?;
        let update = file
            .group("update")
            .ok_or_else(|| bad("missing [update] section"))?;
        let compatible = update
            .get("compatible")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| bad("[update] lacks compatible="))?
            .to_string();
        let format = match file.group("bundle").and_then(|b| b.get("format")) {
            Some(format) => format.parse()?,
            None => BundleFormat::Plain,
        };
        let verity = match format {
            BundleFormat::Plain => None,
            BundleFormat::Verity => {
                let bundle = file
                    .group("bundle")
                    .ok_or_else(|| bad("missing [bundle] section"))?;
                let hash_tree_size = number(bundle, "verity-size")?;
                if hash_tree_size == 0 || !hash_tree_size.is_multiple_of(4096) {
                    return Err(bad("verity-size is not a positive multiple of 4096"));
                }
                Some(VerityParams {
                    root_hash: hex32(bundle, "verity-hash")?,
                    salt: hex32(bundle, "verity-salt")?,
                    hash_tree_size,
                })
            }
        };
        let mut images = Vec::new();
        for group in &file.groups {
            let Some(slot_class) = group.name.strip_prefix("image.") else {
                continue;
            };
            if slot_class.is_empty() || slot_class.contains('/') {
                return Err(bad(format!("invalid image section [{}]", group.name)));
            }
            let filename = group
                .get("filename")
                .ok_or_else(|| bad(format!("[{}] lacks filename=", group.name)))?
                .to_string();
            check_filename(&filename)?;
            images.push(ImageEntry {
                slot_class: slot_class.to_string(),
                filename,
                sha256: hex32(group, "sha256")?,
                size: number(group, "size")?,
                hooks: group.get("hooks").map(str::to_string),
                adaptive: group.get("adaptive").map(str::to_string),
                delta: None,
            });
        }
        for group in &file.groups {
            let Some(slot_class) = group.name.strip_prefix(META_GROUP_PREFIX) else {
                continue;
            };
            let image = images
                .iter_mut()
                .find(|i| i.slot_class == slot_class)
                .ok_or_else(|| bad(format!("[{}] names no image of the bundle", group.name)))?;
            image.delta = Some(DeltaSpec::parse(group)?);
        }
        let hooks_filename = file
            .group("hooks")
            .and_then(|h| h.get("filename"))
            .map(str::to_string);
        Ok(Manifest {
            compatible,
            version: update.get("version").map(str::to_string),
            description: update.get("description").map(str::to_string),
            build: update.get("build").map(str::to_string),
            format,
            verity,
            hooks_filename,
            images,
        })
    }

    /// Renders in the key order `rauc bundle` writes.
    pub fn render(&self) -> String {
        let mut file = KeyFile::default();
        let update = file.group_mut("update");
        update.set("compatible", self.compatible.as_str());
        update.set_opt("version", self.version.as_deref());
        update.set_opt("description", self.description.as_deref());
        update.set_opt("build", self.build.as_deref());
        let bundle = file.group_mut("bundle");
        bundle.set("format", self.format.as_str());
        if let Some(verity) = &self.verity {
            bundle.set("verity-hash", hex::encode(verity.root_hash));
            bundle.set("verity-salt", hex::encode(verity.salt));
            bundle.set("verity-size", verity.hash_tree_size.to_string());
        }
        if let Some(hooks) = &self.hooks_filename {
            file.group_mut("hooks").set("filename", hooks.as_str());
        }
        for image in &self.images {
            let group = file.group_mut(&format!("image.{}", image.slot_class));
            group.set("sha256", hex::encode(image.sha256));
            group.set("size", image.size.to_string());
            group.set("filename", image.filename.as_str());
            group.set_opt("hooks", image.hooks.as_deref());
            group.set_opt("adaptive", image.adaptive.as_deref());
        }
        for image in &self.images {
            if let Some(delta) = &image.delta {
                delta.render(file.group_mut(&format!("{META_GROUP_PREFIX}{}", image.slot_class)));
            }
        }
        file.render()
    }

    /// The image for `slot_class`.
    pub fn image(&self, slot_class: &str) -> Option<&ImageEntry> {
        self.images.iter().find(|i| i.slot_class == slot_class)
    }
}

pub(crate) mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAUC_VERITY: &str = "[update]\ncompatible=test\nversion=1.0\n\n[bundle]\nformat=verity\nverity-hash=7ea2015901faa4ac6e6b956cf2dfa85f57999003dc30f1e9957be3fa3783b90f\nverity-salt=21b5048bd9a7e1a06a58141b36a0c7358f331de98af5be4e7c5715af904da4b9\nverity-size=4096\n\n[image.rootfs]\nsha256=bc482a6a90c2c397fa73d2e9029288a7b2feede0327d00f51a66e620b97a4747\nsize=100000\nfilename=rootfs.img\n";

    #[test]
    fn parses_and_renders_what_rauc_writes_byte_for_byte() {
        let manifest = Manifest::parse(RAUC_VERITY).unwrap();
        assert_eq!(manifest.format, BundleFormat::Verity);
        assert_eq!(manifest.images[0].size, 100000);
        assert_eq!(manifest.render(), RAUC_VERITY);
    }

    #[test]
    fn rejects_bad_fields() {
        let cases = [
            "[update]\nversion=1\n",
            "[update]\ncompatible=x\n[bundle]\nformat=zip\n",
            "[update]\ncompatible=x\n[bundle]\nformat=verity\n",
            "[update]\ncompatible=x\n[image.rootfs]\nfilename=../x\nsha256=00\nsize=1\n",
            "[update]\ncompatible=x\n[image.rootfs]\nfilename=a\nsha256=zz\nsize=1\n",
        ];
        for case in cases {
            assert!(Manifest::parse(case).is_err(), "{case:?}");
        }
    }
}
