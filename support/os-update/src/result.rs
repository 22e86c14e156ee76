//! ADU's result codes, as a device reports them in `lastInstallResult`: [`APPLIED`],
//! [`FAILURE`] or [`CANCELLED`] as `resultCode`, and for a failure, which step failed
//! ([`FailedStep`]) as `extendedResultCode`.
//!
//! ADU's extended result codes are 32-bit: the top 4 bits are the facility, the next 8 the
//! component, the low 20 the value. testudo reports facility 3 (ADU's facility of update
//! content handlers, which [`crate::manifest::HANDLER`] is), component 0, and the step's
//! number as the value: `0x30000000 | step` ([`FailedStep::extended_result_code`]). The
//! numbers are stable: a step is never renumbered, a new one takes the next number.

/// `resultCode` of an update that is installed and runs (ADU: `ADUC_Result_Apply_Success`).
pub const APPLIED: i64 = 700;

/// `resultCode` of a failed update.
pub const FAILURE: i64 = 0;

/// `resultCode` of a cancelled update.
pub const CANCELLED: i64 = -1;

/// The facility bits of testudo's extended result codes: ADU's facility 3, update content
/// handlers.
pub const FACILITY: i64 = 0x3000_0000;

/// The step of an OS update that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailedStep {
    /// The manifest's signature chain does not verify to the device's root keys (or the
    /// root keys cannot be read).
    ManifestSignature,
    /// The (signed) manifest is not one a device can act on: no single bundle step, no
    /// installed criteria.
    ManifestContent,
    /// The update is not for this device (compatibility, or the bundle's `compatible`).
    Incompatible,
    /// The bundle could not be downloaded whole.
    Download,
    /// The downloaded bundle's size or sha256 is not the manifest's.
    FileHash,
    /// The bundle's own CMS signature does not verify against the device's keyring.
    BundleSignature,
    /// The bundle's content is refused (manifest, verity tree, version not the installed
    /// criteria).
    BundleContent,
    /// The update is older than what runs, and downgrades are refused.
    Downgrade,
    /// The bundle could not be staged (no space, the staging file).
    Staging,
    /// Writing the other slot or switching to it failed.
    Install,
    /// The new slot did not boot healthy and the device went back to the old one.
    RolledBack,
}

impl FailedStep {
    /// Every step, in number order.
    pub const ALL: [FailedStep; 11] = [
        FailedStep::ManifestSignature,
        FailedStep::ManifestContent,
        FailedStep::Incompatible,
        FailedStep::Download,
        FailedStep::FileHash,
        FailedStep::BundleSignature,
        FailedStep::BundleContent,
        FailedStep::Downgrade,
        FailedStep::Staging,
        FailedStep::Install,
        FailedStep::RolledBack,
    ];

    /// The step's stable number (1 up; never reused).
    pub fn number(self) -> i64 {
        match self {
            FailedStep::ManifestSignature => 1,
            FailedStep::ManifestContent => 2,
            FailedStep::Incompatible => 3,
            FailedStep::Download => 4,
            FailedStep::FileHash => 5,
            FailedStep::BundleSignature => 6,
            FailedStep::BundleContent => 7,
            FailedStep::Downgrade => 8,
            FailedStep::Staging => 9,
            FailedStep::Install => 10,
            FailedStep::RolledBack => 11,
        }
    }

    /// ADU's `extendedResultCode` of a failure at this step: `0x30000000 | number`.
    pub fn extended_result_code(self) -> i64 {
        FACILITY | self.number()
    }

    /// The step's stable name (snake case), as the `update` capability reports it.
    pub fn name(self) -> &'static str {
        match self {
            FailedStep::ManifestSignature => "manifest_signature",
            FailedStep::ManifestContent => "manifest_content",
            FailedStep::Incompatible => "incompatible",
            FailedStep::Download => "download",
            FailedStep::FileHash => "file_hash",
            FailedStep::BundleSignature => "bundle_signature",
            FailedStep::BundleContent => "bundle_content",
            FailedStep::Downgrade => "downgrade",
            FailedStep::Staging => "staging",
            FailedStep::Install => "install",
            FailedStep::RolledBack => "rolled_back",
        }
    }

    /// The step named `name` ([`FailedStep::name`]), if any.
    pub fn from_name(name: &str) -> Option<FailedStep> {
        FailedStep::ALL.into_iter().find(|step| step.name() == name)
    }

    /// The step whose extended result code is `code`, if any.
    pub fn from_extended_result_code(code: i64) -> Option<FailedStep> {
        FailedStep::ALL
            .into_iter()
            .find(|step| step.extended_result_code() == code)
    }
}

impl std::fmt::Display for FailedStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reported codes and names are a contract with the cloud side: pinned here.
    #[test]
    fn codes_and_names_are_stable() {
        let table: Vec<(&str, i64)> = FailedStep::ALL
            .iter()
            .map(|step| (step.name(), step.extended_result_code()))
            .collect();
        assert_eq!(
            table,
            [
                ("manifest_signature", 0x3000_0001),
                ("manifest_content", 0x3000_0002),
                ("incompatible", 0x3000_0003),
                ("download", 0x3000_0004),
                ("file_hash", 0x3000_0005),
                ("bundle_signature", 0x3000_0006),
                ("bundle_content", 0x3000_0007),
                ("downgrade", 0x3000_0008),
                ("staging", 0x3000_0009),
                ("install", 0x3000_000a),
                ("rolled_back", 0x3000_000b),
            ]
        );
        assert_eq!((APPLIED, FAILURE, CANCELLED), (700, 0, -1));
    }

    #[test]
    fn codes_fit_adu_s_32_bit_layout_and_map_back() {
        for step in FailedStep::ALL {
            let code = step.extended_result_code();
            // Positive as an i32 (ADU's type), facility 3, component 0.
            assert!(i32::try_from(code).is_ok());
            assert_eq!(code >> 28, 3);
            assert_eq!((code >> 20) & 0xff, 0);
            assert_eq!(FailedStep::from_name(step.name()), Some(step));
            assert_eq!(FailedStep::from_extended_result_code(code), Some(step));
            assert_eq!(step.to_string(), step.name());
        }
        assert_eq!(FailedStep::from_name("Install"), None);
        assert_eq!(FailedStep::from_extended_result_code(0), None);
    }
}
