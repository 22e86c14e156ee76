//! From a plan component to a [`SandboxSpec`]: which binary, role, paths, handles, limits.
//!
//! # WASM components
//! A `kind = wasm` component runs in the WASM host binary (`testudo-wasm-host`, from the
//! bin dir), sandboxed with the `wasm-host` role, invoked as
//!
//! ```text
//! testudo-wasm-host --plan PLAN --component NAME --app-root APPS --storage-root DATA
//!     --cache CACHE
//! ```
//!
//! (the paths of `testudo_plan::layout::wasm_sandbox`) with the plan (read-only), the module
//! (read-only, at `APPS/<run.module>`, with its precompiled sidecar `.cwasm` beside it when
//! the image has one), for each storage route its directory
//! (`DATA/PROVIDER/CAPABILITY/NAME`, decision 0043) and its own compilation cache
//! (`<state>/wasm-cache/NAME`, read-write at `CACHE`) visible, and its routed handles like
//! any component. Without that binary the component is reported as "not started: wasm host
//! missing".

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use testudo_plan::layout::{self, rootfs::WASM_HOST_BINARY, wasm_sandbox};
use testudo_plan::plan::{Plan, PlanComponent, Run};
use testudo_plan::{env, interfaces, SandboxRole};
use testudo_sandbox::{Bind, IdMapping, ResourceLimits, SandboxSpec};

use crate::{InitOptions, LaunchError};

/// The seccomp role of a component: plan data (`components.<name>.role`).
pub fn role_for(component: &PlanComponent) -> &'static str {
    component.role.as_str()
}

/// The binary a component runs, or why it cannot run.
pub fn binary_for(
    component: &PlanComponent,
    options: &InitOptions,
) -> Result<PathBuf, LaunchError> {
    let name = match &component.run {
        Run::Binary { name } => name.as_str(),
        Run::Wasm { .. } => WASM_HOST_BINARY,
    };
    if name.contains('/') || name.is_empty() {
        return Err(LaunchError::BinaryName {
            binary: name.to_owned(),
        });
    }
    let path = options.bin_dir.join(name);
    if path.is_file() {
        Ok(path)
    } else if matches!(component.run, Run::Wasm { .. }) {
        Err(LaunchError::WasmHostMissing { path })
    } else {
        Err(LaunchError::BinaryMissing { path })
    }
}

/// The host path standing in for device node `node` (see [`InitOptions::devices`]).
pub fn device_source(node: &str, options: &InitOptions) -> PathBuf {
    options
        .devices
        .get(node)
        .cloned()
        .unwrap_or_else(|| PathBuf::from(node))
}

/// Why a component cannot be started on this machine at all (its binary, the WASM host or
/// a device it owns is missing), if so. Such a component is reported as not started and
/// not restarted.
pub fn unavailable(component: &PlanComponent, options: &InitOptions) -> Option<String> {
    if let Err(reason) = binary_for(component, options) {
        return Some(reason.to_string());
    }
    component.devices.nodes.iter().find_map(|node| {
        if let Some(reason) = options.withheld_devices.get(node) {
            Some(format!("device {node} withheld: {reason}"))
        } else if !device_source(node, options).exists() {
            Some(format!("device {node} missing on this machine"))
        } else {
            None
        }
    })
}

/// TCP ports of every `allow` entry routed to `provider` (for its landlock connect rule),
/// app slots' `max_uses` included: an app deployed later may use any of them.
pub fn routed_ports(plan: &Plan, provider: &str) -> Vec<u16> {
    let ports: BTreeSet<u16> = plan
        .components
        .values()
        .flat_map(|c| c.uses.values())
        .chain(
            plan.app_slots
                .values()
                .flat_map(|slot| slot.max_uses.values()),
        )
        .filter(|route| route.component == provider)
        .flat_map(|route| route.allow.iter())
        .filter_map(|allow| {
            allow
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse().ok())
        })
        .collect();
    ports.into_iter().collect()
}

/// Inputs to [`spec_for`] that the supervisor owns.
#[derive(Debug)]
pub struct LaunchFds {
    /// Routed handles by local name (sorted).
    pub handles: Vec<(String, OwnedFd)>,
    /// The provider control socket, if the component provides capabilities.
    pub control: Option<OwnedFd>,
    /// stdin, stdout, stderr.
    pub stdio: [OwnedFd; 3],
}

