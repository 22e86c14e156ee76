//! Promise: untrusted wire bytes never panic either side. A hostile consumer's messages
//! (truncated, oversized, garbage, every opcode with random arguments) get an error reply or
//! close that one handle while the provider keeps serving its other handles; a hostile
//! provider's replies (truncated, wrong tag, wrong completion opcode, lying lengths, fd
//! mismatches) become `SchemeError`s. Real sockets; inputs from a fixed-seed generator, so
//! every run checks the same cases. (`os/scheme/fuzz/` explores the same two surfaces.)

use std::os::unix::net::UnixDatagram;

use testudo_scheme::syscall::schemev2::{Cqe, CqeOpcode, Opcode, Sqe};
use testudo_scheme::{
    handle_pair, Errno, Grant, Handle, NodeKind, Opened, Rights, SchemeError, SchemeProvider,
    Server, MAX_MESSAGE,
};

/// xorshift64*: deterministic bytes.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn fill(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

struct Echo;

impl SchemeProvider for Echo {
    type Node = Vec<u8>;
    fn root(&mut self, _grant: &Grant) -> Result<Vec<u8>, Errno> {
        Ok(b"root".to_vec())
    }
    fn open(&mut self, _: &Vec<u8>, path: &str, _: Rights) -> Result<Opened<Vec<u8>>, Errno> {
        Ok(Opened::Node(path.as_bytes().to_vec()))
    }
    fn read(&mut self, node: &mut Vec<u8>, buf: &mut [u8]) -> Result<usize, Errno> {
        let n = node.len().min(buf.len());
        buf[..n].copy_from_slice(&node[..n]);
        Ok(n)
    }
    fn write(&mut self, node: &mut Vec<u8>, data: &[u8]) -> Result<usize, Errno> {
        node.truncate(0);
        node.extend_from_slice(&data[..data.len().min(64)]);
        Ok(data.len())
    }
    fn fstat(&mut self, node: &Vec<u8>) -> Result<(NodeKind, u64), Errno> {
        Ok((NodeKind::File, node.len() as u64))
    }
}

fn sqe_bytes(opcode: u8, tag: u32, args: [u64; 6]) -> Vec<u8> {
    let sqe = Sqe {
        opcode,
        tag,
        args,
        ..Sqe::default()
    };
    sqe.to_vec()
}

/// A hostile request message: one of several shapes.
fn hostile_request(gen: &mut Bytes) -> Vec<u8> {
    let opcodes = [
        Opcode::OpenAt as u8,
        Opcode::Read as u8,
        Opcode::Write as u8,
        Opcode::Dup as u8,
        Opcode::Fstat as u8,
        Opcode::Fsync as u8,
        Opcode::Sendfd as u8,
        Opcode::Close as u8,
    ];
    match gen.below(6) {
        // Truncated header.
        0 => {
            let len = 1 + gen.below(63);
            gen.fill(len)
        }
        // Pure garbage of any size up to the maximum.
        1 => {
            let len = 1 + gen.below(MAX_MESSAGE);
            gen.fill(len)
        }
        // Oversized: more than a message may hold.
        2 => {
            let len = MAX_MESSAGE + 1 + gen.below(4096);
            gen.fill(len)
        }
        // A real opcode with random arguments and payload (lengths that lie, huge reads,
        // invalid access modes, non-UTF-8 paths).
        _ => {
            let opcode = opcodes[gen.below(opcodes.len())];
            let mut args = [0u64; 6];
            for arg in &mut args {
                *arg = match gen.below(4) {
                    0 => 0,
                    1 => u64::MAX,
                    2 => gen.next() % 8,
                    _ => gen.next(),
                };
            }
            let mut message = sqe_bytes(opcode, gen.next() as u32, args);
            let payload = gen.below(200);
            message.extend(gen.fill(payload));
            message
        }
    }
}

