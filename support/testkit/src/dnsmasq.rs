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
///
/// The port is a free one picked just before dnsmasq starts; another process (a parallel
/// test's dnsmasq) may take it in between. dnsmasq then exits at once, and the port looks
/// taken all the same: so the server is returned only once the port is taken and its own
/// process is still running a moment later, else it starts again on another port.
pub fn start(records: &[&str]) -> Dnsmasq {
    assert!(
        Path::new(DNSMASQ).is_file(),
        "{DNSMASQ} is needed (Debian package dnsmasq-base; `cargo xtask test` installs it)"
    );
    for _ in 0..ATTEMPTS {
        if let Some(server) = start_on_a_free_port(records) {
            return server;
        }
    }
    panic!("dnsmasq did not keep a port of its own in {ATTEMPTS} attempts");
}

/// How many ports [`start`] tries.
const ATTEMPTS: usize = 5;

/// One attempt of [`start`]: `None` when dnsmasq exited (its port was taken by another).
fn start_on_a_free_port(records: &[&str]) -> Option<Dnsmasq> {
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
    let mut server = Dnsmasq {
        child,
        address: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
    };
    // It listens once the port is taken, and it is still running.
    let deadline = Instant::now() + Duration::from_secs(10);
    while UdpSocket::bind(server.address).is_ok() {
        assert!(Instant::now() < deadline, "dnsmasq does not listen");
        if exited(&mut server) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    (!exited(&mut server)).then_some(server)
}

/// Whether the dnsmasq of `server` has exited.
fn exited(server: &mut Dnsmasq) -> bool {
    matches!(server.child.try_wait(), Ok(Some(_)))
}
