//! A hostile consumer: arbitrary messages (any length, up to past the maximum) sent on a
//! root handle to a real `Server`. The server must answer or close that handle, never panic,
//! and never grant more rights than the handle holds.

use std::os::unix::net::UnixDatagram;

use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider, Server, MAX_MESSAGE};

/// An in-memory scheme: every path opens a node holding the path's bytes.
struct Memory;

impl SchemeProvider for Memory {
    type Node = Vec<u8>;

    fn root(&mut self, _grant: &Grant) -> Result<Vec<u8>, Errno> {
        Ok(b"root".to_vec())
    }

    fn open(
        &mut self,
        _parent: &Vec<u8>,
        path: &str,
        _rights: Rights,
    ) -> Result<Opened<Vec<u8>>, Errno> {
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        Ok(Opened::Node(path.as_bytes().to_vec()))
    }

    fn read(&mut self, node: &mut Vec<u8>, buf: &mut [u8]) -> Result<usize, Errno> {
        let n = node.len().min(buf.len());
        buf[..n].copy_from_slice(&node[..n]);
        node.drain(..n);
        Ok(n)
    }

    fn write(&mut self, node: &mut Vec<u8>, data: &[u8]) -> Result<usize, Errno> {
        node.extend_from_slice(&data[..data.len().min(256)]);
        Ok(data.len())
    }

    fn fstat(&mut self, node: &Vec<u8>) -> Result<(NodeKind, u64), Errno> {
        Ok((NodeKind::File, node.len() as u64))
    }
}

/// Splits the input into messages: a little-endian u16 length (capped just past the wire
/// maximum, so oversized messages occur) followed by that many bytes.
fn messages(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 && out.len() < 16 {
        let len = (usize::from(u16::from_le_bytes([data[0], data[1]]))).min(MAX_MESSAGE + 64);
        data = &data[2..];
        let len = len.min(data.len());
        out.push(&data[..len]);
        data = &data[len..];
    }
    out
}

/// One fuzz input: must return without panicking.
pub fn fuzz(data: &[u8]) {
    let rights = match data.first().map(|b| b % 3) {
        Some(0) => Rights::Read,
        Some(1) => Rights::Write,
        _ => Rights::ReadWrite,
    };
    let mut server = Server::new(Memory);
    let grant = Grant {
        consumer: "fuzz".into(),
        capability: "memory".into(),
        rights,
        allow: Vec::new(),
    };
    let Ok(handle) = server.grant(&grant) else {
        return;
    };
    let consumer = UnixDatagram::from(handle.into_fd());
    let worker = std::thread::spawn(move || server.run().is_ok());
    let mut reply = vec![0u8; MAX_MESSAGE];
    for message in messages(data.get(1..).unwrap_or(&[])) {
        if consumer.send(message).is_err() {
            break;
        }
        // One answer per message, or the server closed the handle (oversized message).
        match consumer.recv(&mut reply) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(consumer);
    // The server ends once its only handle is closed (new handles it sent were dropped with
    // the consumer's receive queue).
    assert!(worker.join().expect("server thread must not panic"));
}