#[test]
fn a_hostile_consumer_cannot_panic_or_stop_the_provider() {
    let mut gen = Bytes(0x7e57_5c4e_3e00_0001);
    let mut server = Server::new(Echo);
    let grant = |rights| Grant {
        consumer: "hostile".into(),
        capability: "echo".into(),
        rights,
        allow: Vec::new(),
    };
    let honest = server.grant(&grant(Rights::Read)).expect("honest handle");
    // Source of fresh hostile handles when the server closes one.
    let factory = server.grant(&grant(Rights::ReadWrite)).expect("factory");
    let fresh = || {
        UnixDatagram::from(
            factory
                .dup(Rights::ReadWrite)
                .expect("a fresh handle: the provider still serves")
                .into_fd(),
        )
    };
    let worker = std::thread::spawn(move || server.run());
    let mut reply = vec![0u8; MAX_MESSAGE];
    let mut hostile = fresh();
    let mut answered = 0;
    let mut closed = 0;
    for round in 0..3000 {
        let message = hostile_request(&mut gen);
        let outcome = hostile
            .send(&message)
            .and_then(|_| hostile.recv(&mut reply));
        match outcome {
            Ok(n) if n > 0 => {
                answered += 1;
                assert!(n >= std::mem::size_of::<Cqe>(), "reply shorter than a Cqe");
            }
            // The server closed this handle (oversized message): only this one.
            _ => {
                closed += 1;
                hostile = fresh();
            }
        }
        // The honest handle is served throughout.
        if round % 500 == 0 {
            let mut buf = [0u8; 8];
            assert_eq!(honest.read(&mut buf).expect("honest read"), 4);
            assert_eq!(&buf[..4], b"root");
            assert!(matches!(
                honest.write(b"x"),
                Err(SchemeError::Refused {
                    errno: Errno::EBADF,
                    ..
                })
            ));
        }
    }
    assert!(answered > 2000, "only {answered} requests answered");
    assert!(
        closed > 100,
        "oversized messages must close the handle ({closed})"
    );
    let mut buf = [0u8; 8];
    assert_eq!(honest.read(&mut buf).expect("honest read at the end"), 4);
    drop(hostile);
    drop(factory);
    drop(honest);
    worker
        .join()
        .expect("server thread did not panic")
        .expect("server ended cleanly");
}

fn cqe_bytes(flags: u8, extra: u8, tag: u32, result: u64) -> Vec<u8> {
    Cqe {
        flags,
        extra_raw: [extra, 0, 0],
        tag,
        result,
    }
    .to_vec()
}

/// A hostile reply to request `tag`.
fn hostile_reply(gen: &mut Bytes, tag: u32) -> Vec<u8> {
    let tags = [tag, tag.wrapping_add(1), gen.next() as u32];
    let flags = [
        CqeOpcode::RespondRegular as u8,
        CqeOpcode::RespondWithFd as u8,
        gen.next() as u8,
    ];
    match gen.below(5) {
        0 => {
            let len = 1 + gen.below(15);
            gen.fill(len)
        }
        1 => {
            let len = 1 + gen.below(4096);
            gen.fill(len)
        }
        _ => {
            let result = match gen.below(5) {
                0 => 0,
                1 => u64::MAX,
                2 => (-(gen.below(5000) as i64)) as u64,
                3 => gen.next() % 100_000,
                _ => gen.next(),
            };
            let mut message = cqe_bytes(
                flags[gen.below(3)],
                gen.next() as u8,
                tags[gen.below(3)],
                result,
            );
            let payload = gen.below(300);
            message.extend(gen.fill(payload));
            message
        }
    }
}

#[test]
fn a_hostile_provider_cannot_panic_the_consumer() {
    let mut gen = Bytes(0x5eed_0000_0bad_f00d);
    let (ours, theirs) = handle_pair().expect("pair");
    let provider = UnixDatagram::from(theirs);
    let handle = Handle::from_fd(ours);
    let mut errors = 0;
    for call in 0..2000u32 {
        // The handle numbers its requests 1, 2, ...: answer each with hostile bytes.
        let reply = hostile_reply(&mut gen, call + 1);
        let answer = {
            let provider = &provider;
            move || {
                let mut request = vec![0u8; MAX_MESSAGE];
                provider.recv(&mut request).expect("request");
                provider.send(&reply).expect("reply");
            }
        };
        let mut buf = [0u8; 16];
        let outcome: Result<(), SchemeError> = std::thread::scope(|scope| {
            scope.spawn(answer);
            match call % 6 {
                0 => handle.read(&mut buf).map(|n| assert!(n <= buf.len())),
                1 => handle.write(b"hello").map(|n| assert!(n <= 5)),
                2 => handle.fstat().map(|_| ()),
                3 => handle.open("x", Rights::Read).map(|_| ()),
                4 => handle.fsync(),
                _ => handle.dup(Rights::Read).map(|_| ()),
            }
        });
        if outcome.is_err() {
            errors += 1;
        }
    }
    // Most hostile replies are rejected (a few random ones are well-formed by chance).
    assert!(errors > 1000, "only {errors} of 2000 replies rejected");
}
