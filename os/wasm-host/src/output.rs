//! The app's stdout/stderr: written through to the host (or captured, or discarded) under
//! one byte budget; going over it traps the app with [`LimitExceeded::Output`].

use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::limits::LimitExceeded;

/// Where an output stream's bytes go.
#[derive(Clone)]
pub enum OutputSink {
    /// The host process's stdout.
    Stdout,
    /// The host process's stderr.
    Stderr,
    /// Nowhere (no `log` route).
    Discard,
    /// Kept in memory (tests, benchmarks).
    Buffer(Arc<Mutex<Vec<u8>>>),
    /// Any writer, e.g. a `log` scheme handle.
    Writer(Arc<Mutex<dyn Write + Send>>),
}

impl std::fmt::Debug for OutputSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputSink::Stdout => "Stdout",
            OutputSink::Stderr => "Stderr",
            OutputSink::Discard => "Discard",
            OutputSink::Buffer(_) => "Buffer",
            OutputSink::Writer(_) => "Writer",
        })
    }
}

/// Bytes left for stdout and stderr together.
#[derive(Debug)]
pub struct OutputBudget {
    limit: u64,
    used: AtomicU64,
}

impl OutputBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
        })
    }

    fn take(&self, bytes: usize) -> Result<(), LimitExceeded> {
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.limit {
            return Err(LimitExceeded::Output { limit: self.limit });
        }
        Ok(())
    }
}

/// An output stream for the WASI context.
#[derive(Debug, Clone)]
pub struct BudgetedOutput {
    sink: OutputSink,
    budget: Arc<OutputBudget>,
}

impl BudgetedOutput {
    /// Output to `sink`, charged to `budget`.
    pub fn new(sink: OutputSink, budget: Arc<OutputBudget>) -> Self {
        Self { sink, budget }
    }

    fn write_bytes(&self, bytes: &[u8]) -> Result<(), StreamError> {
        self.budget
            .take(bytes.len())
            .map_err(|limit| StreamError::Trap(wasmtime::Error::new(limit)))?;
        let result = match &self.sink {
            OutputSink::Stdout => std::io::stdout().write_all(bytes),
            OutputSink::Stderr => std::io::stderr().write_all(bytes),
            OutputSink::Discard => Ok(()),
            OutputSink::Buffer(buffer) => {
                if let Ok(mut buffer) = buffer.lock() {
                    buffer.extend_from_slice(bytes);
                }
                Ok(())
            }
            OutputSink::Writer(writer) => match writer.lock() {
                Ok(mut writer) => writer.write_all(bytes),
                Err(_) => Err(std::io::Error::other("output writer poisoned")),
            },
        };
        result.map_err(|error| StreamError::LastOperationFailed(wasmtime::Error::new(error)))
    }
}

impl IsTerminal for BudgetedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BudgetedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BudgetedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for BudgetedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        match &self.sink {
            OutputSink::Stdout => std::io::stdout().flush(),
            OutputSink::Stderr => std::io::stderr().flush(),
            OutputSink::Discard | OutputSink::Buffer(_) | OutputSink::Writer(_) => Ok(()),
        }
        .map_err(|error| StreamError::LastOperationFailed(wasmtime::Error::new(error)))
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

/// `StdoutStream` also asks for tokio's `AsyncWrite`; writes are synchronous.
impl tokio::io::AsyncWrite for BudgetedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.write_bytes(buf)
                .map(|()| buf.len())
                .map_err(|error| std::io::Error::other(error.to_string())),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_beyond_the_budget_trap_with_the_output_limit() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let mut out = BudgetedOutput::new(
            OutputSink::Buffer(Arc::clone(&buffer)),
            OutputBudget::new(4),
        );
        assert!(out.write(Bytes::from_static(b"abc")).is_ok());
        match out.write(Bytes::from_static(b"de")) {
            Err(StreamError::Trap(error)) => assert_eq!(
                error.downcast_ref::<LimitExceeded>(),
                Some(&LimitExceeded::Output { limit: 4 })
            ),
            other => panic!("expected a trap, got {other:?}"),
        }
        assert_eq!(buffer.lock().unwrap().as_slice(), b"abc");
    }
}
