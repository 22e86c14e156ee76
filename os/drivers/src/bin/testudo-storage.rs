//! `testudo-storage [DATA_DIR]`: the `storage` scheme daemon (default data dir: the data partition,
//! see [`testudo_drivers::storage`]).
fn main() -> std::process::ExitCode {
    let dir = std::env::args_os()
        .nth(1)
        .unwrap_or_else(|| testudo_plan::layout::DATA.into());
    let provider = testudo_drivers::storage::StorageProvider::new(std::path::Path::new(&dir));
    testudo_drivers::daemon::main(testudo_plan::interfaces::STORAGE, Ok(provider))
}
