//! `testudo-sensor`: the demo `sensor` scheme daemon (see [`testudo_drivers::sensor`]).
fn main() -> std::process::ExitCode {
    testudo_drivers::daemon::main(
        "sensor",
        Ok(testudo_drivers::sensor::SensorProvider::default()),
    )
}
