//! The `testudo` command line. Thin: every subcommand lives in its own file under
//! `commands/` and calls into a library crate; this file only parses and dispatches.

mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    if cli.only_prints() {
        restore_sigpipe();
    }
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
/// ("failed printing to stdout"). A command that only prints ends quietly there instead, as
/// `cat` does: the default action is restored before anything is printed.
fn restore_sigpipe() {
    // SAFETY: called in `main` before any thread exists (argument parsing starts none);
    // setting the default disposition of one signal touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
