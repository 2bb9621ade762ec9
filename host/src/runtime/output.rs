//! Guest stdout/stderr: kept in memory up to a byte budget and forwarded to
//! the host log after the call. Output past the budget is dropped and
//! counted, never an error: a chatty transform must not fail (Rust's
//! `println!` panics when a write fails, so a pipe that refuses writes would
//! turn logging into a trap).

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

#[derive(Clone)]
pub(crate) struct GuestOutput {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    budget: usize,
    dropped: usize,
}

impl GuestOutput {
    pub fn new(budget: usize) -> Self {
        GuestOutput { inner: Arc::new(Mutex::new(Captured { budget, ..Captured::default() })) }
    }

    fn append(&self, data: &[u8]) {
        let mut c = self.inner.lock().expect("output lock");
        let room = c.budget.saturating_sub(c.bytes.len());
        let kept = room.min(data.len());
        c.bytes.extend_from_slice(&data[..kept]);
        c.dropped += data.len() - kept;
    }

    /// What was kept, and how many bytes were dropped.
    pub fn contents(&self) -> (String, usize) {
        let c = self.inner.lock().expect("output lock");
        (String::from_utf8_lossy(&c.bytes).into_owned(), c.dropped)
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
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
    fn output_past_the_budget_is_dropped_and_counted() {
        let mut out = GuestOutput::new(10);
        out.write(Bytes::from_static(b"hello ")).unwrap();
        out.write(Bytes::from_static(b"world, and more")).unwrap();
        assert_eq!(out.contents(), ("hello worl".to_string(), 11));
    }
}
