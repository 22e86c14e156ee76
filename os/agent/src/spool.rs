//! The persistent telemetry spool: every message an app writes to the `telemetry` scheme is
//! appended to a journal in the agent's routed storage *before* the write is acknowledged,
//! and marked done only after the hub's PUBACK. After a restart everything accepted and not
//! acknowledged is sent again (at-least-once; nothing accepted is lost).
//!
//! # On-storage format
//! Two journals, `telemetry-a.journal` and `telemetry-b.journal`, and `telemetry.current`
//! naming the one appended to (`a` or `b`). Journal lines:
//! - `M <seq> <source> <base64 body>`: an accepted message;
//! - `A <seq>`: the hub acknowledged message `seq`;
//! - `L <n>`: written first by a compaction: every `seq < n` without an `M` line in *this*
//!   file is acknowledged.
//!
//! A compaction writes the pending messages into the other journal (headed by `L`), then
//! points `telemetry.current` at it. Loading reads *both* journals and takes their union, so
//! a crash at any point of a compaction (or a torn pointer) loses nothing: each file's
//! statements are true on their own. Unparsable lines (a write torn by a crash, which was
//! never acknowledged to the app) are skipped and counted.
//!
//! # Durability (decision 0064)
//! Every step the spool's promises rest on is followed by [`SpoolFiles::sync`] (an `fsync`
//! through the storage handle, `fdatasync` in the storage driver) before it counts:
//! - a message's `M` line is appended and synced before [`Spool::push`] returns `Ok`, so an
//!   app's `write` is acknowledged only once its message is on disk; if the sync fails the
//!   push fails (the app's write is refused) and the message is not pending;
//! - a compaction syncs the new journal before switching the pointer (and syncs the
//!   pointer), so the next compaction never truncates the only durable copy.
//!
//! `A` lines are not synced on their own: losing one in a power cut means a message is sent
//! again (at-least-once), never lost; they reach the disk with the next message's sync.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use testudo_scheme::{Errno, Handle, Rights, SchemeError};

use crate::error::{AgentError, Result};

/// The pointer file.
pub const CURRENT_FILE: &str = "telemetry.current";
/// Journal file names, by slot.
pub const JOURNALS: [(&str, &str); 2] =
    [("a", "telemetry-a.journal"), ("b", "telemetry-b.journal")];
/// Largest sequence number believed from a journal.
const MAX_SEQ: u64 = 1 << 62;
/// Journals are compacted when they grow beyond this and three times the pending body bytes
/// (base64 makes a pending message's line about 4/3 of its body).
const COMPACT_AT: usize = 256 * 1024;

/// Files the spool keeps (the agent's storage route; in memory for unit tests).
pub trait SpoolFiles: Send {
    /// The whole file, empty when it does not exist.
    fn read(&mut self, name: &str) -> Result<Vec<u8>>;
    /// Appends to the file (creating it).
    fn append(&mut self, name: &str, data: &[u8]) -> Result<()>;
    /// Replaces the file's content.
    fn replace(&mut self, name: &str, data: &[u8]) -> Result<()>;
    /// Makes what was appended to or replaced in the file durable (`fsync`); when this
    /// returns `Ok` it survives a power cut.
    fn sync(&mut self, name: &str) -> Result<()>;
}

/// [`SpoolFiles`] in the agent's directory of the `storage` scheme.
#[derive(Debug)]
pub struct StorageFiles {
    root: Handle,
    appenders: BTreeMap<String, Handle>,
}

impl StorageFiles {
    /// Files under `root` (the component's storage handle).
    pub fn new(root: Handle) -> Self {
        Self {
            root,
            appenders: BTreeMap::new(),
        }
    }

    /// Reads a file of the storage directory; `None` when it does not exist.
    pub fn read_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let wrap = |step, source| AgentError::Storage {
            step,
            file: name.to_owned(),
            source,
        };
        let file = match self.root.open(name, Rights::Read) {
            Ok(file) => file,
            Err(error) if error.refused_errno() == Some(Errno::ENOENT) => return Ok(None),
            Err(error) => return Err(wrap("open", error)),
        };
        read_to_end(&file).map(Some).map_err(|e| wrap("read", e))
    }

    /// Replaces a file of the storage directory atomically (the storage scheme's
    /// `NAME?replace`): after a crash or power cut at any point it holds the old content or
    /// `data`, whole.
    pub fn replace_atomically(&self, name: &str, data: &[u8]) -> Result<()> {
        let wrap = |step, source| AgentError::Storage {
            step,
            file: name.to_owned(),
            source,
        };
        let file = self
            .root
            .open(&format!("{name}?replace"), Rights::Write)
            .map_err(|e| wrap("open", e))?;
        file.write_all(data).map_err(|e| wrap("write", e))?;
        file.fsync().map_err(|e| wrap("commit", e))
    }
}

