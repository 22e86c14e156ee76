//! Errors of the updater component.

/// What can go wrong confirming a boot or updating the system.
#[derive(Debug, thiserror::Error)]
pub enum UpdateServiceError {
    /// The routed scheme handles could not be taken, or one is missing.
    #[error("taking the routed handle `{route}`")]
    Handle {
        /// The route's local name.
        route: &'static str,
        #[source]
        source: testudo_scheme::SchemeError,
    },
    /// Reading init's status failed.
    #[error("reading init's status")]
    ReadStatus {
        #[source]
        source: testudo_scheme::SchemeError,
    },
    /// A status line is not `name state restarts`.
    #[error("init's status has a line that is not `name state restarts`: {line:?}")]
    StatusLine {
        /// The line.
        line: String,
    },
    /// The boot-selection state could not be read or written.
    #[error("{step} the boot-selection state")]
    BootState {
        /// What was being done.
        step: &'static str,
        #[source]
        source: testudo_updater::UpdaterError,
    },
    /// The booted slot is not one the grubenv knows.
    #[error("the booted slot {slot:?} is not in the grubenv's ORDER")]
    UnknownSlot {
        /// The bootname init passed.
        slot: String,
    },
    /// A request of the `update` capability was refused as a whole.
    #[error("request refused")]
    Refused(#[source] crate::workflow::RequestRefused),
    /// The updater's directory on the data partition could not be used.
    #[error("{step} {path}")]
    UpdateDir {
        /// What was being done.
        step: &'static str,
        /// The directory.
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The kept record of the current workflow is not one this updater reads.
    #[error("the update record {path} cannot be read: {reason}")]
    Record {
        /// The record's file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// RAUC's system.conf could not be read or names no slot to install into.
    #[error("using {path}")]
    SystemConf {
        /// The file.
        path: std::path::PathBuf,
        #[source]
        source: testudo_updater::UpdaterError,
    },
    /// A thread could not be started.
    #[error("starting a thread")]
    Thread {
        #[source]
        source: std::io::Error,
    },
    /// Serving the `update` capability failed.
    #[error("serving the update capability")]
    Serve {
        #[source]
        source: testudo_scheme::SchemeError,
    },
    /// The confirmation thread panicked.
    #[error("the confirmation of the booted slot panicked")]
    ConfirmationPanicked,
    /// Asking init to reboot failed.
    #[error("asking init to reboot")]
    Reboot {
        #[source]
        source: testudo_scheme::SchemeError,
    },
}
