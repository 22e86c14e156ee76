//! The wire format: one request is a scheme v2 [`Sqe`] (64 bytes) followed by its payload,
//! one response is a [`Cqe`] (16 bytes) followed by its payload, each one `SOCK_SEQPACKET`
//! message, optionally carrying one fd.
//!
//! Argument layout per opcode (mirrors Redox's `args` where it has one):
//! - `OpenAt`: payload = UTF-8 path relative to the handle, `args[3]` = `O_*` access mode.
//! - `Read`: `args[2]` = maximum length; response payload = the bytes read.
//! - `Write`: payload = the bytes; `args[2]` = their length.
//! - `Dup`: `args[3]` = `O_*` access mode of the new handle (must be within the old one).
//! - `Fstat`: response payload = Redox `Stat`.
//! - `Fsync`: no arguments, no payload; result 0 once the node's data is durable.
//! - `Sendfd` (init -> provider, control socket only): payload = [`Grant`](crate::Grant) text,
//!   the new root handle's fd attached.
//!
//! A response's `result` is the byte count (or 0) on success and `-errno` as two's complement
//! on failure (Redox's convention). `Cqe::flags` is `RespondRegular`, or `RespondWithFd` when
//! an fd is attached; `extra_raw[0]` then says whether it is a scheme handle ([`FD_SCHEME`])
//! or a raw kernel object such as a connected socket ([`FD_RAW`]).

use nix::errno::Errno;
use syscall::data::Stat as RedoxStat;
use syscall::schemev2::{Cqe, CqeOpcode, Opcode, Sqe};

use crate::SchemeError;

/// Size of a request header.
pub const SQE_LEN: usize = std::mem::size_of::<Sqe>();
/// Size of a response header.
pub const CQE_LEN: usize = std::mem::size_of::<Cqe>();
/// Largest message on a handle, header included.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Largest payload one read or write moves.
pub const MAX_PAYLOAD: usize = MAX_MESSAGE - SQE_LEN;
/// `extra_raw[0]` of a `RespondWithFd` completion: the fd is a scheme handle.
pub const FD_SCHEME: u8 = 0;
/// `extra_raw[0]` of a `RespondWithFd` completion: the fd is a raw kernel object.
pub const FD_RAW: u8 = 1;

/// A decoded request.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub opcode: Opcode,
    pub tag: u32,
    pub args: [u64; 6],
    pub payload: &'a [u8],
}

/// Builds a request message into `out`.
pub(crate) fn encode_request(
    out: &mut Vec<u8>,
    opcode: Opcode,
    tag: u32,
    args: [u64; 6],
    payload: &[u8],
) {
    let sqe = Sqe {
        opcode: opcode as u8,
        tag,
        args,
        ..Sqe::default()
    };
    out.clear();
    out.extend_from_slice(&sqe);
    out.extend_from_slice(payload);
}

/// Parses a request message.
pub(crate) fn decode_request(message: &[u8]) -> Result<Request<'_>, Errno> {
    let (header, payload) = message.split_at_checked(SQE_LEN).ok_or(Errno::EINVAL)?;
    let mut sqe = Sqe::default();
    sqe.copy_from_slice(header);
    let opcode = Opcode::try_from_raw(sqe.opcode).ok_or(Errno::ENOSYS)?;
    Ok(Request {
        opcode,
        tag: sqe.tag,
        args: sqe.args,
        payload,
    })
}

/// Builds a response message into `out`; `fd_kind` is `Some` when an fd is attached.
pub(crate) fn encode_response(
    out: &mut Vec<u8>,
    tag: u32,
    result: Result<u64, Errno>,
    fd_kind: Option<u8>,
    payload: &[u8],
) {
    let (flags, extra) = match fd_kind {
        Some(kind) => (CqeOpcode::RespondWithFd as u8, kind),
        None => (CqeOpcode::RespondRegular as u8, 0),
    };
    let result = match result {
        Ok(value) => value,
        Err(errno) => (-(errno as i64)) as u64,
    };
    let cqe = Cqe {
        flags,
        extra_raw: [extra, 0, 0],
        tag,
        result,
    };
    out.clear();
    out.extend_from_slice(&cqe);
    out.extend_from_slice(payload);
}

/// A decoded response.
#[derive(Debug)]
pub(crate) struct Response<'a> {
    pub result: Result<u64, Errno>,
    /// `Some(FD_SCHEME | FD_RAW)` when the response says an fd is attached.
    pub fd_kind: Option<u8>,
    pub payload: &'a [u8],
}

/// Parses a response message and checks it answers request `tag`.
pub(crate) fn decode_response<'a>(
    op: &'static str,
    message: &'a [u8],
    tag: u32,
) -> Result<Response<'a>, SchemeError> {
    let malformed = |detail: String| SchemeError::Malformed { op, detail };
    let (header, payload) = message.split_at_checked(CQE_LEN).ok_or_else(|| {
        malformed(format!(
            "{} byte response is shorter than a Cqe",
            message.len()
        ))
    })?;
    let mut cqe = Cqe::default();
    cqe.copy_from_slice(header);
    if cqe.tag != tag {
        return Err(malformed(format!(
            "response tag {} for request {tag}",
            cqe.tag
        )));
    }
    let fd_kind = match CqeOpcode::try_from_raw(cqe.flags) {
        Some(CqeOpcode::RespondRegular) => None,
        Some(CqeOpcode::RespondWithFd) => Some(cqe.extra_raw[0]),
        _ => {
            return Err(malformed(format!(
                "unexpected completion opcode {}",
                cqe.flags
            )))
        }
    };
    let signed = cqe.result as i64;
    let result = if (-4095..0).contains(&signed) {
        Err(Errno::from_raw((-signed) as i32))
    } else {
        Ok(cqe.result)
    };
    Ok(Response {
        result,
        fd_kind,
        payload,
    })
}