fn read_to_end(file: &Handle) -> std::result::Result<Vec<u8>, SchemeError> {
    let mut data = Vec::new();
    let mut buf = vec![0u8; testudo_scheme::MAX_PAYLOAD];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(data);
        }
        data.extend_from_slice(&buf[..n]);
    }
}

impl SpoolFiles for StorageFiles {
    fn read(&mut self, name: &str) -> Result<Vec<u8>> {
        Ok(self.read_file(name)?.unwrap_or_default())
    }

    fn append(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let wrap = |step, source| AgentError::Storage {
            step,
            file: name.to_owned(),
            source,
        };
        if !self.appenders.contains_key(name) {
            let file = self
                .root
                .open(name, Rights::ReadWrite)
                .map_err(|e| wrap("open", e))?;
            // A handle's offset starts at 0 and is shared by reads and writes: move it to the end.
            read_to_end(&file).map_err(|e| wrap("read", e))?;
            self.appenders.insert(name.to_owned(), file);
        }
        let file = self
            .appenders
            .get(name)
            .ok_or_else(|| wrap("open", SchemeError::Closed { op: "open" }))?;
        file.write_all(data).map_err(|e| wrap("append", e))
    }

    fn replace(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let wrap = |step, source| AgentError::Storage {
            step,
            file: name.to_owned(),
            source,
        };
        self.appenders.remove(name);
        let file = self
            .root
            .open(&format!("{name}?truncate"), Rights::ReadWrite)
            .map_err(|e| wrap("open", e))?;
        file.write_all(data).map_err(|e| wrap("replace", e))?;
        self.appenders.insert(name.to_owned(), file);
        Ok(())
    }

    fn sync(&mut self, name: &str) -> Result<()> {
        let wrap = |step, source| AgentError::Storage {
            step,
            file: name.to_owned(),
            source,
        };
        if let Some(file) = self.appenders.get(name) {
            return file.fsync().map_err(|e| wrap("sync", e));
        }
        // Not written through this spool since it started: any handle to the file may sync.
        self.root
            .open(name, Rights::Read)
            .map_err(|e| wrap("open", e))?
            .fsync()
            .map_err(|e| wrap("sync", e))
    }
}

/// [`SpoolFiles`] in memory (no persistence; for tests and a component without storage).
#[derive(Debug, Default, Clone)]
pub struct MemoryFiles {
    /// File contents by name.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl SpoolFiles for MemoryFiles {
    fn read(&mut self, name: &str) -> Result<Vec<u8>> {
        Ok(self.files.get(name).cloned().unwrap_or_default())
    }

    fn append(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.files
            .entry(name.to_owned())
            .or_default()
            .extend_from_slice(data);
        Ok(())
    }

    fn replace(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.files.insert(name.to_owned(), data.to_vec());
        Ok(())
    }

    /// Nothing to make durable: memory is lost on restart anyway.
    fn sync(&mut self, _name: &str) -> Result<()> {
        Ok(())
    }
}

/// How much the spool holds before refusing new messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolLimits {
    /// Most pending messages.
    pub max_messages: usize,
    /// Most pending body bytes.
    pub max_bytes: usize,
}

