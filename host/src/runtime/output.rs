//! Guest output for one call: stdout, stderr and the `log` import share one
//! byte budget (`Limits::log_bytes_per_call`); what is kept goes to the host
//! log tagged `name@version`, the rest is dropped and counted. Never an error:
//! a chatty transform must not fail (Rust's `println!` panics when a write
//! fails, so a pipe that refused writes would turn logging into a trap).
//!
//! stderr also keeps its last bytes regardless of the budget: a Rust guest
//! prints its panic message there just before trapping, and that line is
//! what makes a trap error useful even after the budget is spent.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Bytes of stderr kept for error messages whatever the budget.
const TAIL_BYTES: usize = 512;
/// Lines of that tail quoted in a trap error.
const TAIL_LINES: usize = 2;

/// A call's log allowance in bytes, shared by every output of the call.
#[derive(Clone)]
pub(crate) struct LogBudget {
    inner: Arc<BudgetState>,
}

struct BudgetState {
    remaining: AtomicUsize,
    dropped_bytes: AtomicUsize,
    dropped_lines: AtomicUsize,
}

impl LogBudget {
    pub fn new(bytes: usize) -> Self {
        LogBudget {
            inner: Arc::new(BudgetState {
                remaining: AtomicUsize::new(bytes),
                dropped_bytes: AtomicUsize::new(0),
                dropped_lines: AtomicUsize::new(0),
            }),
        }
    }

    /// Takes up to `wanted` bytes; returns how many were granted and counts
    /// the rest as dropped.
    fn take_up_to(&self, wanted: usize) -> usize {
        let previous = self
            .inner
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| Some(left.saturating_sub(wanted)))
            .unwrap_or_else(|left| left);
        let granted = previous.min(wanted);
        self.inner.dropped_bytes.fetch_add(wanted - granted, Ordering::Relaxed);
        granted
    }

    /// Takes `len` bytes for a whole log line, or none (the line is dropped
    /// and counted): a log line cut in half would mislead.
    pub fn take_line(&self, len: usize) -> bool {
        let taken = self
            .inner
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(len))
            .is_ok();
        if !taken {
            self.inner.dropped_bytes.fetch_add(len, Ordering::Relaxed);
            self.inner.dropped_lines.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// Bytes and `log` lines dropped so far.
    pub fn dropped(&self) -> (usize, usize) {
        (self.inner.dropped_bytes.load(Ordering::Relaxed), self.inner.dropped_lines.load(Ordering::Relaxed))
    }
}

/// One captured stream (stdout or stderr) of a call.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    budget: LogBudget,
    captured: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    /// What the budget allowed, forwarded to the host log after the call.
    kept: Vec<u8>,
    /// The last bytes written, budget or not; up to `2 * TAIL_BYTES`.
    tail: Vec<u8>,
}

impl GuestOutput {
    pub fn new(budget: LogBudget) -> Self {
        GuestOutput { budget, captured: Arc::new(Mutex::new(Captured::default())) }
    }

    fn append(&self, data: &[u8]) {
        let granted = self.budget.take_up_to(data.len());
        let mut c = self.captured.lock().expect("output lock");
        c.kept.extend_from_slice(&data[..granted]);
        let recent = &data[data.len().saturating_sub(TAIL_BYTES)..];
        c.tail.extend_from_slice(recent);
        if c.tail.len() > 2 * TAIL_BYTES {
            let excess = c.tail.len() - TAIL_BYTES;
            c.tail.drain(..excess);
        }
    }

    /// What the budget let through.
    pub fn kept(&self) -> String {
        String::from_utf8_lossy(&self.captured.lock().expect("output lock").kept).into_owned()
    }

    /// The last few lines written, budget or not, on one line: for a Rust
    /// guest that trapped, its panic location and message. Rust's hint about
    /// `RUST_BACKTRACE` is left out (the guest has no environment to set).
    pub fn tail(&self) -> Option<String> {
        let c = self.captured.lock().expect("output lock");
        let text = String::from_utf8_lossy(&c.tail);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        let recent = &lines[lines.len().saturating_sub(TAIL_LINES)..];
        (!recent.is_empty()).then(|| recent.join(" "))
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
        let mut out = GuestOutput::new(LogBudget::new(10));
        out.write(Bytes::from_static(b"hello ")).unwrap();
        out.write(Bytes::from_static(b"world, and more")).unwrap();
        assert_eq!(out.kept(), "hello worl");
        assert_eq!(out.budget.dropped(), (11, 0));
    }

    #[test]
    fn streams_and_log_lines_share_one_budget() {
        let budget = LogBudget::new(12);
        let mut stdout = GuestOutput::new(budget.clone());
        let mut stderr = GuestOutput::new(budget.clone());
        stdout.write(Bytes::from_static(b"12345")).unwrap();
        assert!(budget.take_line(4));
        assert!(!budget.take_line(4), "only 3 bytes are left; a line is kept whole or not at all");
        stderr.write(Bytes::from_static(b"abcdef")).unwrap();
        assert_eq!((stdout.kept(), stderr.kept()), ("12345".to_string(), "abc".to_string()));
        assert_eq!(budget.dropped(), (4 + 3, 1));
    }

    #[test]
    fn the_panic_message_on_stderr_survives_a_spent_budget() {
        let mut stderr = GuestOutput::new(LogBudget::new(0));
        stderr.write(Bytes::from(vec![b'x'; 5000])).unwrap();
        stderr
            .write(Bytes::from_static(
                b"\nthread '<unnamed>' panicked at src/lib.rs:1:1:\ntrapping on purpose\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
            ))
            .unwrap();
        assert_eq!(stderr.kept(), "");
        assert_eq!(
            stderr.tail().as_deref(),
            Some("thread '<unnamed>' panicked at src/lib.rs:1:1: trapping on purpose")
        );
    }
}