/// Everything about one component's launch except the fds.
#[derive(Debug, Clone)]
pub struct LaunchContext<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// Component name.
    pub name: &'a str,
    /// Its index in the plan (for its host uid).
    pub index: u32,
    /// Options.
    pub options: &'a InitOptions,
    /// The plan file (for the WASM host).
    pub plan_file: &'a Path,
    /// The supervisor's cgroup v2 tree, when usable.
    pub cgroup: Option<&'a testudo_sandbox::CgroupTree>,
    /// Where a WASM component's module is on this host when it is not under the app root
    /// (an app deployed into a slot, kept on the data partition).
    pub module_source: Option<&'a Path>,
}

/// Memory a WASM host process may use beyond its app's linear memory limit: the engine,
/// WASI state and output buffers (an idle app's host takes about 1 MiB; see
/// docs/benchmarks.md) and Cranelift compiling an app the cache does not hold (about 20 MiB
/// for the example apps). Enforced as cgroup `memory.max` where cgroup v2 applies. A cap, not
/// a reservation: `testudo check`'s board budget sums the plan's limits only.
pub const WASM_HOST_MEMORY_ALLOWANCE: u64 = 64 << 20;

/// Builds the sandbox spec for a component.
pub fn spec_for(
    ctx: &LaunchContext<'_>,
    component: &PlanComponent,
    program: PathBuf,
    fds: LaunchFds,
) -> Result<SandboxSpec, LaunchError> {
    let name = ctx.name;
    let options = ctx.options;
    let mut binds = Vec::new();
    let mut args = component.args.clone();
    for node in &component.devices.nodes {
        let source = device_source(node, options);
        if !source.exists() {
            return Err(LaunchError::DeviceMissing {
                component: name.to_owned(),
                path: source,
            });
        }
        // The driver owns its devices exclusively: as root, hand them to its host uid.
        chown_to(&source, ctx)?;
        binds.push(Bind {
            source,
            target: PathBuf::from(node),
            writable: true,
            executable: false,
        });
    }
    let provides_storage = component
        .provides
        .values()
        .any(|p| p.interface == interfaces::STORAGE);
    if provides_storage {
        binds.push(Bind {
            source: options.data_dir.clone(),
            target: PathBuf::from(layout::DATA),
            writable: true,
            executable: false,
        });
    }
    if component.role == SandboxRole::TpmDriver && args.is_empty() {
        // The TPM driver serves the device node it owns.
        args.extend(component.devices.nodes.first().cloned());
    }
    if component.role == SandboxRole::Updater {
        updater_launch(ctx, component, &mut args, &mut binds)?;
    }
    let mut memory_bytes = component.limits.memory_bytes;
    let mut address_space_limit = true;
    if let Run::Wasm { module } = &component.run {
        // The host caps the app's linear memory at the plan's limit itself; the process as a
        // whole gets that plus the host's own allowance, as cgroup `memory.max` only: wasmtime
        // reserves large virtual ranges, so RLIMIT_AS would break it.
        if memory_bytes > 0 {
            memory_bytes = memory_bytes.saturating_add(WASM_HOST_MEMORY_ALLOWANCE);
        }
        address_space_limit = false;
        let module_path = Path::new(module);
        if module_path.is_absolute()
            || module_path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(LaunchError::ModulePath {
                component: name.to_owned(),
                module: module.clone(),
            });
        }
        let source = ctx
            .module_source
            .map_or_else(|| options.app_root.join(module_path), Path::to_owned);
        if !source.is_file() {
            return Err(LaunchError::ModuleMissing {
                component: name.to_owned(),
                path: source,
            });
        }
        // The host preopens `<storage-root>/<provider>/<capability>/<app>` per storage route
        // (decision 0043); it is the same directory the storage driver gives this consumer.
        let own_data = layout::storage_dir(&options.data_dir, name);
        // One cache per component: each host runs under its own uid, and a `.cwasm` is
        // native code only its own host may have written (decision 0053).
        let cache = options.state_dir.join("wasm-cache").join(name);
        for dir in [&own_data, &cache] {
            std::fs::create_dir_all(dir).map_err(|source| LaunchError::CreateDir {
                component: name.to_owned(),
                path: dir.clone(),
                source,
            })?;
            chown_to(dir, ctx)?;
        }
        for route in component
            .uses
            .values()
            .filter(|route| route.interface == interfaces::STORAGE)
        {
            binds.push(Bind {
                source: own_data.clone(),
                target: layout::storage_route_dir(
                    Path::new(wasm_sandbox::DATA),
                    &route.component,
                    &route.capability,
                    name,
                ),
                writable: route.rights.can_write(),
                executable: false,
            });
        }
        binds.push(Bind {
            source: ctx.plan_file.to_owned(),
            target: PathBuf::from(wasm_sandbox::PLAN),
            writable: false,
            executable: false,
        });
        // A precompiled sidecar (`P.cwasm` next to `P.wasm`, from `testudo-wasm-host
        // precompile`) is visible read-only beside the module; the host uses it only from a
        // read-only mount.
        let sidecar = source.with_extension("cwasm");
        if sidecar.is_file() {
            binds.push(Bind {
                source: sidecar,
                target: Path::new(wasm_sandbox::APPS).join(module_path.with_extension("cwasm")),
                writable: false,
                executable: false,
            });
        }
        binds.push(Bind {
            source,
            target: Path::new(wasm_sandbox::APPS).join(module_path),
            writable: false,
            executable: false,
        });
        binds.push(Bind {
            source: cache,
            target: PathBuf::from(wasm_sandbox::CACHE),
            writable: true,
            executable: false,
        });
        args = [
            "--plan",
            wasm_sandbox::PLAN,
            "--component",
            name,
            "--app-root",
            wasm_sandbox::APPS,
            "--storage-root",
            wasm_sandbox::DATA,
            "--cache",
            wasm_sandbox::CACHE,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
    }
    if provides_storage {
        chown_to(&options.data_dir, ctx)?;
    }
    let root_dir = options.state_dir.join("roots").join(name);
    std::fs::create_dir_all(&root_dir).map_err(|source| LaunchError::CreateDir {
        component: name.to_owned(),
        path: root_dir.clone(),
        source,
    })?;
    let mut env: Vec<(String, String)> = component
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push((env::COMPONENT.to_owned(), name.to_owned()));
    // The component serving `identity` (the cloud agent) gets the plan's cloud section.
    if component
        .provides
        .values()
        .any(|p| p.interface == interfaces::IDENTITY)
    {
        env.push((
            env::CLOUD.to_owned(),
            json_value(name, env::CLOUD, &ctx.plan.cloud)?,
        ));
        let system =
            env::SystemInfo::of(ctx.plan, options.booted_slot.clone()).map_err(|source| {
                LaunchError::EnvironmentValue {
                    component: name.to_owned(),
                    variable: env::SYSTEM,
                    source,
                }
            })?;
        env.push((
            env::SYSTEM.to_owned(),
            json_value(name, env::SYSTEM, &system)?,
        ));
        if let Some(anchors) = options.trust_anchors.as_ref().filter(|path| path.is_file()) {
            binds.push(Bind {
                source: anchors.clone(),
                target: PathBuf::from(layout::rootfs::TRUST_ANCHORS),
                writable: false,
                executable: false,
            });
        }
    }
    // The component owning the network gets the board's interface and the plan's hosts.
    if component.devices.network {
        let settings = env::NetworkSettings::of(ctx.plan);
        env.push((
            env::NETWORK.to_owned(),
            json_value(name, env::NETWORK, &settings)?,
        ));
    }
    let extra_fds = fds
        .control
        .map(|control| vec![(testudo_scheme::CONTROL_ENV.to_owned(), control)])
        .unwrap_or_default();
    Ok(SandboxSpec {
        name: name.to_owned(),
        program,
        args,
        env,
        handles: fds.handles,
        extra_fds,
        stdio: fds.stdio,
        role: component.role,
        network: component.devices.network,
        connect_ports: if component.devices.network {
            routed_ports(ctx.plan, name)
        } else {
            Vec::new()
        },
        binds,
        limits: ResourceLimits {
            memory_bytes,
            address_space_limit,
            max_tasks: component.limits.max_tasks,
            cpu_percent: component.limits.cpu_percent,
            max_fds: 256,
        },
        ids: ids_for(ctx),
        root_dir,
        cgroup: ctx.cgroup.map(|tree| tree.placement(name)),
    })
}