impl Default for SpoolLimits {
    fn default() -> Self {
        Self {
            max_messages: 10_000,
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    /// Sequence number (increasing, never reused).
    pub seq: u64,
    /// The app that wrote it.
    pub source: String,
    /// The message body.
    pub body: Vec<u8>,
}

/// What loading found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadReport {
    /// Messages accepted earlier and not yet acknowledged by the hub.
    pub pending: usize,
    /// Journal lines that could not be parsed (torn by a crash) and were skipped.
    pub damaged_lines: usize,
}

/// The spool (see the module documentation).
#[derive(Debug)]
pub struct Spool<F: SpoolFiles> {
    files: F,
    limits: SpoolLimits,
    active: usize,
    journal_bytes: usize,
    pending: BTreeMap<u64, Spooled>,
    pending_bytes: usize,
    in_flight: BTreeSet<u64>,
    next_seq: u64,
    /// A failed append may have left part of a line in the active journal: the next append
    /// starts with a newline, so that fragment stays a damaged line of its own instead of
    /// swallowing the next statement.
    tail_torn: bool,
}

#[derive(Default)]
struct Journal {
    messages: BTreeMap<u64, Spooled>,
    acked: BTreeSet<u64>,
    compacted_below: u64,
}

fn parse_journal(bytes: &[u8], damaged: &mut usize) -> Journal {
    let mut journal = Journal::default();
    let b64 = base64::engine::general_purpose::STANDARD;
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(line) = std::str::from_utf8(line) else {
            *damaged += 1;
            continue;
        };
        let fields: Vec<&str> = line.split(' ').collect();
        // Sequence numbers grow by one per message: anything near u64::MAX is corruption.
        let seq = fields
            .get(1)
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|seq| *seq < MAX_SEQ);
        match (fields.first().copied(), seq, fields.len()) {
            (Some("M"), Some(seq), 4) => match b64.decode(fields[3]) {
                Ok(body) => {
                    journal.messages.insert(
                        seq,
                        Spooled {
                            seq,
                            source: fields[2].to_owned(),
                            body,
                        },
                    );
                }
                Err(_) => *damaged += 1,
            },
            (Some("A"), Some(seq), 2) => {
                journal.acked.insert(seq);
            }
            (Some("L"), Some(n), 2) => journal.compacted_below = journal.compacted_below.max(n),
            _ => *damaged += 1,
        }
    }
    journal
}

fn message_line(message: &Spooled) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(&message.body);
    format!("M {} {} {body}\n", message.seq, message.source).into_bytes()
}

/// A source name safe for the journal (one field, no spaces or control characters).
fn journal_source(source: &str) -> String {
    let clean: String = source
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(64)
        .collect();
    if clean.is_empty() {
        "_".to_owned()
    } else {
        clean
    }
}

impl<F: SpoolFiles> Spool<F> {
    /// An empty spool over `files`, without reading them (infallible; for a memory fallback).
    pub fn empty(files: F, limits: SpoolLimits) -> Self {
        Self {
            files,
            limits,
            active: 0,
            journal_bytes: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            in_flight: BTreeSet::new(),
            next_seq: 0,
            tail_torn: false,
        }
    }

    /// Loads both journals, then compacts into a fresh one.
    pub fn open(mut files: F, limits: SpoolLimits) -> Result<(Self, LoadReport)> {
        let mut damaged = 0;
        let mut journals = Vec::new();
        for (_, name) in JOURNALS {
            journals.push(parse_journal(&files.read(name)?, &mut damaged));
        }
        let current = files.read(CURRENT_FILE)?;
        let active = JOURNALS
            .iter()
            .position(|(slot, _)| current.trim_ascii() == slot.as_bytes())
            .unwrap_or(1);
        let acked = |seq: u64| {
            journals.iter().any(|j| {
                j.acked.contains(&seq)
                    || (seq < j.compacted_below && !j.messages.contains_key(&seq))
            })
        };
        let mut pending = BTreeMap::new();
        let mut next_seq = 0;
        for journal in &journals {
            next_seq = next_seq.max(journal.compacted_below);
            for (seq, message) in &journal.messages {
                next_seq = next_seq.max(seq + 1);
                if !acked(*seq) {
                    pending.insert(*seq, message.clone());
                }
            }
            if let Some(max_ack) = journal.acked.iter().next_back() {
                next_seq = next_seq.max(max_ack + 1);
            }
        }
        let pending_bytes = pending.values().map(|m| m.body.len()).sum();
        let mut spool = Self {
            files,
            limits,
            active,
            journal_bytes: 0,
            pending,
            pending_bytes,
            in_flight: BTreeSet::new(),
            next_seq,
            tail_torn: false,
        };
        spool.compact()?;
        let report = LoadReport {
            pending: spool.pending.len(),
            damaged_lines: damaged,
        };
        Ok((spool, report))
    }

    /// Writes the pending messages into the other journal and switches to it.
    fn compact(&mut self) -> Result<()> {
        let target = 1 - self.active;
        let mut text = format!("L {}\n", self.next_seq).into_bytes();
        for message in self.pending.values() {
            text.extend_from_slice(&message_line(message));
        }
        self.files.replace(JOURNALS[target].1, &text)?;
        // Durable before the pointer moves: the next compaction truncates the other journal.
        self.files.sync(JOURNALS[target].1)?;
        self.files
            .replace(CURRENT_FILE, JOURNALS[target].0.as_bytes())?;
        self.files.sync(CURRENT_FILE)?;
        self.active = target;
        self.journal_bytes = text.len();
        self.tail_torn = false;
        Ok(())
    }

