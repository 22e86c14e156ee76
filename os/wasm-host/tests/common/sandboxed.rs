//! Runs `testudo-wasm-host` for one plan component the way `testudo-init` does: the spec
//! from `testudo_init::launch::spec_for` (binds, args, the `wasm-host` seccomp role, limits,
//! ids), then the real `testudo_sandbox::{prepare, spawn}` — namespaces, read-only root,
//! landlock, seccomp — and waits for it to end.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use testudo_init::launch::{binary_for, spec_for, LaunchContext, LaunchFds};
use testudo_init::InitOptions;
use testudo_plan::plan::*;

/// How the sandboxed host ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Exit code.
    Exited(i32),
    /// Killed by this signal (SIGSYS = a syscall outside the seccomp policy).
    Killed(i32),
}

/// What a sandboxed run left behind.
#[derive(Debug)]
pub struct SandboxedRun {
    pub ended: Ended,
    /// What the app wrote through its `log` route (its stdout and stderr).
    pub log: String,
    /// The host's own stderr (its one-line reports).
    pub stderr: String,
}

/// A `log` provider like `testudo-log`, collecting what is written to it.
struct LogCollector(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl testudo_scheme::SchemeProvider for LogCollector {
    type Node = ();
    fn root(&mut self, _: &testudo_scheme::Grant) -> Result<(), testudo_scheme::Errno> {
        Ok(())
    }
    fn open(
        &mut self,
        _: &(),
        _: &str,
        _: testudo_scheme::Rights,
    ) -> Result<testudo_scheme::Opened<()>, testudo_scheme::Errno> {
        Err(testudo_scheme::Errno::ENOENT)
    }
    fn write(&mut self, _: &mut (), data: &[u8]) -> Result<usize, testudo_scheme::Errno> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn fstat(&mut self, _: &()) -> Result<(testudo_scheme::NodeKind, u64), testudo_scheme::Errno> {
        Ok((testudo_scheme::NodeKind::Stream, 0))
    }
}

/// The routed handles of a launch: a served `log` handle when the component has a `log`
/// route (nothing else is served here).
pub struct LaunchHandles {
    handles: Vec<(String, OwnedFd)>,
    log: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl LaunchHandles {
    /// Everything logged, once the sandboxed process is gone (the server ends when its
    /// last handle closes).
    pub fn log(mut self) -> String {
        if let Some(server) = self.server.take() {
            server.join().unwrap();
        }
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }
}

fn launch_handles(component: &PlanComponent) -> LaunchHandles {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    let mut server = None;
    if let Some((name, _)) = component
        .uses
        .iter()
        .find(|(_, route)| route.interface == "log")
    {
        let mut log_server = testudo_scheme::Server::new(LogCollector(log.clone()));
        let handle = log_server
            .grant(&testudo_scheme::Grant {
                consumer: "app".into(),
                capability: "log".into(),
                rights: testudo_scheme::Rights::Write,
                allow: Vec::new(),
            })
            .unwrap();
        handles.push((name.clone(), handle.into_fd()));
        server = Some(std::thread::spawn(move || log_server.run().unwrap()));
    }
    LaunchHandles {
        handles,
        log,
        server,
    }
}

/// The directory of the host binary under test; `testudo-init` finds it there by name.
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_testudo-wasm-host"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A plan component of kind wasm running `module` (relative to the app root).
pub fn wasm_component(module: &str) -> PlanComponent {
    PlanComponent {
        kind: ComponentKind::Wasm,
        role: testudo_plan::SandboxRole::WasmHost,
        run: Run::Wasm {
            module: module.into(),
        },
        devices: Devices::default(),
        provides: Default::default(),
        uses: Default::default(),
        limits: Limits {
            memory_bytes: 32 << 20,
            cpu_percent: 0,
            restart: RestartPolicy::Never,
            max_tasks: 8,
            cpu_time_ms: 0,
        },
        after: Vec::new(),
        env: Default::default(),
        args: Vec::new(),
    }
}

/// A route to `provider.capability`.
pub fn route(provider: &str, capability: &str, interface: &str, rights: Rights) -> Route {
    Route {
        component: provider.into(),
        capability: capability.into(),
        interface: interface.into(),
        rights,
        allow: Vec::new(),
    }
}

/// A plan of `components` (no board or cloud of interest).
pub fn plan(components: Vec<(&str, PlanComponent)>) -> Plan {
    Plan::for_development_host(
        "wasm-test",
        components
            .into_iter()
            .map(|(name, component)| (name.to_owned(), component)),
    )
}

/// A device-like layout in `dir`: `app/` (the app root), `state/`, `data/`, `plan.json`.
pub struct Device {
    pub plan: Plan,
    pub plan_file: PathBuf,
    pub options: InitOptions,
}

impl Device {
    /// Writes `plan` into `dir` and copies each `(module path, file)` into `dir/app/`.
    pub fn new(dir: &Path, plan: Plan, modules: &[(&str, &Path)]) -> Self {
        for (module, file) in modules {
            let target = dir.join("app").join(module);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(file, &target).unwrap();
        }
        let plan_file = dir.join("plan.json");
        std::fs::write(&plan_file, serde_json::to_vec(&plan).unwrap()).unwrap();
        let options = InitOptions::new(
            bin_dir(),
            dir.join("state"),
            dir.join("data"),
            dir.join("app"),
        );
        Self {
            plan,
            plan_file,
            options,
        }
    }

    /// The sandbox spec init would use for `name`, ready to prepare; with its served
    /// handles and the read end of its stderr (stdout goes to /dev/null).
    pub fn spec(
        &self,
        name: &str,
    ) -> (
        testudo_sandbox::SandboxSpec,
        LaunchHandles,
        std::io::PipeReader,
    ) {
        let component = &self.plan.components[name];
        let index = self
            .plan
            .components
            .keys()
            .position(|key| key == name)
            .unwrap() as u32;
        let ctx = LaunchContext {
            plan: &self.plan,
            name,
            index,
            options: &self.options,
            plan_file: &self.plan_file,
            cgroup: None,
            module_source: None,
        };
        let program = binary_for(component, &self.options).unwrap();
        let (err_read, err_write) = std::io::pipe().unwrap();
        let null = || {
            OwnedFd::from(
                std::fs::File::options()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .unwrap(),
            )
        };
        let mut handles = launch_handles(component);
        let spec = spec_for(
            &ctx,
            component,
            program,
            LaunchFds {
                handles: std::mem::take(&mut handles.handles),
                control: None,
                stdio: [null(), null(), OwnedFd::from(err_write)],
            },
        )
        .unwrap();
        (spec, handles, err_read)
    }

    /// Runs component `name` in the real sandbox to its end.
    pub fn run(&self, name: &str) -> SandboxedRun {
        let (spec, handles, mut err_read) = self.spec(name);
        let prepared = testudo_sandbox::prepare(spec).unwrap();
        let child = testudo_sandbox::spawn(&testudo_sandbox::RealSys, prepared).unwrap();
        let mut stderr = String::new();
        let _ = err_read.read_to_string(&mut stderr);
        let ended = wait(&child.pidfd);
        SandboxedRun {
            ended,
            log: handles.log(),
            stderr,
        }
    }
}

/// Reaps the child behind `pidfd`.
pub fn wait(pidfd: &OwnedFd) -> Ended {
    use testudo_sandbox::pidfd::{self, WaitMode};
    let exit = pidfd::wait(pidfd.as_fd(), WaitMode::Block)
        .expect("waitid")
        .expect("ended");
    match exit.exited() {
        Some(status) => Ended::Exited(status),
        None => Ended::Killed(exit.status),
    }
}