/// Encodes a Redox `Stat` as bytes.
pub(crate) fn stat_bytes(stat: &RedoxStat) -> Vec<u8> {
    stat.to_vec()
}

/// Decodes a Redox `Stat` from bytes.
pub(crate) fn stat_from_bytes(bytes: &[u8]) -> Option<RedoxStat> {
    let mut stat = RedoxStat::default();
    if bytes.len() != stat.len() {
        return None;
    }
    stat.copy_from_slice(bytes);
    Some(stat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_have_redox_sizes() {
        assert_eq!(SQE_LEN, 64);
        assert_eq!(CQE_LEN, 16);
    }

    #[test]
    fn request_and_response_round_trip() {
        let mut buf = Vec::new();
        encode_request(&mut buf, Opcode::OpenAt, 7, [0, 0, 3, 9, 0, 0], b"abc");
        let request = decode_request(&buf).expect("decodes");
        assert!(matches!(request.opcode, Opcode::OpenAt));
        assert_eq!(
            (request.tag, request.args[3], request.payload),
            (7, 9, &b"abc"[..])
        );

        encode_response(&mut buf, 7, Err(Errno::EACCES), None, b"");
        let response = decode_response("open", &buf, 7).expect("decodes");
        assert_eq!(response.result, Err(Errno::EACCES));
        encode_response(&mut buf, 8, Ok(3), Some(FD_RAW), b"xyz");
        let response = decode_response("read", &buf, 8).expect("decodes");
        assert_eq!(
            (response.result, response.fd_kind, response.payload),
            (Ok(3), Some(FD_RAW), &b"xyz"[..])
        );
        assert!(decode_response("read", &buf, 9).is_err());
    }

    #[test]
    fn garbage_is_rejected_not_panicked_on() {
        assert_eq!(decode_request(&[1, 2, 3]).err(), Some(Errno::EINVAL));
        let mut sqe = vec![0u8; SQE_LEN];
        sqe[0] = 0xff;
        assert_eq!(decode_request(&sqe).err(), Some(Errno::ENOSYS));
        assert!(decode_response("read", &[0u8; 3], 0).is_err());
        assert!(stat_from_bytes(&[0u8; 3]).is_none());
    }

    #[test]
    fn every_truncation_of_a_header_is_an_error() {
        let mut buf = Vec::new();
        encode_request(&mut buf, Opcode::Read, 1, [0, 0, 8, 0, 0, 0], b"");
        for len in 0..SQE_LEN {
            assert_eq!(
                decode_request(&buf[..len]).err(),
                Some(Errno::EINVAL),
                "{len}"
            );
        }
        encode_response(&mut buf, 1, Ok(0), None, b"");
        for len in 0..CQE_LEN {
            assert!(decode_response("read", &buf[..len], 1).is_err(), "{len}");
        }
    }

    #[test]
    fn every_opcode_and_flag_byte_decodes_or_is_refused() {
        for byte in 0..=u8::MAX {
            let mut sqe = vec![0u8; SQE_LEN + 3];
            sqe[0] = byte;
            match decode_request(&sqe) {
                Ok(request) => {
                    assert_eq!(request.opcode as u8, byte);
                    assert_eq!(request.payload.len(), 3);
                }
                Err(errno) => assert_eq!(errno, Errno::ENOSYS),
            }
            let mut cqe = vec![0u8; CQE_LEN];
            cqe[0] = byte;
            let decoded = decode_response("read", &cqe, 0);
            let known =
                byte == CqeOpcode::RespondRegular as u8 || byte == CqeOpcode::RespondWithFd as u8;
            assert_eq!(decoded.is_ok(), known, "flags {byte}");
        }
    }

    #[test]
    fn only_the_errno_range_is_an_error_result() {
        let mut buf = Vec::new();
        for (raw, expected) in [
            ((-1i64) as u64, Err(Errno::EPERM)),
            ((-4095i64) as u64, Err(Errno::from_raw(4095))),
            ((-4096i64) as u64, Ok((-4096i64) as u64)),
            (u64::MAX / 2, Ok(u64::MAX / 2)),
        ] {
            let cqe = Cqe {
                flags: CqeOpcode::RespondRegular as u8,
                extra_raw: [0; 3],
                tag: 5,
                result: raw,
            };
            buf.clear();
            buf.extend_from_slice(&cqe);
            let response = decode_response("read", &buf, 5).expect("decodes");
            assert_eq!(response.result, expected);
        }
    }

    #[test]
    fn oversized_and_odd_payloads_pass_through_unchanged() {
        let big = vec![0x5a; MAX_MESSAGE * 2];
        let mut buf = Vec::new();
        encode_request(&mut buf, Opcode::Write, 9, [0, 0, u64::MAX, 0, 0, 0], &big);
        // The decoder does not trust args[2]: the payload is what arrived.
        let request = decode_request(&buf).expect("decodes");
        assert_eq!(request.payload.len(), big.len());
        assert_eq!(request.args[2], u64::MAX);
        for len in [0, 1, 63, 255, 4096] {
            assert!(stat_from_bytes(&vec![0xff; len]).is_none(), "{len}");
        }
    }
}