    /// Appends one statement (a whole line) to the active journal (see `tail_torn`).
    fn append_line(&mut self, line: &[u8]) -> Result<()> {
        let journal = JOURNALS[self.active].1;
        let appended = if self.tail_torn {
            let mut fenced = Vec::with_capacity(line.len() + 1);
            fenced.push(b'\n');
            fenced.extend_from_slice(line);
            self.files.append(journal, &fenced).map(|()| fenced.len())
        } else {
            self.files.append(journal, line).map(|()| line.len())
        };
        match appended {
            Ok(len) => {
                self.tail_torn = false;
                self.journal_bytes += len;
                Ok(())
            }
            Err(error) => {
                self.tail_torn = true;
                Err(error)
            }
        }
    }

    /// Accepts a message: it is in the journal and synced to disk when this returns `Ok`
    /// (its sequence number). On `Err` the message is not pending.
    pub fn push(&mut self, source: &str, body: &[u8]) -> Result<u64> {
        if self.pending.len() >= self.limits.max_messages
            || self.pending_bytes + body.len() > self.limits.max_bytes
        {
            return Err(AgentError::SpoolFull {
                messages: self.pending.len(),
                bytes: self.pending_bytes,
            });
        }
        let message = Spooled {
            seq: self.next_seq,
            source: journal_source(source),
            body: body.to_vec(),
        };
        let line = message_line(&message);
        self.append_line(&line)?;
        // The line may be in the file even if the sync fails (and would then be loaded
        // after a restart): never reuse its sequence number.
        self.next_seq += 1;
        self.files.sync(JOURNALS[self.active].1)?;
        self.pending_bytes += message.body.len();
        let seq = message.seq;
        self.pending.insert(seq, message);
        Ok(seq)
    }

    /// Up to `max` pending messages not already handed out, oldest first; they count as
    /// handed out until [`Self::acknowledge`] or [`Self::release`].
    pub fn take_unsent(&mut self, max: usize) -> Vec<Spooled> {
        let taken: Vec<Spooled> = self
            .pending
            .values()
            .filter(|m| !self.in_flight.contains(&m.seq))
            .take(max)
            .cloned()
            .collect();
        self.in_flight.extend(taken.iter().map(|m| m.seq));
        taken
    }

    /// The hub acknowledged `seq`: record it, forget the message, compact when worthwhile.
    pub fn acknowledge(&mut self, seq: u64) -> Result<()> {
        self.in_flight.remove(&seq);
        let Some(message) = self.pending.remove(&seq) else {
            return Ok(());
        };
        self.pending_bytes -= message.body.len();
        self.append_line(format!("A {seq}\n").as_bytes())?;
        if self.journal_bytes >= COMPACT_AT.max(self.pending_bytes * 3) {
            self.compact()?;
        }
        Ok(())
    }

    /// `seq` was not delivered this time: hand it out again later.
    pub fn release(&mut self, seq: u64) {
        self.in_flight.remove(&seq);
    }

    /// Messages accepted and not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Messages pending and not handed out.
    pub fn unsent(&self) -> usize {
        self.pending.len() - self.in_flight.len()
    }

    /// The files (for tests).
    pub fn files(&self) -> &F {
        &self.files
    }

