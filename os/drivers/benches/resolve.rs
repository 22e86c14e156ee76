//! Name resolution by the `net` driver's resolver against a real DNS server (dnsmasq on a
//! private port of 127.0.0.1), in one run:
//!
//! 1. a name from DNS through [`Resolver::resolve`] (a new UDP socket per query, random id,
//!    the answer checked against the query), median of 500;
//! 2. the anchor: the bare exchange with the same server — one pre-built query on one
//!    already connected socket, send and receive, nothing parsed — median of 500;
//! 3. a name from the plan's `hosts` (no network at all), median of 500.
//!
//! The ratio 1/2 is what the resolver adds to the network round trip it cannot avoid.
//! Run: `cargo bench -p testudo-drivers --bench resolve` (needs `/usr/sbin/dnsmasq`).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use testudo_drivers::dns;
use testudo_drivers::resolver::Resolver;
use testudo_plan::env::NetworkSettings;

const RUNS: usize = 500;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn timed(mut work: impl FnMut()) -> Duration {
    let samples = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed()
        })
        .collect();
    median(samples)
}

fn main() {
    let dnsmasq = testudo_testkit::dnsmasq::start(&["--host-record=hub.example.test,10.0.2.2"]);
    let server = dnsmasq.address;
    let resolver = Resolver::default().with_servers(vec![server]);

    let by_dns = timed(|| {
        let address = resolver.resolve("hub.example.test:8883").expect("resolved");
        assert_eq!(address, SocketAddr::from(([10, 0, 2, 2], 8883)));
    });

    let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
    socket.connect(server).expect("connect");
    let query = dns::query(0x1234, "hub.example.test").expect("query");
    let mut answer = [0u8; dns::MAX_MESSAGE];
    let anchor = timed(|| {
        socket.send(&query).expect("send");
        let len = socket.recv(&mut answer).expect("receive");
        assert!(len > query.len());
    });

    let settings = NetworkSettings {
        interface: None,
        hosts: [("hub.example.test".to_owned(), "10.0.2.2".to_owned())].into(),
    };
    let from_hosts = Resolver::new(&settings).expect("settings");
    let by_hosts = timed(|| {
        from_hosts
            .resolve("hub.example.test:8883")
            .expect("resolved");
    });
    drop(dnsmasq);

    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    println!("name resolution against dnsmasq on loopback, median of {RUNS}:");
    println!(
        "  resolver, name from DNS:      {:8.1} us ({:.2}x the anchor)",
        micros(by_dns),
        by_dns.as_secs_f64() / anchor.as_secs_f64()
    );
    println!("  anchor, bare UDP exchange:    {:8.1} us", micros(anchor));
    println!(
        "  resolver, name from hosts:    {:8.1} us ({:.4}x the anchor)",
        micros(by_hosts),
        by_hosts.as_secs_f64() / anchor.as_secs_f64()
    );
}
