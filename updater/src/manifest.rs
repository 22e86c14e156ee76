//! `manifest.raucm`: what a bundle contains and for which system. RAUC 1.8's fields only
//! (`type=` in image sections is 1.15+ and rejected by 1.8, so it is never written): the
//! update, the bundle format, the install hooks and custom handler a bundle may carry, image
//! variants, and casync indexes in place of images. Parsing knows every one of them, so `info`
//! shows what `rauc info` shows and an installer can refuse what it does not run by name.

use crate::crypt::CryptKey;
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
    /// [`Verity`](Self::Verity) over an encrypted squashfs, whose key the manifest carries
    /// (`crate::crypt`).
    Crypt,
}

impl BundleFormat {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BundleFormat::Plain => "plain",
            BundleFormat::Verity => "verity",
            BundleFormat::Crypt => "crypt",
        }
    }
}

impl std::str::FromStr for BundleFormat {
    type Err = UpdaterError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "plain" => Ok(BundleFormat::Plain),
            "verity" => Ok(BundleFormat::Verity),
            "crypt" => Ok(BundleFormat::Crypt),
            other => Err(UpdaterError::Manifest {
                message: format!("unsupported bundle format {other:?} (plain, verity or crypt)"),
            }),
        }
    }
}

/// A bundle-wide hook of `[hooks] hooks=` (RAUC 1.8 knows one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BundleHook {
    /// Run before anything else, may refuse the bundle.
    InstallCheck,
}

/// A per-image hook of `[image.*] hooks=`, in the order RAUC lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageHook {
    /// Runs before the image is written.
    PreInstall,
    /// Replaces RAUC's own write of the image.
    Install,
    /// Runs after the image is written.
    PostInstall,
}

/// A name RAUC writes in a `hooks=` list.
trait HookName: Sized + Copy + Ord + 'static {
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
}

impl HookName for BundleHook {
    const ALL: &'static [Self] = &[BundleHook::InstallCheck];
    fn name(self) -> &'static str {
        "install-check"
    }
}

impl HookName for ImageHook {
    const ALL: &'static [Self] = &[
        ImageHook::PreInstall,
        ImageHook::Install,
        ImageHook::PostInstall,
    ];
    fn name(self) -> &'static str {
        match self {
            ImageHook::PreInstall => "pre-install",
            ImageHook::Install => "install",
            ImageHook::PostInstall => "post-install",
        }
    }
}

impl std::fmt::Display for BundleHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for ImageHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The hooks of a GLib string list (`a;b;`), sorted in RAUC's order without duplicates, as
/// RAUC keeps them (a flag per hook); an unknown hook is an error, as in RAUC.
fn parse_hooks<H: HookName>(group: &Group) -> Result<Vec<H>> {
    let Some(list) = group.get("hooks") else {
        return Ok(Vec::new());
    };
    let mut hooks = Vec::new();
    for name in list.split(';').filter(|name| !name.is_empty()) {
        let hook = H::ALL
            .iter()
            .copied()
            .find(|hook| hook.name() == name)
            .ok_or_else(|| {
                bad(format!(
                    "[{}] hook type {name:?} is not supported",
                    group.name
                ))
            })?;
        hooks.push(hook);
    }
    hooks.sort();
    hooks.dedup();
    Ok(hooks)
}

/// A GLib string list of `hooks` as RAUC writes it (`a;b;`), or `None` when empty.
fn render_hooks<H: HookName>(hooks: &[H]) -> Option<String> {
    (!hooks.is_empty()).then(|| {
        hooks
            .iter()
            .map(|hook| format!("{};", hook.name()))
            .collect()
    })
}

/// `[handler]`: a program of the bundle that RAUC runs instead of its own installer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Handler {
    /// `filename=`: the program, in the payload.
    pub filename: String,
    /// `args=`: extra arguments RAUC passes it.
    pub args: Option<String>,
}

