//! Cost of accepting one telemetry message from an app: `write` on the agent's `telemetry`
//! handle, which validates the JSON and appends it to the spool journal in the agent's
//! `storage` route before answering. Anchor, same run, same message: the floor of any
//! persisted write through testudo's schemes, one `write` on a `storage` file handle (one scheme
//! round trip to the storage driver). Both providers are the real ones (the storage driver's
//! provider on a temporary directory), each served on its own thread as in the running system.
//!
//! Run: `cargo bench -p testudo-agent --bench telemetry_accept`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testudo_agent::app_schemes::{AppSchemes, TELEMETRY};
use testudo_agent::component_log::ComponentLog;
use testudo_agent::spool::{Spool, SpoolLimits, StorageFiles};
use testudo_drivers::storage::StorageProvider;
use testudo_scheme::{Grant, Handle, Rights, Server};
use tokio::sync::Notify;

const MESSAGE: &[u8] = br#"{"sensor":"temperature","value":21.5,"unit":"C","seq":123456}"#;
const WRITES: usize = 20_000;
const ROUNDS: usize = 5;

fn grant(consumer: &str, capability: &str) -> Grant {
    Grant {
        consumer: consumer.into(),
        capability: capability.into(),
        rights: Rights::ReadWrite,
        allow: Vec::new(),
    }
}

/// A storage root handle for `consumer`, served on its own thread.
fn storage(dir: &std::path::Path, consumer: &str) -> Handle {
    let dir = dir.to_owned();
    let grant = grant(consumer, "storage");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut server = Server::new(StorageProvider::new(&dir));
        let Ok(handle) = server.grant(&grant) else {
            return;
        };
        let _ = tx.send(handle);
        let _ = server.run();
    });
    rx.recv()
        .unwrap_or_else(|_| panic!("storage provider did not start"))
}

fn per_write(mut write: impl FnMut()) -> Duration {
    let mut rounds: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..WRITES {
                write();
            }
            start.elapsed() / WRITES as u32
        })
        .collect();
    rounds.sort();
    rounds[ROUNDS / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));

    // Anchor: one write on a storage file handle.
    let root = storage(dir.path(), "anchor");
    let file = root
        .open("plain.log", Rights::ReadWrite)
        .unwrap_or_else(|e| panic!("open: {e}"));
    let plain = per_write(|| {
        file.write(MESSAGE).unwrap_or_else(|e| panic!("write: {e}"));
    });

    // The agent's telemetry scheme over a spool in storage.
    let files = StorageFiles::new(storage(dir.path(), "agent"));
    let limits = SpoolLimits {
        max_messages: usize::MAX,
        max_bytes: usize::MAX,
    };
    let (spool, _) = Spool::open(files, limits).unwrap_or_else(|e| panic!("spool: {e}"));
    let spool = Arc::new(Mutex::new(spool));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let provider = AppSchemes::new(
            spool,
            b"{}\n".to_vec(),
            Arc::new(Notify::new()),
            Arc::new(ComponentLog::default()),
        );
        let mut server = Server::new(provider);
        let Ok(handle) = server.grant(&grant("app", TELEMETRY)) else {
            return;
        };
        let _ = tx.send(handle);
        let _ = server.run();
    });
    let telemetry = rx
        .recv()
        .unwrap_or_else(|_| panic!("telemetry provider did not start"));
    let accepted = per_write(|| {
        telemetry
            .write(MESSAGE)
            .unwrap_or_else(|e| panic!("telemetry write: {e}"));
    });

    println!(
        "{}-byte message, median of {ROUNDS} rounds of {WRITES} writes",
        MESSAGE.len()
    );
    println!(
        "storage file write (anchor): {:>7.2} us",
        plain.as_secs_f64() * 1e6
    );
    println!(
        "telemetry write (spooled):   {:>7.2} us",
        accepted.as_secs_f64() * 1e6
    );
    println!(
        "ratio: {:.2}",
        accepted.as_secs_f64() / plain.as_secs_f64().max(f64::MIN_POSITIVE)
    );
}
