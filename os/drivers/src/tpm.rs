//! The `tpm` driver: owns the TPM (a device node such as `/dev/tpm0`, or a swtpm `unixio`
//! socket) and forwards raw TPM 2.0 commands: `write` a command, `read` its response.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider};

use crate::DriverError;

/// Largest TPM 2.0 command or response accepted.
pub const MAX_TPM_MESSAGE: usize = 4096;
const HEADER: usize = 10;

/// Where TPM commands go.
#[derive(Debug)]
enum Backend {
    Device(std::fs::File),
    Socket(UnixStream),
}

/// Serves `tpm`.
#[derive(Debug)]
pub struct TpmProvider {
    backend: Backend,
}

/// A session: holds the response to the last command.
#[derive(Debug, Clone, Default)]
pub struct TpmSession {
    response: Vec<u8>,
}

/// The size field of a TPM 2.0 command/response header (`tag u16, size u32, code u32`).
pub fn declared_size(header: &[u8]) -> Option<usize> {
    let bytes: [u8; 4] = header.get(2..6)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes) as usize)
}

impl TpmProvider {
    /// Opens the TPM at `path` (device node or swtpm socket).
    pub fn open(path: &Path) -> Result<TpmProvider, DriverError> {
        let wrap = |source| DriverError::Resource {
            driver: testudo_plan::interfaces::TPM,
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(wrap)?;
        let backend = if meta.file_type().is_socket() {
            Backend::Socket(UnixStream::connect(path).map_err(wrap)?)
        } else {
            Backend::Device(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(wrap)?,
            )
        };
        Ok(TpmProvider { backend })
    }

    fn transact(&mut self, command: &[u8]) -> std::io::Result<Vec<u8>> {
        match &mut self.backend {
            Backend::Device(device) => {
                device.write_all(command)?;
                let mut response = vec![0u8; MAX_TPM_MESSAGE];
                let n = device.read(&mut response)?;
                response.truncate(n);
                Ok(response)
            }
            Backend::Socket(socket) => {
                socket.write_all(command)?;
                let mut response = vec![0u8; HEADER];
                socket.read_exact(&mut response)?;
                let size = declared_size(&response)
                    .filter(|size| (HEADER..=MAX_TPM_MESSAGE).contains(size))
                    .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EPROTO))?;
                response.resize(size, 0);
                socket.read_exact(&mut response[HEADER..])?;
                Ok(response)
            }
        }
    }
}

impl SchemeProvider for TpmProvider {
    type Node = TpmSession;

    fn root(&mut self, _grant: &Grant) -> Result<TpmSession, Errno> {
        Ok(TpmSession::default())
    }

    fn open(
        &mut self,
        _parent: &TpmSession,
        _path: &str,
        _rights: Rights,
    ) -> Result<Opened<TpmSession>, Errno> {
        Err(Errno::ENOENT)
    }

    fn write(&mut self, node: &mut TpmSession, command: &[u8]) -> Result<usize, Errno> {
        if command.len() < HEADER
            || command.len() > MAX_TPM_MESSAGE
            || declared_size(command) != Some(command.len())
        {
            return Err(Errno::EINVAL);
        }
        node.response = self
            .transact(command)
            .map_err(|error| Errno::from_raw(error.raw_os_error().unwrap_or(libc::EIO)))?;
        Ok(command.len())
    }

    fn read(&mut self, node: &mut TpmSession, buf: &mut [u8]) -> Result<usize, Errno> {
        let n = node.response.len().min(buf.len());
        buf[..n].copy_from_slice(&node.response[..n]);
        node.response.drain(..n);
        Ok(n)
    }

    fn fstat(&mut self, node: &TpmSession) -> Result<(NodeKind, u64), Errno> {
        Ok((NodeKind::Stream, node.response.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_size_is_big_endian_and_bounds_checked() {
        assert_eq!(
            declared_size(&[0x80, 0x01, 0, 0, 0, 12, 0, 0, 1, 0x7b]),
            Some(12)
        );
        assert_eq!(declared_size(&[0x80]), None);
    }
}
