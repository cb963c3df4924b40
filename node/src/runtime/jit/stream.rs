//! wasmtime-wasi's view of an [`OutputSink`]: the guest's stdout and stderr
//! as WASI output streams, capped by the sink.

use std::pin::Pin;
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::runtime::sink::OutputSink;

/// wasmtime-wasi's view of an [`OutputSink`].
#[derive(Clone)]
pub(super) struct JitSink(pub(super) OutputSink);

impl IsTerminal for JitSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for JitSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// The room the guest is told it may write at once. The sink itself enforces
/// the cap; a constant keeps the guest writing whole buffers, so both engines
/// see the same sequence of writes and cut the output at the same byte.
const WRITE_PERMIT: usize = 1024 * 1024;

#[wasmtime_wasi::async_trait]
impl OutputStream for JitSink {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.0
            .write(&bytes)
            .map_err(|overflow| StreamError::Trap(wasmtime::Error::msg(overflow.to_string())))
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        if self.0.overflowed() {
            Err(StreamError::Closed)
        } else {
            Ok(WRITE_PERMIT)
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for JitSink {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for JitSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.0
                .write(buf)
                .map(|()| buf.len())
                .map_err(std::io::Error::other),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
