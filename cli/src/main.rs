//! The `testudo` command line. Thin: every subcommand lives in its own file under
//! `commands/` and calls into a library crate; this file only parses and dispatches.

mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = commands::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Rust ignores SIGPIPE, so `testudo bundle info … | head` would panic when `head` exits
/// ("failed printing to stdout"). A command-line tool ends quietly there instead, as `cat`
/// does: the default action is restored before anything is printed.
fn restore_sigpipe() {
    // SAFETY: called first thing in `main`, before any thread exists; setting the default
    // disposition of one signal touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
