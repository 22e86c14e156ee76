//! `testudo-sensor`: the demo `sensor` scheme daemon (see [`testudo_drivers::sensor`]).
fn main() -> std::process::ExitCode {
    testudo_drivers::daemon::main(
        testudo_plan::interfaces::SENSOR,
        Ok(testudo_drivers::sensor::SensorProvider::default()),
    )
}
