//! Cost of accepting one telemetry message from an app: `write` on the agent's `telemetry`
//! handle, which validates the JSON, appends it to the spool journal in the agent's `storage`
//! route and syncs the journal (`fsync` through the storage handle, `fdatasync` in the driver)
//! before answering. Anchors, same run, same message: one `write` on a `storage` file handle
//! (one scheme round trip to the storage driver; the page cache only), and one `write` plus
//! one `fsync` on that handle (the floor of any durable write through testudo's schemes).
//! All providers are the real ones (the storage driver's provider on a temporary directory,
//! created in the target dir so it is on the disk the build is on, not a tmpfs), each served
//! on its own thread as in the running system.
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
/// Writes per round that only reach the page cache.
const WRITES: usize = 20_000;
const ROUNDS: usize = 11;
/// Writes that each wait for the disk are timed in alternating blocks (anchor, telemetry,
/// anchor, ...), so both see the same disk queue and journal traffic.
const SYNCED_BLOCK: usize = 25;
const SYNCED_BLOCKS: usize = 100;

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

/// Time per write over one round of `writes` writes.
fn round(writes: usize, mut write: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..writes {
        write();
    }
    start.elapsed() / writes as u32
}

fn median(mut rounds: Vec<Duration>) -> Duration {
    rounds.sort();
    rounds[rounds.len() / 2]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn main() {
    let base = option_env!("CARGO_TARGET_TMPDIR").map_or_else(std::env::temp_dir, Into::into);
    std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("{}: {e}", base.display()));
    let dir = tempfile::tempdir_in(&base).unwrap_or_else(|e| panic!("temp dir: {e}"));

    // Anchor 1: one write on a storage file handle (page cache).
    let root = storage(dir.path(), "anchor");
    let file = root
        .open("plain.log", Rights::ReadWrite)
        .unwrap_or_else(|e| panic!("open: {e}"));
    // Anchor 2: one write and one fsync on a storage file handle (on disk).
    let synced_file = root
        .open("synced.log", Rights::ReadWrite)
        .unwrap_or_else(|e| panic!("open: {e}"));

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

    let plain = median(
        (0..ROUNDS)
            .map(|_| {
                round(WRITES, || {
                    file.write(MESSAGE).unwrap_or_else(|e| panic!("write: {e}"));
                })
            })
            .collect(),
    );
    // The page-cache anchor's dirty pages go to disk before the synced writes are timed.
    file.fsync().unwrap_or_else(|e| panic!("fsync: {e}"));

    let (mut synced, mut accepted, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..SYNCED_BLOCKS {
        let anchor = round(SYNCED_BLOCK, || {
            synced_file
                .write(MESSAGE)
                .unwrap_or_else(|e| panic!("write: {e}"));
            synced_file.fsync().unwrap_or_else(|e| panic!("fsync: {e}"));
        });
        let spooled = round(SYNCED_BLOCK, || {
            telemetry
                .write(MESSAGE)
                .unwrap_or_else(|e| panic!("telemetry write: {e}"));
        });
        ratios.push(ratio(spooled, anchor));
        synced.push(anchor);
        accepted.push(spooled);
    }
    let (synced, accepted) = (median(synced), median(accepted));
    ratios.sort_by(f64::total_cmp);
    let block_ratio = ratios[ratios.len() / 2];

    println!(
        "{}-byte message; without fsync: median of {ROUNDS} rounds of {WRITES} writes; with \
         fsync: median of {SYNCED_BLOCKS} alternating blocks of {SYNCED_BLOCK} writes",
        MESSAGE.len()
    );
    println!(
        "storage file write (anchor):          {:>9.2} us",
        micros(plain)
    );
    println!(
        "storage file write + fsync (anchor):  {:>9.2} us",
        micros(synced)
    );
    println!(
        "telemetry write (spooled, fsynced):   {:>9.2} us",
        micros(accepted)
    );
    println!(
        "ratio telemetry / write+fsync: {:.2} (median of per-block ratios {block_ratio:.2}); \
         telemetry / write: {:.1}; write+fsync / write: {:.1}",
        ratio(accepted, synced),
        ratio(accepted, plain),
        ratio(synced, plain)
    );
}
