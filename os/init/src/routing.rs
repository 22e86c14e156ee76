//! Routing: makes a component's routed handles. Each route gets one new connection; the
//! provider's end goes over the provider's control socket (init's own status scheme for
//! routes to init) with the route's grant, the component's end is returned.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use testudo_plan::plan::{PlanComponent, Rights as PlanRights};
use testudo_scheme::{handle_pair, send_grant, Grant, Rights};

use crate::graph::INIT_COMPONENT;
use crate::LaunchError;

/// The scheme rights for the plan's rights.
pub fn rights(rights: PlanRights) -> Rights {
    match rights {
        PlanRights::Read => Rights::Read,
        PlanRights::Write => Rights::Write,
        PlanRights::ReadWrite => Rights::ReadWrite,
    }
}

/// Creates the handles for `component`'s routes (named `name`), as `(local name, fd)`.
/// `status_control` serves routes to init; `provider_control` gives a running provider's
/// control socket, `None` when it is not serving.
pub fn routed_handles<'a>(
    name: &str,
    component: &PlanComponent,
    status_control: BorrowedFd<'a>,
    provider_control: impl Fn(&str) -> Option<BorrowedFd<'a>>,
) -> Result<Vec<(String, OwnedFd)>, LaunchError> {
    let mut handles = Vec::new();
    for (local, route) in &component.uses {
        let grant = Grant {
            consumer: name.to_owned(),
            capability: route.capability.clone(),
            rights: rights(route.rights),
            allow: route.allow.clone(),
        };
        let control = if route.component == INIT_COMPONENT {
            status_control
        } else {
            provider_control(&route.component).ok_or_else(|| LaunchError::ProviderNotServing {
                component: name.to_owned(),
                local: local.clone(),
                provider: route.component.clone(),
            })?
        };
        let (kept, given) = handle_pair().map_err(|source| LaunchError::Handle {
            component: name.to_owned(),
            local: local.clone(),
            source: Box::new(source),
        })?;
        send_grant(control, &grant, kept.as_fd()).map_err(|source| LaunchError::Route {
            component: name.to_owned(),
            local: local.clone(),
            provider: route.component.clone(),
            source: Box::new(source),
        })?;
        handles.push((local.clone(), given));
    }
    Ok(handles)
}
