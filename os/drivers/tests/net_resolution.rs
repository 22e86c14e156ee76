//! Promise: the `net` driver resolves the names its routes allow the way a device needs: the
//! plan's `hosts` map first, then the board's DNS servers — here a real DNS server (dnsmasq)
//! with an address record, a CNAME and names it refuses. In process, the resolver returns
//! the records and names each failure; run by init in its sandbox (seccomp, namespaces), the
//! driver connects consumers to a name from `hosts`, one from DNS and one behind a CNAME,
//! refuses a name DNS does not know with `EHOSTUNREACH` and a log line, and keeps running.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{SocketAddr, TcpListener};

use common::*;
use testudo_drivers::dns::DnsError;
use testudo_drivers::resolver::{ResolveError, Resolver};
use testudo_init::EventKind;
use testudo_plan::env::NetworkSettings;
use testudo_plan::plan::{ComponentKind, RestartPolicy};
use testudo_plan::BoardNetwork;
use testudo_testkit::dnsmasq::{self, Dnsmasq};

/// dnsmasq with the records these tests resolve.
fn dns_server() -> Dnsmasq {
    dnsmasq::start(&[
        "--host-record=dns.example.test,127.0.0.1",
        "--cname=alias.example.test,dns.example.test",
        "--host-record=far.example.test,192.0.2.7",
    ])
}

fn settings(dns: &Dnsmasq) -> NetworkSettings {
    NetworkSettings {
        interface: Some(BoardNetwork {
            interface: "eth0".into(),
            address: "10.0.2.15/24".into(),
            gateway: Some("10.0.2.2".into()),
            dns: vec![dns.address.to_string()],
        }),
        hosts: [
            ("hub.example.test".to_owned(), "127.0.0.1".to_owned()),
            ("far.example.test".to_owned(), "198.51.100.1".to_owned()),
        ]
        .into(),
    }
}

#[test]
fn the_resolver_reads_hosts_then_a_real_dns_server() {
    let dns = dns_server();
    let resolver = Resolver::new(&settings(&dns)).unwrap();
    let at = |ip: [u8; 4], port| SocketAddr::from((ip, port));
    assert_eq!(
        resolver.resolve("dns.example.test:8883").unwrap(),
        at([127, 0, 0, 1], 8883)
    );
    assert_eq!(
        resolver.resolve("ALIAS.example.test:443").unwrap(),
        at([127, 0, 0, 1], 443)
    );
    // `hosts` wins over what DNS says.
    assert_eq!(
        resolver.resolve("far.example.test:443").unwrap(),
        at([198, 51, 100, 1], 443)
    );
    let error = resolver.resolve("nowhere.example.test:443").unwrap_err();
    assert!(
        matches!(
            error,
            ResolveError::Answer {
                source: DnsError::ServerError { code: 5 },
                ..
            }
        ),
        "{error:?}"
    );
    let text = testudo_error_chain::error_chain(&error);
    assert!(
        text.contains("nowhere.example.test") && text.contains("refused"),
        "{text}"
    );
}

#[test]
fn the_sandboxed_driver_connects_by_hosts_and_by_dns_and_survives_unknown_names() {
    let dns = dns_server();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let targets = [
        format!("hub.example.test:{port}"),
        format!("dns.example.test:{port}"),
        format!("nowhere.example.test:{port}"),
        format!("alias.example.test:{port}"),
    ];
    let allow: Vec<&str> = targets.iter().map(String::as_str).collect();
    let mut components = vec![
        ("log", log_driver()),
        (
            "net",
            component(ComponentKind::Driver, "testudo-net")
                .provides("egress", "net")
                .network()
                .restart(RestartPolicy::Never)
                .0,
        ),
    ];
    for (name, target) in ["by-hosts", "by-dns", "unknown", "alias"]
        .iter()
        .zip(&targets)
    {
        let probe = component(ComponentKind::Service, "testudo-escape-probe")
            .args(&["connect-via-net", target])
            .uses("log", route("log", "log", "log", &[]))
            .uses("net", route("net", "egress", "net", &allow));
        components.push((name, probe.0));
    }
    let mut plan = plan(components);
    let settings = settings(&dns);
    plan.board.network = settings.interface.clone();
    plan.hosts = settings.hosts.clone();
    let (system, _state) = start(plan, None);

    output_line(
        &system,
        "log",
        &format!("[by-hosts] escape-probe connect-via-net: ESCAPED (connected to hub.example.test:{port})"),
    );
    output_line(
        &system,
        "log",
        &format!(
            "[by-dns] escape-probe connect-via-net: ESCAPED (connected to dns.example.test:{port})"
        ),
    );
    let refused = output_line(&system, "log", "[unknown] escape-probe connect-via-net");
    assert!(refused.contains("denied (net refused"), "{refused}");
    let logged = output_line(&system, "net", "resolving nowhere.example.test");
    assert!(logged.contains("refused"), "{logged}");
    output_line(
        &system,
        "log",
        &format!("[alias] escape-probe connect-via-net: ESCAPED (connected to alias.example.test:{port})"),
    );
    let net_exits = system
        .events
        .snapshot()
        .iter()
        .filter(|e| {
            e.component == "net"
                && matches!(
                    e.kind,
                    EventKind::Exited { .. }
                        | EventKind::Signaled { .. }
                        | EventKind::SeccompDenied { .. }
                )
        })
        .count();
    assert_eq!(net_exits, 0, "the net driver must keep running");
    drop(listener);
}