    /// Gives the files back (for tests: reopen as after a restart).
    pub fn into_files(self) -> F {
        self.files
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    fn open(files: MemoryFiles) -> (Spool<MemoryFiles>, LoadReport) {
        Spool::open(files, SpoolLimits::default()).expect("opens")
    }

    /// [`SpoolFiles`] in memory that records every write and sync, in order, in a log shared
    /// with the test (clones share the log and `fail_sync`, not the files); `sync` fails
    /// while `fail_sync` is set.
    #[derive(Debug, Clone, Default)]
    struct Recording {
        memory: MemoryFiles,
        log: Arc<Mutex<Vec<String>>>,
        fail_sync: Arc<AtomicBool>,
        /// The next append writes only half its bytes, then fails (a full disk mid-write).
        tear_next_append: Arc<AtomicBool>,
    }

    impl Recording {
        fn note(&self, entry: String) {
            self.log.lock().expect("log").push(entry);
        }
        fn take_log(&self) -> Vec<String> {
            std::mem::take(&mut *self.log.lock().expect("log"))
        }
    }

    impl SpoolFiles for Recording {
        fn read(&mut self, name: &str) -> Result<Vec<u8>> {
            self.memory.read(name)
        }
        fn append(&mut self, name: &str, data: &[u8]) -> Result<()> {
            self.note(format!("append {name}"));
            if self.tear_next_append.swap(false, Ordering::SeqCst) {
                self.memory.append(name, &data[..data.len() / 2])?;
                return Err(AgentError::Storage {
                    step: "append",
                    file: name.to_owned(),
                    source: SchemeError::Refused {
                        op: "write",
                        errno: Errno::ENOSPC,
                    },
                });
            }
            self.memory.append(name, data)
        }
        fn replace(&mut self, name: &str, data: &[u8]) -> Result<()> {
            self.note(format!("replace {name}"));
            self.memory.replace(name, data)
        }
        fn sync(&mut self, name: &str) -> Result<()> {
            self.note(format!("sync {name}"));
            if self.fail_sync.load(Ordering::SeqCst) {
                return Err(AgentError::Storage {
                    step: "sync",
                    file: name.to_owned(),
                    source: SchemeError::Refused {
                        op: "fsync",
                        errno: Errno::EIO,
                    },
                });
            }
            Ok(())
        }
    }

    #[test]
    fn a_torn_append_does_not_swallow_the_next_message() {
        let files = Recording::default();
        let (mut spool, _) = Spool::open(files.clone(), SpoolLimits::default()).expect("opens");
        spool.push("a", b"first").expect("accepted");
        files.tear_next_append.store(true, Ordering::SeqCst);
        assert!(spool.push("a", b"torn").is_err());
        spool.push("a", b"after").expect("accepted");
        let (mut reloaded, report) =
            Spool::open(spool.into_files(), SpoolLimits::default()).expect("reopens");
        assert_eq!(report.damaged_lines, 1, "the fragment, alone");
        assert_eq!(bodies(&reloaded.take_unsent(10)), [&b"first"[..], b"after"]);
    }

    #[test]
    fn compaction_syncs_the_new_journal_before_moving_the_pointer() {
        let files = Recording::default();
        let (spool, _) = Spool::open(files.clone(), SpoolLimits::default()).expect("opens");
        assert_eq!(
            files.take_log(),
            [
                "replace telemetry-a.journal",
                "sync telemetry-a.journal",
                "replace telemetry.current",
                "sync telemetry.current",
            ]
        );
        // A failed sync of the new journal stops the compaction before the pointer moves.
        files.fail_sync.store(true, Ordering::SeqCst);
        let opened = Spool::open(spool.into_files(), SpoolLimits::default());
        assert!(matches!(
            opened,
            Err(AgentError::Storage { step: "sync", .. })
        ));
        assert_eq!(
            files.take_log(),
            ["replace telemetry-b.journal", "sync telemetry-b.journal"]
        );
    }

    #[test]
    fn an_app_write_is_acknowledged_only_after_append_then_sync() {
        use crate::app_schemes::{AppSchemes, TELEMETRY};
        use crate::component_log::ComponentLog;

        let files = Recording::default();
        let (spool, _) = Spool::open(files.clone(), SpoolLimits::default()).expect("opens");
        files.take_log();
        let spool = Arc::new(Mutex::new(spool));
        let mut server = testudo_scheme::Server::new(AppSchemes::new(
            spool.clone(),
            b"{}\n".to_vec(),
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(ComponentLog::default()),
        ));
        let telemetry = server
            .grant(&testudo_scheme::Grant {
                consumer: "app".into(),
                capability: TELEMETRY.into(),
                rights: Rights::Write,
                allow: Vec::new(),
            })
            .expect("telemetry");
        let worker = std::thread::spawn(move || server.run());

        // Accepted: the reply comes after the append and the sync, in that order.
        assert_eq!(telemetry.write(b"{\"n\":1}").expect("accepted"), 7);
        files.note("acknowledged".to_owned());
        assert_eq!(
            files.take_log(),
            [
                "append telemetry-a.journal",
                "sync telemetry-a.journal",
                "acknowledged"
            ]
        );

        // The sync fails: the app's write fails and nothing is pending for the hub.
        files.fail_sync.store(true, Ordering::SeqCst);
        let refused = telemetry.write(b"{\"n\":2}").expect_err("refused");
        assert_eq!(refused.refused_errno(), Some(Errno::EIO));
        assert_eq!(
            files.take_log(),
            ["append telemetry-a.journal", "sync telemetry-a.journal"]
        );
        assert_eq!(telemetry.fstat().expect("fstat").size, 1, "1 pending");

        // Storage recovers: the next message gets a fresh sequence number (the failed one's
        // line may be in the journal).
        files.fail_sync.store(false, Ordering::SeqCst);
        telemetry.write(b"{\"n\":3}").expect("accepted again");
        drop(telemetry);
        worker.join().expect("server thread").expect("server ends");
        let pending = spool.lock().expect("spool").take_unsent(10);
        let bodies: Vec<&[u8]> = pending.iter().map(|m| m.body.as_slice()).collect();
        assert_eq!(bodies, [&b"{\"n\":1}"[..], b"{\"n\":3}"]);
        assert_eq!(pending[1].seq, pending[0].seq + 2);
    }

    fn bodies(messages: &[Spooled]) -> Vec<&[u8]> {
        messages.iter().map(|m| m.body.as_slice()).collect()
    }

    #[test]
    fn accepted_messages_survive_a_restart_until_acknowledged() {
        let (mut spool, report) = open(MemoryFiles::default());
        assert_eq!(report, LoadReport::default());
        for body in [&b"{\"n\":1}"[..], b"{\"n\":2}", b"{\"n\":3}"] {
            spool.push("app one", body).expect("accepted");
        }
        let sent = spool.take_unsent(2);
        assert_eq!(bodies(&sent), [&b"{\"n\":1}"[..], b"{\"n\":2}"]);
        assert_eq!(sent[0].source, "app_one");
        spool.acknowledge(sent[0].seq).expect("ack");
        // Restart: message 2 was in flight, 3 never sent; both come back, in order.
        let (mut spool, report) = open(spool.into_files());
        assert_eq!(report.pending, 2);
        let again = spool.take_unsent(10);
        assert_eq!(bodies(&again), [&b"{\"n\":2}"[..], b"{\"n\":3}"]);
        // New messages never reuse a sequence number.
        let seq = spool.push("app", b"{}").expect("accepted");
        assert!(seq > again[1].seq);
    }

    #[test]
    fn refuses_beyond_its_limits_and_keeps_what_it_has() {
        let limits = SpoolLimits {
            max_messages: 2,
            max_bytes: 100,
        };
        let (mut spool, _) = Spool::open(MemoryFiles::default(), limits).expect("opens");
        spool.push("a", b"1").expect("first");
        assert!(matches!(
            spool.push("a", &[b'x'; 100]),
            Err(AgentError::SpoolFull { messages: 1, .. })
        ));
        spool.push("a", b"2").expect("second");
        assert!(matches!(
            spool.push("a", b"3"),
            Err(AgentError::SpoolFull { messages: 2, .. })
        ));
        let first = spool.take_unsent(1);
        spool.acknowledge(first[0].seq).expect("ack");
        spool.push("a", b"3").expect("room again");
        assert_eq!(spool.pending(), 2);
    }

    #[test]
    fn a_crash_during_compaction_or_a_torn_line_loses_nothing() {
        let (mut spool, _) = open(MemoryFiles::default());
        for n in 0..5u8 {
            spool.push("a", &[n]).expect("accepted");
        }
        for message in spool.take_unsent(2) {
            spool.acknowledge(message.seq).expect("ack");
        }
        let mut files = spool.into_files();
        // A torn append and a pointer destroyed half-way through a compaction.
        let active = files
            .files
            .keys()
            .find(|k| k.ends_with(".journal"))
            .cloned();
        for name in [JOURNALS[0].1, JOURNALS[1].1] {
            files
                .files
                .entry(name.to_owned())
                .or_default()
                .extend_from_slice(b"M 99 a AAA");
        }
        files.files.insert(CURRENT_FILE.to_owned(), Vec::new());
        assert!(active.is_some());
        let (mut spool, report) = open(files);
        assert_eq!(report.pending, 3);
        assert_eq!(report.damaged_lines, 2);
        assert_eq!(bodies(&spool.take_unsent(10)), [&[2u8][..], &[3], &[4]]);
    }

    #[test]
    fn journals_are_compacted_once_mostly_acknowledged() {
        let (mut spool, _) = open(MemoryFiles::default());
        let body = vec![b'x'; 1000];
        for _ in 0..400 {
            let seq = spool.push("a", &body).expect("accepted");
            spool.take_unsent(1);
            spool.acknowledge(seq).expect("ack");
        }
        let total: usize = spool.files().files.values().map(Vec::len).sum();
        assert!(total < 2 * COMPACT_AT, "journals hold {total} bytes");
        let (spool, report) = open(spool.into_files());
        assert_eq!((report.pending, spool.pending()), (0, 0));
    }
}
