//! The local IoT Hub emulator (`testudo-hub`) for agent tests, and agent configs pointing at it.

#![allow(clippy::unwrap_used)] // test support code: a failed setup step is a failed test
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use testudo_agent::backoff::Backoff;
use testudo_agent::{AgentConfig, AgentEvent, ConnectionString, DesiredChange, TlsSettings};
use testudo_hub::{Emulator, EmulatorConfig, RunningHub};
use tokio::sync::mpsc::UnboundedReceiver;

/// An emulator in a private state dir. Starting/stopping runs on a plain thread so it works
/// from inside async tests (the emulator drives its own runtime).
pub struct TestHub {
    running: Option<RunningHub>,
    state: PathBuf,
    _dir: tempfile::TempDir,
    pub mqtt_port: u16,
}

impl TestHub {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("hub");
        let running = start_on_thread(EmulatorConfig::new(&state));
        let mqtt_port = running.mqtt_addr.port();
        Self {
            running: Some(running),
            state,
            _dir: dir,
            mqtt_port,
        }
    }

    pub fn hub(&self) -> &RunningHub {
        self.running.as_ref().expect("hub is stopped")
    }

    /// Stops the emulator (state is flushed to disk).
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            std::thread::spawn(move || running.shutdown())
                .join()
                .unwrap();
        }
    }

    /// Starts it again on the same port with the same state.
    pub fn start_again(&mut self) {
        let mut config = EmulatorConfig::new(&self.state);
        config.mqtt_port = self.mqtt_port;
        self.running = Some(start_on_thread(config));
    }

    pub fn tls(&self) -> TlsSettings {
        TlsSettings {
            ca_pem: self.hub().ca_pem.clone().into_bytes(),
            client_identity: None,
        }
    }

    /// Registers `id` and returns a fast-retrying agent config for it.
    pub fn device(&self, id: &str) -> AgentConfig {
        let credentials = self.hub().add_device(id).unwrap();
        let cs = ConnectionString::parse(&credentials.connection_string).unwrap();
        let mut config = AgentConfig::from_connection_string(&cs, self.tls()).unwrap();
        self.point_at_emulator(&mut config);
        config
    }

    pub fn point_at_emulator(&self, config: &mut AgentConfig) {
        config.port = self.mqtt_port;
        config.backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(800),
        };
        config.request_timeout = Duration::from_secs(10);
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.stop();
    }
}

fn start_on_thread(config: EmulatorConfig) -> RunningHub {
    std::thread::spawn(move || {
        // The port of a just-stopped emulator may take a moment to be free again.
        let mut last = None;
        for _ in 0..50 {
            match Emulator::start(config.clone()) {
                Ok(running) => return running,
                Err(err) => last = Some(err),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("emulator did not start: {:?}", last);
    })
    .join()
    .unwrap()
}

/// Next event matching `pick`, failing the test after `timeout`.
pub async fn next_event<T>(
    events: &mut UnboundedReceiver<AgentEvent>,
    timeout: Duration,
    mut pick: impl FnMut(AgentEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("timed out waiting for an agent event")
            .expect("agent event stream ended");
        if let Some(found) = pick(event) {
            return found;
        }
    }
}

/// Next desired change.
pub async fn next_desired(events: &mut UnboundedReceiver<AgentEvent>) -> DesiredChange {
    next_event(events, Duration::from_secs(20), |event| match event {
        AgentEvent::Desired(change) => Some(change),
        _ => None,
    })
    .await
}

/// Polls `condition` until true, failing after `timeout`.
pub async fn eventually(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
