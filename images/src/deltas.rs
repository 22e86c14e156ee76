//! Delta bundles beside a build's full bundle: for each published base version a device may
//! run (its full `update.raucb`), `delta-from-<version>.raucb` turns that base's rootfs into
//! the one just built (`testudo_updater::delta`). The full bundle is always there too: a
//! device on any other version, or one a delta does not fit, installs it.

use std::path::{Path, PathBuf};

use testudo_updater::keys::DevKeys;
use testudo_updater::signature::CheckPurpose;
use testudo_updater::{bundle, Keyring};

use crate::error::{ImageError, Result};

/// The file name of the delta from a base of `version`.
pub fn delta_file_name(version: &str) -> String {
    format!("delta-from-{version}.raucb")
}

/// One delta written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenDelta {
    /// Where.
    pub path: PathBuf,
    /// The base's version.
    pub base_version: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Writes, into `out_dir`, a delta from each bundle of `bases` to `out_dir`'s `update.raucb`
/// (both verified with `keys`' keyring first), signed with `keys`.
pub fn write_deltas(
    out_dir: &Path,
    keys: &DevKeys,
    bases: &[PathBuf],
) -> Result<Vec<WrittenDelta>> {
    if bases.is_empty() {
        return Ok(Vec::new());
    }
    let bundle_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source: testudo_updater::UpdaterError| ImageError::Bundle {
            path,
            source: Box::new(source),
        }
    };
    let keyring =
        Keyring::load(&keys.ca_cert, CheckPurpose::default()).map_err(bundle_err(&keys.ca_cert))?;
    let new_path = out_dir.join(crate::builder::BUNDLE);
    let new = bundle::open(&new_path, &keyring).map_err(bundle_err(&new_path))?;
    let mut written = Vec::new();
    for base_path in bases {
        let base = bundle::open(base_path, &keyring).map_err(bundle_err(base_path))?;
        let base_version = base.manifest.version.clone().unwrap_or_default();
        let path = out_dir.join(delta_file_name(&base_version));
        testudo_updater::delta::create(&base, &new, &keys.signer(), &path)
            .map_err(bundle_err(&path))?;
        let size = std::fs::metadata(&path)
            .map_err(|source| ImageError::BundleRead {
                path: path.clone(),
                source: Box::new(source),
            })?
            .len();
        written.push(WrittenDelta {
            path,
            base_version,
            size,
        });
    }
    Ok(written)
}
