//! Manifest text (untrusted until the signature checks; parsed from plain bundles' payload).

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(manifest) = testudo_updater::Manifest::parse(text) {
            // What we render must parse back to the same manifest.
            let again = testudo_updater::Manifest::parse(&manifest.render());
            assert_eq!(again.ok(), Some(manifest));
        }
    }
}
