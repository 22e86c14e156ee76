//! A/B updater: RAUC-compatible bundles, slots, boot selection, install.
