//! Promise: init's link bring-up configures a real kernel network namespace — the interface
//! is up with the board's address, the default route goes through the gateway, a TCP
//! connection to the address works — and bringing it up a second time (init restarted on
//! an already configured link) succeeds without changing it.
//!
//! `ip` (iproute2) checks the address and link state independently.
//!
//! The kernel calls need `CAP_NET_ADMIN` over the namespace, so the test runs itself again
//! inside a new user and network namespace (`unshare --user --map-root-user --net`), where the
//! only interface is `lo` and nothing the host has can be touched.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use testudo_init::network::{bring_up, KernelLinks, LinkSettings};
use testudo_plan::BoardNetwork;

const CHILD: &str = "TESTUDO_NETWORK_LINK_CHILD";
const TEST: &str = "kernel_links_configure_a_private_network_namespace";
const VERIFIED: &str = "link verified";

#[test]
fn kernel_links_configure_a_private_network_namespace() {
    if std::env::var_os(CHILD).is_some() {
        configure_and_verify();
        return;
    }
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("unshare (util-linux) runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains(VERIFIED),
        "the namespaced run failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// Runs inside the private namespaces.
fn configure_and_verify() {
    let board = BoardNetwork {
        interface: "lo".into(),
        address: "10.77.0.1/24".into(),
        gateway: Some("10.77.0.254".into()),
        dns: Vec::new(),
    };
    let settings = LinkSettings::of(&board).unwrap();
    bring_up(&KernelLinks, &settings, Duration::from_secs(1)).unwrap();

    // The address is local: a listener binds to it and a connection reaches it.
    let listener = TcpListener::bind((Ipv4Addr::new(10, 77, 0, 1), 0)).unwrap();
    let connected = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    assert_eq!(
        connected.peer_addr().unwrap().ip(),
        Ipv4Addr::new(10, 77, 0, 1)
    );

    let routes = std::fs::read_to_string("/proc/net/route").unwrap();
    assert_eq!(default_routes(&routes), [("lo".to_owned(), gateway_hex())]);
    // iproute2 as the independent observer of the address, its prefix and the link state.
    let address = ip(&["-4", "-o", "addr", "show", "dev", "lo"]);
    assert!(address.contains("inet 10.77.0.1/24"), "{address}");
    let link = ip(&["-o", "link", "show", "lo"]);
    assert!(link.contains(",UP"), "{link}");

    // Again, as a restarted init would: same state, no error.
    bring_up(&KernelLinks, &settings, Duration::from_secs(1)).unwrap();
    let again = std::fs::read_to_string("/proc/net/route").unwrap();
    assert_eq!(default_routes(&again), [("lo".to_owned(), gateway_hex())]);
    println!("{VERIFIED}");
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) runs");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// 10.77.0.254 as `/proc/net/route` prints it (network byte order read as a little-endian
/// number).
fn gateway_hex() -> String {
    format!(
        "{:08X}",
        u32::from_le_bytes(Ipv4Addr::new(10, 77, 0, 254).octets())
    )
}

/// (interface, gateway) of every default route in `/proc/net/route`.
fn default_routes(routes: &str) -> Vec<(String, String)> {
    routes
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&"00000000"))
                .then(|| (fields[0].to_owned(), fields[2].to_owned()))
        })
        .collect()
}
