//! `testudo-net`: the `net` egress-policy daemon (see [`testudo_drivers::net`]).
fn main() -> std::process::ExitCode {
    testudo_drivers::daemon::main(
        testudo_plan::interfaces::NET,
        testudo_drivers::net::NetProvider::from_env(),
    )
}
