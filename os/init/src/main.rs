//! `testudo-init [--plan PLAN.json] [--bin-dir DIR] [--state-dir DIR] [--data-dir DIR]
//! [--app-root DIR]`
//!
//! As PID 1 (in the image) the defaults are the device's paths (`testudo_plan::layout`: the
//! plan, the binary directory, `/run/testudo`, `/data` and the app layer); it mounts `/proc`, `/sys`,
//! cgroup2 on `/sys/fs/cgroup` (components' memory/pids/cpu limits), `/dev` and `/run` first,
//! brings up the board's network link (`board.network`), and powers off after a clean
//! shutdown. Anywhere else it is an ordinary
//! supervisor (defaults: the binaries next to it, a state dir under the temp dir). It prints
//! `ready: NAMES` on stdout once every component is up; SIGTERM or SIGINT stops everything.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use testudo_init::power::{self, PowerAction};
use testudo_init::{signals, EventKind, EventLog, InitOptions, Supervisor};

fn mount_basics() {
    for (source, target, fstype) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        // cgroup v2 for the components' memory/pids/cpu limits (on sysfs' own mount point).
        ("cgroup2", "/sys/fs/cgroup", "cgroup2"),
        ("devtmpfs", "/dev", "devtmpfs"),
        ("tmpfs", "/run", "tmpfs"),
    ] {
        let _ = std::fs::create_dir_all(target);
        let (Ok(s), Ok(t), Ok(f)) = (
            std::ffi::CString::new(source),
            std::ffi::CString::new(target),
            std::ffi::CString::new(fstype),
        ) else {
            continue;
        };
        // SAFETY: mounts a pseudo filesystem with valid NUL-terminated strings; failure
        // (already mounted) is harmless.
        unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), 0, std::ptr::null()) };
    }
}

fn main() -> ExitCode {
    let pid1 = std::process::id() == 1;
    if pid1 {
        mount_basics();
    }
    let here = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."));
    let mut plan = PathBuf::from(testudo_plan::layout::rootfs::PLAN);
    let (mut bin_dir, mut state_dir, mut data_dir, mut app_root) = if pid1 {
        let device = InitOptions::device();
        (
            device.bin_dir,
            device.state_dir,
            device.data_dir,
            device.app_root,
        )
    } else {
        let state = std::env::temp_dir().join(format!("testudo-init-{}", std::process::id()));
        (here, state.clone(), state.join("data"), PathBuf::from("."))
    };
    let mut args = std::env::args_os().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next().map(PathBuf::from) else {
            eprintln!("testudo-init: {} needs a value", flag.to_string_lossy());
            return ExitCode::from(2);
        };
        match flag.to_str() {
            Some("--plan") => plan = value,
            Some("--bin-dir") => bin_dir = value,
            Some("--state-dir") => state_dir = value,
            Some("--data-dir") => data_dir = value,
            Some("--app-root") => app_root = value,
            _ => {
                eprintln!("testudo-init: unknown argument {}", flag.to_string_lossy());
                return ExitCode::from(2);
            }
        }
    }
    let mut data_mounted = false;
    if pid1 {
        // The persistent data partition, before any component starts; without it the
        // system still comes up (and says so), as components that need /data fail visibly.
        use testudo_init::data_partition::{mount_data, HostBlockDevices};
        match mount_data(&HostBlockDevices, &data_dir) {
            Ok(Some((label, device))) => {
                data_mounted = true;
                println!(
                    "testudo-init: data partition {label} on {} mounted at {}",
                    device.display(),
                    data_dir.display()
                )
            }
            Ok(None) => println!("testudo-init: no data partition on the kernel command line"),
            Err(error) => eprintln!("testudo-init: {}", testudo_error_chain::error_chain(&error)),
        }
        // Partitions by GPT name, as udev would link them (the disk is there by now).
        use testudo_init::data_partition::BlockDevices;
        use testudo_init::partition_links::link_partitions;
        let by_name = std::path::Path::new(testudo_plan::layout::partitions::BY_NAME);
        let linked = HostBlockDevices
            .uevents()
            .map_err(|source| testudo_init::InitError::PartitionLink {
                link: by_name.to_owned(),
                source,
            })
            .and_then(|uevents| link_partitions(&uevents, std::path::Path::new("/dev"), by_name));
        match linked {
            Ok((_, ambiguous)) => {
                for name in ambiguous {
                    eprintln!("testudo-init: partition name {name} is on more than one partition: not linked");
                }
            }
            Err(error) => eprintln!("testudo-init: {}", testudo_error_chain::error_chain(&error)),
        }
    }
    let power = std::cell::RefCell::new(None);
    let result = (|| -> Result<(), testudo_init::InitError> {
        let plan = testudo_init::read_plan(&plan)?;
        if pid1 {
            testudo_init::network::bring_up_board(plan.board.network.as_ref());
        }
        let mut options = InitOptions::new(bin_dir, state_dir, data_dir.clone(), app_root);
        if pid1 {
            let device = InitOptions::device();
            options.booted_slot = device.booted_slot;
            options.trust_anchors = device.trust_anchors;
            options.deploy_key = device.deploy_key;
            options.update_files = device.update_files;
        }
        options.echo = true;
        let stop = signals::stop_on_signals()?;
        let events = EventLog::new(true);
        let mut supervisor = Supervisor::new(plan, options, events.clone())?;
        *power.borrow_mut() = Some(supervisor.power_requests());
        let watcher = events.clone();
        std::thread::spawn(move || {
            if let Some(event) = watcher
                .wait_for(std::time::Duration::from_secs(u64::MAX / 4), |e| {
                    matches!(e.kind, EventKind::Ready { .. })
                })
            {
                println!("{}", event.line());
            }
        });
        supervisor.run(stop.as_fd())
    })();
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("testudo-init: {}", testudo_error_chain::error_chain(&error));
            ExitCode::FAILURE
        }
    };
    let requested = power.into_inner().and_then(|power| power.pending());
    if let Some((action, by)) = &requested {
        println!("testudo-init: {} asked by {by}", action.word());
    }
    if pid1 {
        // PID 1 must never simply exit: without a request (a signal, or init failed) the
        // machine powers off.
        let action = requested.map_or(PowerAction::PowerOff, |(action, _)| action);
        let data = data_mounted.then_some(data_dir.as_path());
        for problem in power::bring_down(&power::HostMachine, data, action) {
            eprintln!("testudo-init: {problem}");
        }
    }
    code
}
