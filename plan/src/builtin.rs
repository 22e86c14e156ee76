//! The provider every plan has without configuring it: init itself. Routes name its
//! capabilities as `init.<capability>` (`from = "init.power"` in a config); no configured
//! component may be called `init`.

use crate::interfaces;

/// The component name routes use for init.
pub const INIT: &str = "init";

/// Init's capabilities: (capability name, interface).
pub const INIT_CAPABILITIES: &[(&str, &str)] = &[
    (interfaces::STATUS, interfaces::STATUS),
    (interfaces::POWER, interfaces::POWER),
    (interfaces::DEPLOYMENT, interfaces::DEPLOYMENT),
];

/// The interface of init's capability `capability`, if init provides it.
pub fn init_capability(capability: &str) -> Option<&'static str> {
    INIT_CAPABILITIES
        .iter()
        .find(|(name, _)| *name == capability)
        .map(|(_, interface)| *interface)
}
