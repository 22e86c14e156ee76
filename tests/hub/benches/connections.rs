//! Benchmark: memory the emulator spends per live device connection (MQTT 3.1.1 over TLS,
//! subscribed, after one twin GET each), measured as the server process's RSS growth, side
//! by side with the anchor: Eclipse Mosquitto (a production MQTT broker in C) holding the
//! same number of TLS connections from the same client code in the same run.
//!
//! Run: `cargo bench -p testudo-hub --bench connections` (optional arg: connection count,
//! default 1000). The servers run as child processes so client memory is not counted.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark harness: failing loudly is the point

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testudo_hub::test_client::{ConnectOptions, TestDevice};
use testudo_hub::{Emulator, EmulatorConfig};

const KEY: &str = "YmVuY2gta2V5LWJlbmNoLWtleS1iZW5jaC1rZXktMzI=";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Child role: run the emulator with `count` registered devices until stdin closes.
fn serve(dir: &Path, count: usize) {
    let hub = Emulator::start(EmulatorConfig::new(dir)).expect("emulator starts");
    for i in 0..count {
        hub.add_device_with_key(&format!("bench-{i}"), KEY)
            .expect("device added");
    }
    hub.hub().flush();
    println!("READY {}", hub.mqtt_addr.port());
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    hub.shutdown();
}

struct Measured {
    connect_seconds: f64,
    idle_kib: u64,
    loaded_kib: u64,
    connected_kib: u64,
}

async fn load(
    pid: u32,
    port: u16,
    ca_pem: &str,
    count: usize,
    hub_protocol: bool,
) -> (Measured, Vec<TestDevice>) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_kib = rss_kib(pid);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let mut devices = Vec::with_capacity(count);
    for batch in (0..count).collect::<Vec<_>>().chunks(50) {
        let mut tasks = Vec::new();
        for &i in batch {
            let options = ConnectOptions::sas_device(
                addr,
                "localhost",
                ca_pem,
                &format!("bench-{i}"),
                KEY,
                Duration::from_secs(3600),
            );
            tasks.push(tokio::spawn(async move {
                let (mut device, code) = TestDevice::connect(&options).await.expect("connects");
                assert_eq!(code, 0, "CONNACK");
                device
                    .subscribe(&[
                        "$iothub/twin/res/#",
                        "$iothub/twin/PATCH/properties/desired/#",
                    ])
                    .await
                    .expect("subscribes");
                device
            }));
        }
        for task in tasks {
            devices.push(task.await.expect("task"));
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connected_kib = rss_kib(pid);
    if hub_protocol {
        for (i, device) in devices.iter_mut().enumerate() {
            device
                .publish(&format!("$iothub/twin/GET/?$rid={i}"), b"")
                .await
                .expect("twin GET");
            device
                .next_publish("$iothub/twin/res/200/")
                .await
                .expect("twin");
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded_kib = rss_kib(pid);
    (
        Measured {
            connect_seconds,
            idle_kib,
            loaded_kib,
            connected_kib,
        },
        devices,
    )
}

fn wait_ready(child: &mut Child) -> u16 {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("READY line");
    line.trim()
        .strip_prefix("READY ")
        .and_then(|port| port.parse().ok())
        .expect("READY <port>")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let count: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(1000);
    if let Ok(dir) = std::env::var("HUB_BENCH_SERVER_DIR") {
        serve(Path::new(&dir), count);
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    // 1. The emulator, in a child process.
    let mut hub = Command::new(std::env::current_exe().expect("own path"))
        .arg(count.to_string())
        .env("HUB_BENCH_SERVER_DIR", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn emulator");
    let port = wait_ready(&mut hub);
    let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem")).expect("ca.pem");
    let (emulator, devices) = runtime.block_on(load(hub.id(), port, &ca_pem, count, true));
    drop(devices);
    drop(hub.stdin.take());
    let _ = hub.wait();

    // 2. The anchor: mosquitto with the same certificate, same clients.
    let mosquitto_port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {mosquitto_port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n\
             certfile {}\nkeyfile {}\npersistence false\nlog_dest none\n",
            dir.path().join("server.pem").display(),
            dir.path().join("server.key.pem").display(),
        ),
    )
    .expect("mosquitto.conf");
    let mut mosquitto = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .spawn()
        .expect("mosquitto is required for the anchor (Debian package `mosquitto`)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", mosquitto_port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (anchor, devices) =
        runtime.block_on(load(mosquitto.id(), mosquitto_port, &ca_pem, count, false));
    drop(devices);
    let _ = mosquitto.kill();
    let _ = mosquitto.wait();

    let per = |m: &Measured, kib: u64| (kib.saturating_sub(m.idle_kib)) as f64 / count as f64;
    let hub_connected = per(&emulator, emulator.connected_kib);
    let hub_loaded = per(&emulator, emulator.loaded_kib);
    let anchor_connected = per(&anchor, anchor.connected_kib);
    println!("connections: {count} (MQTT 3.1.1 over TLS 1.3, subscribed)");
    println!(
        "testudo hub emulator: idle RSS {} KiB; {:.1} KiB/connection connected, {:.1} KiB/connection after one twin GET each; connect+subscribe all: {:.2} s",
        emulator.idle_kib, hub_connected, hub_loaded, emulator.connect_seconds
    );
    println!(
        "anchor mosquitto 2.0: idle RSS {} KiB; {:.1} KiB/connection connected; connect+subscribe all: {:.2} s",
        anchor.idle_kib, anchor_connected, anchor.connect_seconds
    );
    if anchor_connected > 0.0 {
        println!(
            "ratio emulator/mosquitto memory per connection: {:.2}",
            hub_connected / anchor_connected
        );
    }
}
