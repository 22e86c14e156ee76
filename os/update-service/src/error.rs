//! Errors of the updater component.

/// What can go wrong confirming a boot.
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
    /// Asking init to reboot failed.
    #[error("asking init to reboot")]
    Reboot {
        #[source]
        source: testudo_scheme::SchemeError,
    },
}
