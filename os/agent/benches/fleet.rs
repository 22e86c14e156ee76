//! Fleet benchmark: 1,000 agents (one process, each with its own MQTT/TLS connection) against
//! the hub emulator (another process). The service sets one desired property on every device;
//! each agent echoes it into its reported properties. Measured: time from the first desired
//! update until the hub has acknowledged all 1,000 echoes, connection ramp-up time, and memory
//! per connection on both sides (RSS delta / connections). Anchors in the same run: the
//! 10 s goal, and a single device's desired->reported round trip.
//!
//! Run: `cargo bench -p testudo-agent --bench fleet` (`FLEET_DEVICES=n` to change the size).
//! Each process needs about n + 100 file descriptors (the hub's side and the agents' side of
//! every connection); both raise their soft limit to that and say so if the hard limit is too
//! low (`ulimit -Hn`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use testudo_agent::backoff::Backoff;
use testudo_agent::{AgentConfig, AgentEvent, ConnectionString, TlsSettings};
use testudo_hub::{Emulator, EmulatorConfig};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Raises this process's soft limit of open files to `needed` (never lowers it); panics naming
/// the hard limit when that is fewer.
fn raise_fd_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write only the struct passed, which lives here.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            limit.rlim_cur = limit.rlim_max.min(needed.max(limit.rlim_cur));
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    assert!(raised, "cannot raise RLIMIT_NOFILE to {needed}");
    assert!(
        limit.rlim_cur >= needed,
        "the fleet needs {needed} open files per process, the hard limit is {} (raise `ulimit -Hn`)",
        limit.rlim_max
    );
}

fn fleet_size() -> usize {
    std::env::var("FLEET_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn main() {
    raise_fd_limit(fleet_size() as u64 + 100);
    if std::env::var_os("FLEET_CHILD").is_some() {
        child();
        return;
    }
    let devices = fleet_size();
    let dir = tempfile::tempdir().expect("temp dir");
    let hub = Emulator::start(EmulatorConfig::new(dir.path().join("hub"))).expect("start emulator");
    let mut lines = Vec::with_capacity(devices);
    for i in 0..devices {
        let creds = hub
            .add_device(&format!("fleet-{i:04}"))
            .expect("add device");
        lines.push(creds.connection_string);
    }
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &hub.ca_pem).expect("write CA");
    let list = dir.path().join("devices.txt");
    std::fs::write(&list, lines.join("\n")).expect("write device list");
    let hub_rss_idle = rss_kib();

    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .env("FLEET_CHILD", "1")
        .env("FLEET_PORT", hub.mqtt_addr.port().to_string())
        .env("FLEET_CA", &ca)
        .env("FLEET_LIST", &list)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start agent process");
    let mut from_child = BufReader::new(child.stdout.take().expect("child stdout"));
    let mut to_child = child.stdin.take().expect("child stdin");
    let mut line = String::new();
    let mut read_line = |line: &mut String| {
        line.clear();
        from_child.read_line(line).expect("read from agent process");
        line.trim().to_string()
    };

    // ready <connect ms> <rss before KiB> <rss after KiB>
    let ready = read_line(&mut line);
    let fields: Vec<u64> = ready
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    assert_eq!(
        fields.len(),
        3,
        "unexpected line from the agent process: {ready:?}"
    );
    let (connect_ms, agent_rss_before, agent_rss_after) = (fields[0], fields[1], fields[2]);
    let hub_rss_connected = rss_kib();
    assert_eq!(
        hub.connection_count(),
        devices,
        "not every agent is connected"
    );

    // The fleet change.
    let started = Instant::now();
    for i in 0..devices {
        hub.set_desired(&format!("fleet-{i:04}"), &json!({"bench": 1}))
            .expect("set desired");
    }
    let fanned_out = started.elapsed();
    let converged_line = read_line(&mut line);
    let converged = started.elapsed();
    assert_eq!(
        converged_line, "converged 1",
        "unexpected line {converged_line:?}"
    );
    for i in 0..devices {
        let reported = hub.reported(&format!("fleet-{i:04}")).expect("reported");
        assert_eq!(
            reported["benchEcho"], 1,
            "device {i} has not reported the change"
        );
    }

    // Anchor: one device's round trip, with the fleet connected and idle (median of 21).
    let mut single = Vec::new();
    for round in 2..23 {
        let t = Instant::now();
        hub.set_desired("fleet-0000", &json!({"bench": round}))
            .expect("set desired");
        let echoed = read_line(&mut line);
        assert_eq!(echoed, format!("converged {round}"));
        single.push(t.elapsed());
    }
    single.sort();
    let single_median = single[single.len() / 2];
    drop(to_child.write_all(b"stop\n"));
    let _ = child.wait();

    let per = |delta: u64| delta as f64 / devices as f64;
    println!("fleet benchmark: {devices} agents, MQTT 3.1.1 over TLS 1.3, one desired change each");
    println!("  connect + first twin sync of all agents: {connect_ms} ms");
    println!(
        "  desired updates issued (service side):    {} ms",
        fanned_out.as_millis()
    );
    println!(
        "  all {devices} echoes acknowledged:           {} ms",
        converged.as_millis()
    );
    println!(
        "  goal 10,000 ms -> ratio {:.3}",
        converged.as_secs_f64() / 10.0
    );
    println!(
        "  single-device round trip (median of 21): {:.2} ms -> fleet/single {:.0}x",
        single_median.as_secs_f64() * 1e3,
        converged.as_secs_f64() / single_median.as_secs_f64()
    );
    println!(
        "  agent memory per connection: {:.1} KiB (RSS {} -> {} KiB)",
        per(agent_rss_after.saturating_sub(agent_rss_before)),
        agent_rss_before,
        agent_rss_after
    );
    println!(
        "  hub memory per connection:   {:.1} KiB (RSS {} -> {} KiB)",
        per(hub_rss_connected.saturating_sub(hub_rss_idle)),
        hub_rss_idle,
        hub_rss_connected
    );
    hub.shutdown();
}

