//! The telemetry spool's journals come from the storage partition: whatever bytes are there
//! (torn writes, corruption), loading must not panic, and what loads must be consistent.

use testudo_agent::spool::{MemoryFiles, Spool, SpoolLimits, CURRENT_FILE, JOURNALS};

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let split = data.len() / 2;
    let mut files = MemoryFiles::default();
    files
        .files
        .insert(JOURNALS[0].1.to_owned(), data[..split].to_vec());
    files
        .files
        .insert(JOURNALS[1].1.to_owned(), data[split..].to_vec());
    files.files.insert(
        CURRENT_FILE.to_owned(),
        data.iter().take(1).copied().collect(),
    );
    if let Ok((mut spool, report)) = Spool::open(files, SpoolLimits::default()) {
        assert_eq!(spool.pending(), report.pending);
        let taken = spool.take_unsent(usize::MAX);
        assert_eq!(taken.len(), report.pending);
        if let Ok(seq) = spool.push("fuzz", b"{}") {
            assert!(taken.iter().all(|m| m.seq < seq));
        }
    }
}
