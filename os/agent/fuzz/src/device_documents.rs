//! Documents the agent component reads back from its storage or its environment are
//! untrusted (a damaged data partition, a wrong build): the stored DPS assignment and the
//! system description must be parsed without panicking.

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    if let Ok(Some(stored)) = testudo_agent::provisioning::parse(data) {
        let _ = stored.applies_to("scope", "id");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = testudo_plan::env::from_value::<testudo_plan::env::SystemInfo>(text);
        let _ = testudo_agent::cloud::CloudSettings::from_vars(|_| Some(text.to_owned()));
    }
}
