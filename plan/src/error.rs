//! Every way reading a plan can fail.

use std::path::PathBuf;

/// Why a plan could not be read. Display texts never repeat a source error; it is reachable
/// through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The plan file could not be read.
    #[error("{}: cannot read the plan", path.display())]
    Read {
        /// The plan file.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },

    /// The bytes are not JSON, or not an object with a numeric `format`.
    #[error("not a testudo plan: no JSON object with a numeric `format`")]
    NotAPlan {
        /// The JSON parser's complaint, when the bytes are not JSON at all.
        #[source]
        source: Option<serde_json::Error>,
    },

    /// The plan has a format version this build does not understand.
    #[error("plan format {found}, this build reads format {expected} (rebuild the image with a matching testudo)")]
    Format {
        /// The plan's `format`.
        found: u64,
        /// [`crate::PLAN_FORMAT_VERSION`].
        expected: u32,
    },

    /// The plan has the right format version but does not match its types.
    #[error("plan of format {format} does not match its definition")]
    Shape {
        /// The plan's `format`.
        format: u32,
        /// serde's complaint (with the field's position).
        #[source]
        source: serde_json::Error,
    },

    /// A plan file could be read but not parsed (wraps the other variants with the path).
    #[error("{}: invalid plan", path.display())]
    File {
        /// The plan file.
        path: PathBuf,
        /// Why its bytes were refused.
        #[source]
        source: Box<PlanError>,
    },
}
