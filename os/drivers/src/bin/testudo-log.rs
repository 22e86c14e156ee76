//! `testudo-log`: the `log` scheme daemon (see [`testudo_drivers::log`]).
fn main() -> std::process::ExitCode {
    testudo_drivers::daemon::main(
        testudo_plan::interfaces::LOG,
        Ok(testudo_drivers::log::LogProvider),
    )
}