fn ids_for(ctx: &LaunchContext<'_>) -> IdMapping {
    // SAFETY: geteuid/getegid only read this process's credentials.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        IdMapping::Root {
            host_id: ctx.options.uid_base + ctx.index,
        }
    } else {
        IdMapping::Unprivileged { uid, gid }
    }
}

/// As root, hands a directory the component writes to over to its host uid.
fn chown_to(dir: &Path, ctx: &LaunchContext<'_>) -> Result<(), LaunchError> {
    if let IdMapping::Root { host_id } = ids_for(ctx) {
        std::os::unix::fs::chown(dir, Some(host_id), Some(host_id)).map_err(|source| {
            LaunchError::Chown {
                component: ctx.name.to_owned(),
                path: dir.to_owned(),
                source,
            }
        })?;
    }
    Ok(())
}

/// The value of a JSON-carrying variable of the device contract for `component`.
fn json_value<T: serde::Serialize>(
    component: &str,
    variable: &'static str,
    value: &T,
) -> Result<String, LaunchError> {
    env::to_value(value).map_err(|source| LaunchError::EnvironmentValue {
        component: component.to_owned(),
        variable,
        source,
    })
}

/// What the updater gets besides its routes: the slot GRUB booted and the running version
/// (it confirms that slot, and refuses to stage what is installed already or older), whether
/// a trial must wait for the cloud agent (a component relays OS updates to it), its storage route
/// as its directory on the data partition (bundles are staged there as files, and RAUC's
/// status file lives there), and the image's update trust files read-only at their paths.
fn updater_launch(
    ctx: &LaunchContext<'_>,
    component: &PlanComponent,
    args: &mut Vec<String>,
    binds: &mut Vec<Bind>,
) -> Result<(), LaunchError> {
    let options = ctx.options;
    if let Some(slot) = &options.booted_slot {
        args.extend(["--booted-slot".to_owned(), slot.clone()]);
    }
    args.extend(["--system-version".to_owned(), ctx.plan.version.clone()]);
    let relayed = ctx.plan.components.values().any(|consumer| {
        consumer
            .uses
            .values()
            .any(|route| route.interface == interfaces::UPDATE && route.component == ctx.name)
    });
    if relayed {
        args.push("--require-connected".to_owned());
    }
    if component
        .uses
        .values()
        .any(|route| route.interface == interfaces::STORAGE)
    {
        let own_data = layout::storage_dir(&options.data_dir, ctx.name);
        std::fs::create_dir_all(&own_data).map_err(|source| LaunchError::CreateDir {
            component: ctx.name.to_owned(),
            path: own_data.clone(),
            source,
        })?;
        chown_to(&own_data, ctx)?;
        binds.push(Bind {
            source: own_data,
            target: PathBuf::from(layout::RAUC_DATA),
            writable: true,
            executable: false,
        });
    }
    for file in options.update_files.iter().filter(|path| path.is_file()) {
        binds.push(Bind {
            source: file.clone(),
            target: file.clone(),
            writable: false,
            executable: false,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use testudo_plan::plan::{Limits, RestartPolicy, Rights, Route};

    #[test]
    fn the_network_owner_may_connect_to_every_port_a_slot_may_be_routed() {
        let mut plan = Plan::for_development_host("ports", std::iter::empty());
        let net = |allow: &str| Route {
            component: "net".into(),
            capability: "net".into(),
            interface: interfaces::NET.into(),
            rights: Rights::ReadWrite,
            allow: vec![allow.into()],
        };
        plan.app_slots.insert(
            "cloud-app".into(),
            testudo_plan::AppSlot {
                max_uses: [("net".to_owned(), net("example.com:8443"))].into(),
                limits: Limits {
                    memory_bytes: 1 << 20,
                    cpu_percent: 10,
                    restart: RestartPolicy::OnFailure,
                    max_tasks: 1,
                    cpu_time_ms: 0,
                },
                after: Vec::new(),
                initial: None,
            },
        );
        assert_eq!(routed_ports(&plan, "net"), [8443]);
        assert!(routed_ports(&plan, "other").is_empty());
    }
}
