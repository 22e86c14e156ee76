//! `testudo-tpm [DEVICE]`: the `tpm` scheme daemon; DEVICE is a TPM device node or a swtpm
//! `unixio` socket (default `/dev/tpm0`, see [`testudo_drivers::tpm`]).
fn main() -> std::process::ExitCode {
    let device = std::env::args_os()
        .nth(1)
        .unwrap_or_else(|| "/dev/tpm0".into());
    let provider = testudo_drivers::tpm::TpmProvider::open(std::path::Path::new(&device));
    testudo_drivers::daemon::main(testudo_plan::interfaces::TPM, provider)
}
