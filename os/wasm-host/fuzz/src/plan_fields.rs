//! Untrusted plan JSON as the WASM host reads it: parsing, resolving every component (and
//! one that is not there) into a `PlannedApp` and turning its limits into `AppLimits` must
//! end in an error or a value, never a panic.

use std::path::PathBuf;

use testudo_wasm_host::{AppLimits, PlanPaths, PlannedApp};

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let Ok(plan) = testudo_plan::Plan::from_bytes(data) else {
        return;
    };
    let paths = PlanPaths {
        app_root: PathBuf::from("apps"),
        storage_root: PathBuf::from("data"),
    };
    let names = plan
        .components
        .keys()
        .cloned()
        .chain(["\u{0}not-a-component".to_owned()]);
    for name in names {
        let Ok(planned) = PlannedApp::from_plan(&plan, &name, &paths) else {
            continue;
        };
        assert_eq!(planned.name, name);
        assert!(planned.module.starts_with(&paths.app_root) || planned.module.is_absolute());
        let _ = AppLimits::from_plan(&planned.limits);
        for dir in &planned.grants.dirs {
            assert!(dir.guest.starts_with('/'));
        }
    }
}
