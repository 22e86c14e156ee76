//! `cargo xtask`: the project's tasks. Each task is one module; this file only dispatches.
//!
//! - `cargo xtask demo`  — installs what is missing, then runs the main job on the embedded
//!   example (see `demo.rs`).
//! - `cargo xtask test`  — installs what is missing, then fmt, the device-contract and
//!   codemap checks (see `contract.rs`, `codemap.rs`), clippy -D warnings, all tests.
//! - `cargo xtask bench` — benchmarks, figures into `target/bench/` (see `docs/benchmarks.md`).
//! - `cargo xtask deps`  — only install the system packages the project needs.
//! - `cargo xtask contract` — only the device-contract check (see `contract.rs`).
//! - `cargo xtask codemap` — only the check that ARCHITECTURE.md names every module file
//!   (see `codemap.rs`).
//! - `cargo xtask apps`  — build the WebAssembly apps in `wasm-apps/` (see `apps.rs`).
//! - `cargo xtask nix`   — run the flake's builds and checks here (see `nix.rs`).

mod apps;
mod bench;
mod codemap;
mod contract;
mod demo;
mod deps;
mod live_demo;
mod nix;
mod test;
mod util;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match task {
        "demo" => demo::run(rest),
        "test" => test::run(rest),
        "bench" => bench::run(rest),
        "deps" => deps::ensure(),
        "contract" => contract::check(),
        "codemap" => codemap::check(),
        "apps" => apps::run(rest),
        "nix" => nix::run(rest),
        _ => {
            eprintln!("usage: cargo xtask <demo|test|bench|deps|apps|nix|contract|codemap> [args]");
            return if task == "help" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask {task}: {err:#}");
            ExitCode::FAILURE
        }
    }
}
