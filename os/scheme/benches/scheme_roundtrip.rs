//! Scheme round trip vs a plain Unix-socket exchange, in one run (OS runtime benchmark).
//!
//! Each side has a server thread on a `SOCK_SEQPACKET` socketpair (the scheme's transport).
//! Anchors (no scheme header, no dispatch, no rights check):
//! - `unix_echo/N`: send N bytes, receive the same N bytes back;
//! - `unix_send_ack/N`: send N bytes, receive a 16-byte reply (the shape of a scheme write);
//! - `unix_request_data/N`: send 64 bytes, receive N bytes (the shape of a scheme read).
//!
//! Scheme: `scheme_write/N` (`Handle::write` of N bytes: Sqe + N up, Cqe down) and
//! `scheme_read/N` (`Handle::read` of N bytes: Sqe up, Cqe + N down), against a provider
//! that does no work. Compare `scheme_write` with `unix_send_ack`, `scheme_read` with
//! `unix_request_data`, and the 16-byte cases with `unix_echo/16` for latency.

use std::os::fd::{AsRawFd, OwnedFd};
use std::thread;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider, Server};

#[derive(Clone)]
struct Sink;

struct SinkProvider;

impl SchemeProvider for SinkProvider {
    type Node = Sink;
    fn root(&mut self, _grant: &Grant) -> Result<Sink, Errno> {
        Ok(Sink)
    }
    fn open(
        &mut self,
        _parent: &Sink,
        _path: &str,
        _rights: Rights,
    ) -> Result<Opened<Sink>, Errno> {
        Ok(Opened::Node(Sink))
    }
    fn read(&mut self, _node: &mut Sink, buf: &mut [u8]) -> Result<usize, Errno> {
        Ok(buf.len())
    }
    fn write(&mut self, _node: &mut Sink, data: &[u8]) -> Result<usize, Errno> {
        Ok(data.len())
    }
    fn fstat(&mut self, _node: &Sink) -> Result<(NodeKind, u64), Errno> {
        Ok((NodeKind::Stream, 0))
    }
}

/// Plain server: first byte of a request selects the reply: b'e' echo, b'a' 16-byte ack,
/// b'r' N bytes where N is the little-endian u32 after the mode byte.
fn plain_server(fd: OwnedFd) {
    let mut buf = vec![0u8; 70_000];
    let reply = vec![7u8; 70_000];
    loop {
        let n = match nix::unistd::read(&fd, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let out: &[u8] = match buf[0] {
            b'e' => &buf[..n],
            b'a' => &reply[..16],
            _ => {
                let len = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
                &reply[..len]
            }
        };
        if nix::unistd::write(&fd, out).is_err() {
            return;
        }
    }
}

fn exchange(fd: &OwnedFd, request: &[u8], reply: &mut [u8]) {
    nix::unistd::write(fd, request).expect("send");
    let n = nix::unistd::read(fd, reply).expect("receive");
    assert!(n > 0);
}

fn bench(c: &mut Criterion) {
    let mut server = Server::new(SinkProvider);
    let grant = Grant {
        consumer: "bench".into(),
        capability: "sink".into(),
        rights: Rights::ReadWrite,
        allow: Vec::new(),
    };
    let handle = server.grant(&grant).expect("grant");
    let scheme_thread = thread::spawn(move || server.run());

    let (client, peer) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    let plain_thread = thread::spawn(move || plain_server(peer));
    assert!(client.as_raw_fd() >= 0);

    let mut group = c.benchmark_group("scheme_vs_unix");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(500));
    for size in [16usize, 4096, 60 * 1024] {
        let mut data = vec![1u8; size];
        let mut reply = vec![0u8; 70_000];
        group.throughput(Throughput::Bytes(size as u64));
        data[0] = b'e';
        group.bench_with_input(BenchmarkId::new("unix_echo", size), &size, |b, _| {
            b.iter(|| exchange(&client, &data, &mut reply))
        });
        data[0] = b'a';
        group.bench_with_input(BenchmarkId::new("unix_send_ack", size), &size, |b, _| {
            b.iter(|| exchange(&client, &data, &mut reply))
        });
        let mut request = vec![0u8; 64];
        request[0] = b'r';
        request[1..5].copy_from_slice(&(size as u32).to_le_bytes());
        group.bench_with_input(
            BenchmarkId::new("unix_request_data", size),
            &size,
            |b, _| b.iter(|| exchange(&client, &request, &mut reply)),
        );
        group.bench_with_input(BenchmarkId::new("scheme_write", size), &size, |b, _| {
            b.iter(|| handle.write(&data).expect("scheme write"))
        });
        let mut buf = vec![0u8; size];
        group.bench_with_input(BenchmarkId::new("scheme_read", size), &size, |b, _| {
            b.iter(|| handle.read(&mut buf).expect("scheme read"))
        });
    }
    group.finish();
    drop(handle);
    drop(client);
    let _ = scheme_thread.join();
    let _ = plain_thread.join();
}

criterion_group!(benches, bench);
criterion_main!(benches);
