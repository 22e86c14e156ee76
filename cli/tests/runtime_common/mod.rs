//! Shared by the `testudo run` tests: stopping a run left behind by a failing test, and
//! finding the repository.
#![allow(dead_code)] // each test binary uses its own part of this

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Stops `testudo run` (SIGTERM, then SIGKILL) if the test fails before stopping it.
pub struct StopOnDrop(pub std::process::Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: signals the child this test started and has not reaped yet.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The repository root (the CLI package's parent).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_owned()
}

/// A `testudo run` started by a test: its stdout and stderr lines (prefixed `out: ` and
/// `err: `) arrive on one channel in the order read; stopped when dropped.
pub struct RunningTestudo {
    pub child: StopOnDrop,
    lines: std::sync::mpsc::Receiver<String>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// Every line received so far.
    pub seen: Vec<String>,
    /// Every line with when its reader got it (for timing what the system printed).
    pub arrivals: std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, String)>>>,
}

impl RunningTestudo {
    /// Spawns `command` (stdout and stderr piped) and starts reading both; `needs` says
    /// what must be installed if it cannot start.
    pub fn spawn(mut command: std::process::Command, needs: &str) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{needs}: {e}"));
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let out_tx = tx.clone();
        let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (out_arrivals, err_arrivals) = (arrivals.clone(), arrivals.clone());
        let record = |arrivals: &std::sync::Mutex<Vec<(Instant, String)>>, line: &str| {
            if let Ok(mut arrivals) = arrivals.lock() {
                arrivals.push((Instant::now(), line.to_owned()));
            }
        };
        let readers = vec![
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let line = format!("out: {line}");
                    record(&out_arrivals, &line);
                    let _ = out_tx.send(line);
                }
            }),
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let line = format!("err: {line}");
                    record(&err_arrivals, &line);
                    let _ = tx.send(line);
                }
            }),
        ];
        RunningTestudo {
            child: StopOnDrop(child),
            lines,
            readers,
            seen: Vec::new(),
            arrivals,
        }
    }

    /// Waits up to `timeout` for a line starting with `prefix` (e.g. `out: ready:`); panics
    /// with everything seen if none comes.
    pub fn wait_for(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    panic!("no `{prefix}` line; output:\n{}", self.seen.join("\n"))
                });
            self.seen.push(line.clone());
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// The next line, if one comes within `timeout` (also kept in `seen`).
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let line = self.lines.recv_timeout(timeout).ok()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Collects the lines that arrive within `period`.
    pub fn collect_for(&mut self, period: Duration) {
        let until = Instant::now() + period;
        while let Ok(line) = self
            .lines
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
    }

    /// SIGTERM, then waits up to 5 s for the exit (panics otherwise) and reads the rest of
    /// the output.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.0.id() as i32;
        // SAFETY: sends SIGTERM to the child this test started and has not reaped yet.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to testudo run");
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = self.child.0.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "testudo run did not stop within 5 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.seen.extend(self.lines.try_iter());
        status
    }

    /// [`RunningTestudo::stop`], asserting a clean stop: status 0 and init's
    /// `stopped: all components exited`.
    pub fn stop_cleanly(&mut self) {
        let status = self.stop();
        let seen = self.seen.join("\n");
        assert!(status.success(), "exit status {status:?}\n{seen}");
        assert!(
            seen.contains("stopped: all components exited"),
            "not stopped cleanly:\n{seen}"
        );
    }
}