/// The agent side: one tokio runtime, n agents.
fn child() {
    let port: u16 = std::env::var("FLEET_PORT")
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("FLEET_PORT");
    let ca = std::fs::read(std::env::var("FLEET_CA").expect("FLEET_CA")).expect("read CA");
    let list = std::fs::read_to_string(std::env::var("FLEET_LIST").expect("FLEET_LIST"))
        .expect("read list");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let tls = TlsSettings {
            ca_pem: ca,
            client_identity: None,
        };
        let rss_before = rss_kib();
        let started = Instant::now();
        let (synced_tx, mut synced_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let mut handles = Vec::new();
        let connection_strings: Vec<&str> = list.lines().collect();
        let devices = connection_strings.len();
        for text in connection_strings {
            let cs = ConnectionString::parse(text).expect("connection string");
            let mut config = AgentConfig::from_connection_string(&cs, tls.clone()).expect("config");
            config.port = port;
            config.backoff = Backoff {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(5),
            };
            let (agent, mut events) = testudo_agent::spawn(config);
            handles.push(agent.clone());
            let synced = synced_tx.clone();
            let acked = acked_tx.clone();
            tokio::spawn(async move {
                let mut first = true;
                while let Some(event) = events.recv().await {
                    if let AgentEvent::Desired(change) = event {
                        if first {
                            first = false;
                            let _ = synced.send(());
                        }
                        if let Some(value) = change.desired.get("bench").and_then(|v| v.as_u64()) {
                            let agent = agent.clone();
                            let acked = acked.clone();
                            tokio::spawn(async move {
                                if agent.report(&json!({"benchEcho": value})).await.is_ok() {
                                    let _ = acked.send(value);
                                }
                            });
                        }
                    }
                }
            });
        }
        for _ in 0..devices {
            synced_rx.recv().await;
        }
        let connect_ms = started.elapsed().as_millis();
        let rss_after = rss_kib();
        println!("ready {connect_ms} {rss_before} {rss_after}");
        let _ = std::io::stdout().flush();
        // Round 1: the whole fleet; later rounds: one device each.
        let mut counts = std::collections::BTreeMap::<u64, usize>::new();
        let stdin_closed = Arc::new(tokio::sync::Notify::new());
        let notify = stdin_closed.clone();
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = std::io::stdin().read_line(&mut sink);
            notify.notify_one();
        });
        loop {
            tokio::select! {
                Some(value) = acked_rx.recv() => {
                    let count = counts.entry(value).or_default();
                    *count += 1;
                    if (value == 1 && *count == devices) || value > 1 {
                        println!("converged {value}");
                        let _ = std::io::stdout().flush();
                    }
                }
                _ = stdin_closed.notified() => break,
            }
        }
        for agent in handles {
            agent.shutdown().await;
        }
    });
}
