//! Scheme round trip vs a plain Unix-socket echo, in one run (issue 4 benchmark).
//!
//! Both sides run a server thread; the client sends `size` bytes and gets `size` bytes back.
//! Anchor: `SOCK_SEQPACKET` socketpair echo with plain `write`/`read`. Scheme: one `write`
//! plus one `read` on a handle would be two round trips, so the scheme side measures one
//! `Handle::write` round trip (request with payload, completion) and one `Handle::read` round
//! trip separately, and the anchor measures one send+receive of the same size.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider, Server};

#[derive(Clone)]
struct Echo;

struct EchoProvider;

impl SchemeProvider for EchoProvider {
    type Node = Echo;
    fn root(&mut self, _grant: &Grant) -> Result<Echo, Errno> {
        Ok(Echo)
    }
    fn open(
        &mut self,
        _parent: &Echo,
        _path: &str,
        _rights: Rights,
    ) -> Result<Opened<Echo>, Errno> {
        Ok(Opened::Node(Echo))
    }
    fn read(&mut self, _node: &mut Echo, buf: &mut [u8]) -> Result<usize, Errno> {
        buf.fill(7);
        Ok(buf.len())
    }
    fn write(&mut self, _node: &mut Echo, data: &[u8]) -> Result<usize, Errno> {
        Ok(data.len())
    }
    fn fstat(&mut self, _node: &Echo) -> Result<(NodeKind, u64), Errno> {
        Ok((NodeKind::Stream, 0))
    }
}

fn bench(c: &mut Criterion) {
    let mut server = Server::new(EchoProvider);
    let grant = Grant {
        consumer: "bench".into(),
        capability: "echo".into(),
        rights: Rights::ReadWrite,
        allow: Vec::new(),
    };
    let handle = server.grant(&grant).expect("grant");
    let server_thread = thread::spawn(move || server.run());

    let (mut client, mut peer) = UnixStream::pair().expect("socketpair");
    let echo_thread = thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            let n = match peer.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if peer.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });

    let mut group = c.benchmark_group("scheme_vs_unix_echo");
    for size in [16usize, 4096, 60 * 1024] {
        let data = vec![1u8; size];
        let mut buf = vec![0u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("unix_echo_roundtrip", size),
            &size,
            |b, _| {
                b.iter(|| {
                    client.write_all(&data).expect("write");
                    client.read_exact(&mut buf).expect("read");
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("scheme_write_roundtrip", size),
            &size,
            |b, _| b.iter(|| handle.write(&data).expect("scheme write")),
        );
        group.bench_with_input(
            BenchmarkId::new("scheme_read_roundtrip", size),
            &size,
            |b, _| b.iter(|| handle.read(&mut buf).expect("scheme read")),
        );
    }
    group.finish();
    drop(handle);
    drop(client);
    let _ = server_thread.join();
    let _ = echo_thread.join();
}

criterion_group!(benches, bench);
criterion_main!(benches);
