//! A private DNS server for one test or benchmark: dnsmasq answering only from its command line
//! (`--host-record`, `--cname`, …) on a free UDP port of 127.0.0.1, stopped when dropped.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `dnsmasq-base` installs dnsmasq.
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// A running dnsmasq.
#[derive(Debug)]
pub struct Dnsmasq {
    child: Child,
    /// Where it answers.
    pub address: SocketAddr,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts dnsmasq with `records` (its own options, e.g. `--host-record=NAME,ADDRESS`) and
/// returns once it listens; fails naming the package when dnsmasq is missing.
pub fn start(records: &[&str]) -> Dnsmasq {
    assert!(
        Path::new(DNSMASQ).is_file(),
        "{DNSMASQ} is needed (Debian package dnsmasq-base; `cargo xtask test` installs it)"
    );
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("a free UDP port")
        .port();
    let child = Command::new(DNSMASQ)
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--pid-file=",
            &format!("--port={port}"),
        ])
        .args(records)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq starts");
    let server = Dnsmasq {
        child,
        address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
    };
    // It listens once the port is taken.
    let deadline = Instant::now() + Duration::from_secs(10);
    while UdpSocket::bind(server.address).is_ok() {
        assert!(Instant::now() < deadline, "dnsmasq does not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}
