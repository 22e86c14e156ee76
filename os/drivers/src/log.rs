//! The `log` driver: consumers write lines; they come out prefixed with the consumer's name.

use std::io::Write;

use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider};

/// Serves `log`.
#[derive(Debug, Default)]
pub struct LogProvider;

/// A consumer's log stream.
#[derive(Debug, Clone)]
pub struct LogStream {
    consumer: String,
}

impl SchemeProvider for LogProvider {
    type Node = LogStream;

    fn root(&mut self, grant: &Grant) -> Result<LogStream, Errno> {
        Ok(LogStream {
            consumer: grant.consumer.clone(),
        })
    }

    fn open(
        &mut self,
        _parent: &LogStream,
        _path: &str,
        _rights: Rights,
    ) -> Result<Opened<LogStream>, Errno> {
        Err(Errno::ENOENT)
    }

    fn write(&mut self, node: &mut LogStream, data: &[u8]) -> Result<usize, Errno> {
        let text = String::from_utf8_lossy(data);
        let mut out = std::io::stdout().lock();
        for line in text.lines().filter(|line| !line.is_empty()) {
            writeln!(out, "[{}] {}", node.consumer, line.trim_end()).map_err(|_| Errno::EIO)?;
        }
        out.flush().map_err(|_| Errno::EIO)?;
        Ok(data.len())
    }

    fn fstat(&mut self, _node: &LogStream) -> Result<(NodeKind, u64), Errno> {
        Ok((NodeKind::Stream, 0))
    }
}