/// The suffixes `rauc convert` gives the casync index that replaces an image.
pub const CASYNC_INDEX_SUFFIXES: [&str; 2] = [".caibx", ".caidx"];

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
    /// `[image.<slotclass>.<variant>]`: the variant it is for, if any.
    pub variant: Option<String>,
    /// `hooks=`: the per-image hooks, in RAUC's order.
    pub hooks: Vec<ImageHook>,
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

    /// Whether the file is a casync index (`rauc convert`) that names the image's chunks in a
    /// chunk store: `sha256` and `size` are then the image's, not the file's.
    pub fn is_casync_index(&self) -> bool {
        CASYNC_INDEX_SUFFIXES
            .iter()
            .any(|suffix| self.filename.ends_with(suffix))
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
    /// Present exactly when `format` is verity or crypt (in the signed manifest; the copy in
    /// the payload has none).
    pub verity: Option<VerityParams>,
    /// `[bundle] crypt-key=`: the payload's key, present exactly when `format` is crypt
    /// (never shown: not serialized, hidden in `Debug`).
    #[serde(skip)]
    pub crypt_key: Option<CryptKey>,
    /// `[hooks] filename=`: the hook program, in the payload.
    pub hooks_filename: Option<String>,
    /// `[hooks] hooks=`: the bundle-wide hooks.
    pub hooks: Vec<BundleHook>,
    /// `[handler]`: a custom install handler.
    pub handler: Option<Handler>,
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
            BundleFormat::Verity | BundleFormat::Crypt => {
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
        let crypt_key = match format {
            BundleFormat::Crypt => {
                let bundle = file
                    .group("bundle")
                    .ok_or_else(|| bad("missing [bundle] section"))?;
                let key = bundle
                    .get("crypt-key")
                    .ok_or_else(|| bad("[bundle] lacks crypt-key="))?;
                Some(
                    CryptKey::from_hex(key)
                        .ok_or_else(|| bad("[bundle] crypt-key= is not 64 hex digits"))?,
                )
            }
            BundleFormat::Plain | BundleFormat::Verity => None,
        };
        let mut images = Vec::new();
        for group in &file.groups {
            let Some(target) = group.name.strip_prefix("image.") else {
                continue;
            };
            // RAUC splits the name at its first two dots: `image.<slotclass>[.<variant>]`.
            let (slot_class, variant) = match target.split_once('.') {
                Some((class, variant)) => (class, Some(variant.to_string())),
                None => (target, None),
            };
            if slot_class.is_empty() || target.contains('/') || variant.as_deref() == Some("") {
                return Err(bad(format!("invalid image section [{}]", group.name)));
            }
            let hooks = parse_hooks(group)?;
            let filename = group
                .get("filename")
                .ok_or_else(|| {
                    if hooks.contains(&ImageHook::Install) {
                        bad(format!(
                            "[{}] has no filename= (an image made by its install hook alone, \
                             which only a hook-running installer can use)",
                            group.name
                        ))
                    } else {
                        bad(format!("[{}] lacks filename=", group.name))
                    }
                })?
                .to_string();
            check_filename(&filename)?;
            images.push(ImageEntry {
                slot_class: slot_class.to_string(),
                variant,
                filename,
                sha256: hex32(group, "sha256")?,
                size: number(group, "size")?,
                hooks,
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
        let hooks_group = file.group("hooks");
        let hooks_filename = hooks_group
            .and_then(|h| h.get("filename"))
            .map(str::to_string);
        let hooks = hooks_group
            .map(parse_hooks)
            .transpose()?
            .unwrap_or_default();
        let handler = match file.group("handler") {
            Some(group) => Some(Handler {
                filename: group
                    .get("filename")
                    .ok_or_else(|| bad("[handler] lacks filename="))?
                    .to_string(),
                args: group.get("args").map(str::to_string),
            }),
            None => None,
        };
        Ok(Manifest {
            compatible,
            version: update.get("version").map(str::to_string),
            description: update.get("description").map(str::to_string),
            build: update.get("build").map(str::to_string),
            format,
            verity,
            crypt_key,
            hooks_filename,
            hooks,
            handler,
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
        // RAUC writes no `[bundle]` section for a plain bundle (plain is the default).
        if self.format != BundleFormat::Plain {
            let bundle = file.group_mut("bundle");
            if let Some(key) = &self.crypt_key {
                bundle.set("crypt-key", key.to_hex());
            }
            bundle.set("format", self.format.as_str());
            if let Some(verity) = &self.verity {
                bundle.set("verity-hash", hex::encode(verity.root_hash));
                bundle.set("verity-salt", hex::encode(verity.salt));
                bundle.set("verity-size", verity.hash_tree_size.to_string());
            }
        }
        if let Some(handler) = &self.handler {
            let group = file.group_mut("handler");
            group.set("filename", handler.filename.as_str());
            group.set_opt("args", handler.args.as_deref());
        }
        if let Some(hooks) = &self.hooks_filename {
            file.group_mut("hooks").set("filename", hooks.as_str());
        }
        if let Some(hooks) = render_hooks(&self.hooks) {
            file.group_mut("hooks").set("hooks", hooks);
        }
        for image in &self.images {
            let name = match &image.variant {
                Some(variant) => format!("image.{}.{variant}", image.slot_class),
                None => format!("image.{}", image.slot_class),
            };
            let group = file.group_mut(&name);
            group.set("sha256", hex::encode(image.sha256));
            group.set("size", image.size.to_string());
            group.set("filename", image.filename.as_str());
            group.set_opt("hooks", render_hooks(&image.hooks).as_deref());
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

    /// The programs of the bundle an installer would have to run, as RAUC names them
    /// (`install-check hook`, `pre-install hook of [image.rootfs]`, `handler`), in manifest
    /// order; empty for a bundle that is only written.
    pub fn scripts(&self) -> Vec<String> {
        let mut scripts: Vec<String> = self.hooks.iter().map(|h| format!("{h} hook")).collect();
        for image in &self.images {
            for hook in &image.hooks {
                scripts.push(format!("{hook} hook of [image.{}]", image.slot_class));
            }
        }
        if let Some(handler) = &self.handler {
            scripts.push(format!("handler {}", handler.filename));
        }
        scripts
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

    /// What `rauc bundle` 1.8 wrote into the payload of a plain bundle with an install-check
    /// hook, per-image hooks, a custom handler and an image variant.
    const RAUC_SCRIPTS: &str = "[update]\ncompatible=gw\nversion=2.0\n\n[handler]\nfilename=handler.sh\nargs=--flag\n\n[hooks]\nfilename=hook.sh\nhooks=install-check;\n\n[image.rootfs]\nsha256=2a665ad306c50a7e2ca17292877e7b88ef601ccd397b612b996bc141c97634fd\nsize=100000\nfilename=rootfs.img\nhooks=pre-install;post-install;\n\n[image.appfs.v2]\nsha256=8eb2ffd18e2019d441fd864f179f0848a73c6f5552a39b0440327f1473b2bff9\nsize=5000\nfilename=app.img\n";

    #[test]
    fn knows_hooks_handlers_and_variants_and_renders_them_as_rauc_does() {
        let manifest = Manifest::parse(RAUC_SCRIPTS).unwrap();
        assert_eq!(manifest.hooks, [BundleHook::InstallCheck]);
        assert_eq!(manifest.hooks_filename.as_deref(), Some("hook.sh"));
        assert_eq!(
            manifest.handler,
            Some(Handler {
                filename: "handler.sh".into(),
                args: Some("--flag".into())
            })
        );
        assert_eq!(
            manifest.images[0].hooks,
            [ImageHook::PreInstall, ImageHook::PostInstall]
        );
        assert_eq!(manifest.images[1].slot_class, "appfs");
        assert_eq!(manifest.images[1].variant.as_deref(), Some("v2"));
        assert_eq!(
            manifest.scripts(),
            [
                "install-check hook",
                "pre-install hook of [image.rootfs]",
                "post-install hook of [image.rootfs]",
                "handler handler.sh"
            ]
        );
        assert_eq!(manifest.render(), RAUC_SCRIPTS);
    }

    #[test]
    fn refuses_unknown_hooks_keyless_crypt_bundles_and_hook_made_images() {
        let unknown = "[update]\ncompatible=x\n[hooks]\nhooks=install-check;reboot;\n";
        let err = Manifest::parse(unknown).unwrap_err();
        assert!(err.to_string().contains("\"reboot\""), "{err}");
        let crypt = "[update]\ncompatible=x\n[bundle]\nformat=crypt\nverity-hash=7ea2015901faa4ac6e6b956cf2dfa85f57999003dc30f1e9957be3fa3783b90f\nverity-salt=21b5048bd9a7e1a06a58141b36a0c7358f331de98af5be4e7c5715af904da4b9\nverity-size=4096\n";
        let err = Manifest::parse(crypt).unwrap_err();
        assert!(err.to_string().contains("crypt-key"), "{err}");
        let hook_made = "[update]\ncompatible=x\n[image.rootfs]\nhooks=install;\n";
        let err = Manifest::parse(hook_made).unwrap_err();
        assert!(err.to_string().contains("install hook"), "{err}");
    }

    #[test]
    fn tells_casync_indexes_from_images() {
        let text = "[update]\ncompatible=x\n[image.rootfs]\nfilename=rootfs.img.caibx\nsha256=bc482a6a90c2c397fa73d2e9029288a7b2feede0327d00f51a66e620b97a4747\nsize=100000\n";
        let manifest = Manifest::parse(text).unwrap();
        assert!(manifest.images[0].is_casync_index());
        assert!(!Manifest::parse(RAUC_VERITY).unwrap().images[0].is_casync_index());
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
