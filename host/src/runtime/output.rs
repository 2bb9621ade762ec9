//! Guest output for one call: stdout, stderr and the `log` import share one
//! byte budget (`Limits::log_bytes_per_call`); what is kept goes to the host
//! log tagged `name@version`, the rest is dropped and counted. Never an error:
//! a chatty transform must not fail (Rust's `println!` panics when a write
//! fails, so a pipe that refused writes would turn logging into a trap).
//!
//! Across calls, each version's lines also pass a token bucket
//! (`Limits::log_lines_per_second`, [`LogRates`]): the per-call budget alone
//! lets a version called a thousand times a second flood the host log.
//! Whatever either limit drops is counted per version and reported in one
//! summary warning, "dropped N log lines from name@version", at most once per
//! [`SUMMARY_INTERVAL`], never one warning per line.
//!
//! stderr also keeps its last bytes regardless of the budget: a Rust guest
//! prints its panic message there just before trapping, and that line is
//! what makes a trap error useful even after the budget is spent.

use bytes::Bytes;
use dashmap::DashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tracing::Level;
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

/// Drop reports of one version are at most this frequent: a version over its
/// rate in every call gets one warning per interval, not one per call. A count
/// still pending when a version's calls stop is reported after its next call.
pub(crate) const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Each transform version's log rate, shared by all calls of a runtime and
/// keyed by `name@version`: a new version starts with a full bucket, and a
/// noisy version cannot spend another's allowance. One small entry per
/// version ever called.
// Held by wasm.rs's runtime once it routes its log through `CallLog`.
#[derive(Default)]
pub(crate) struct LogRates {
    buckets: DashMap<String, Arc<Mutex<Bucket>>>,
}

impl LogRates {
    /// The bucket of `module` (`name@version`), created full on first use.
    pub fn for_module(&self, module: &str) -> RateLimit {
        let bucket = self.buckets.entry(module.to_string()).or_default().clone();
        RateLimit { bucket }
    }
}

/// One version's token bucket; see [`LogRates`]. Time is passed in, so
/// tests move it instead of sleeping.
#[derive(Clone)]
pub(crate) struct RateLimit {
    bucket: Arc<Mutex<Bucket>>,
}

#[derive(Default)]
struct Bucket {
    /// Lines that may be sent now: refilled at the rate, up to one second's
    /// worth (the burst a quiet version may send at once).
    tokens: f64,
    /// When `tokens` was last brought up to date; `None` before first use,
    /// when the bucket counts as full.
    refilled_at: Option<Instant>,
    /// Dropped since the last summary.
    pending: Dropped,
    summarized_at: Option<Instant>,
}

/// What the limits dropped: whole lines (over the rate, or `log` lines over
/// the budget) and bytes over the per-call budget (stdout and stderr are cut
/// mid-stream, so they count in bytes; a `log` line over the budget counts
/// in both).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Dropped {
    pub lines: u64,
    pub bytes: u64,
}

impl Dropped {
    fn is_empty(&self) -> bool {
        self.lines == 0 && self.bytes == 0
    }

    /// The summary warning's text for `module`.
    pub fn message(&self, module: &str) -> String {
        match (self.lines, self.bytes) {
            (lines, 0) => format!("dropped {lines} log lines from {module}"),
            (0, bytes) => format!("dropped {bytes} bytes of output from {module}"),
            (lines, bytes) => format!("dropped {lines} log lines and {bytes} bytes of output from {module}"),
        }
    }
}

impl RateLimit {
    /// Whether one more line may go to the host log at `now`, at
    /// `per_second` lines a second; a refused line is counted.
    pub fn admit(&self, now: Instant, per_second: u32) -> bool {
        let mut b = self.bucket.lock().expect("log rate lock");
        let rate = f64::from(per_second);
        b.tokens = match b.refilled_at {
            None => rate,
            Some(at) => (b.tokens + now.saturating_duration_since(at).as_secs_f64() * rate).min(rate),
        };
        // Callers read the clock before taking the lock, so `now` may be a
        // little behind the last caller's; time never runs backwards here.
        b.refilled_at = Some(b.refilled_at.map_or(now, |at| at.max(now)));
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            b.pending.lines += 1;
            false
        }
    }

    /// Adds drops counted elsewhere (the per-call budget) to this version's.
    pub fn count(&self, dropped: Dropped) {
        let mut b = self.bucket.lock().expect("log rate lock");
        b.pending.lines += dropped.lines;
        b.pending.bytes += dropped.bytes;
    }

    /// The drops to report at `now`, if any are pending and the last report
    /// is at least [`SUMMARY_INTERVAL`] old; they are then cleared.
    pub fn take_summary(&self, now: Instant) -> Option<Dropped> {
        let mut b = self.bucket.lock().expect("log rate lock");
        if b.pending.is_empty()
            || b.summarized_at.is_some_and(|at| now.saturating_duration_since(at) < SUMMARY_INTERVAL)
        {
            return None;
        }
        b.summarized_at = Some(now);
        Some(std::mem::take(&mut b.pending))
    }
}

/// Everything the guest of one call may say on its way to the host log:
/// each line within the call's byte budget and the version's rate, tagged
/// `transform = name@version` and its stream (`log`, `stdout`, `stderr`).
/// A call's store holds one: the `log` import calls [`CallLog::line`], and
/// the call ends with [`CallLog::finish`].
// Until wasm.rs routes its log through this type (in place of its
// budget-only `LogSink` and `forward_output`), only the tests use it.
pub(crate) struct CallLog {
    module: String,
    budget: LogBudget,
    rate: RateLimit,
    lines_per_second: u32,
}

impl CallLog {
    pub fn new(module: &str, budget: LogBudget, rate: RateLimit, lines_per_second: u32) -> Self {
        CallLog { module: module.to_string(), budget, rate, lines_per_second }
    }

    /// The call's byte budget (its stdout and stderr share it).
    #[cfg(test)]
    pub fn budget(&self) -> &LogBudget {
        &self.budget
    }

    /// A line from the guest's `log` import, kept whole or dropped whole.
    pub fn line(&self, level: Level, message: &str, now: Instant) {
        if self.budget.take_line(message.len()) && self.rate.admit(now, self.lines_per_second) {
            emit(&self.module, level, "log", message);
        }
    }

    /// After the call: forwards what the budget kept of stdout and stderr,
    /// line by line within the rate, counts what the budget dropped, and
    /// reports the version's drops if one is due.
    pub fn finish(&self, stdout: &GuestOutput, stderr: &GuestOutput, now: Instant) {
        for (stream, output) in [("stdout", stdout), ("stderr", stderr)] {
            for line in output.kept().lines().filter(|l| !l.trim().is_empty()) {
                if self.rate.admit(now, self.lines_per_second) {
                    emit(&self.module, Level::INFO, stream, line);
                }
            }
        }
        let (bytes, lines) = self.budget.dropped();
        self.rate.count(Dropped { lines: lines as u64, bytes: bytes as u64 });
        if let Some(dropped) = self.rate.take_summary(now) {
            tracing::warn!(
                transform = %self.module,
                dropped_lines = dropped.lines,
                dropped_bytes = dropped.bytes,
                "{}",
                dropped.message(&self.module)
            );
        }
    }
}

/// One guest line in the host log, tagged with its transform and stream.
fn emit(module: &str, level: Level, stream: &str, message: &str) {
    match level {
        Level::TRACE => tracing::trace!(transform = %module, stream, "{message}"),
        Level::DEBUG => tracing::debug!(transform = %module, stream, "{message}"),
        Level::INFO => tracing::info!(transform = %module, stream, "{message}"),
        Level::WARN => tracing::warn!(transform = %module, stream, "{message}"),
        Level::ERROR => tracing::error!(transform = %module, stream, "{message}"),
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

    /// Everything logged while `f` runs, formatted without colours.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(Level::TRACE)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
    }

    fn call_log(rates: &LogRates, module: &str, budget_bytes: usize, per_second: u32) -> CallLog {
        CallLog::new(module, LogBudget::new(budget_bytes), rates.for_module(module), per_second)
    }

    #[test]
    fn guest_lines_reach_the_host_log_tagged_with_name_version_and_stream() {
        let rates = LogRates::default();
        let log = call_log(&rates, "evil@1.0.0", 4096, 100);
        let mut stdout = GuestOutput::new(log.budget().clone());
        let stderr = GuestOutput::new(log.budget().clone());
        let now = Instant::now();
        let out = logged(|| {
            log.line(Level::WARN, "from the log import", now);
            stdout.write(Bytes::from_static(b"printed\n\n")).unwrap();
            log.finish(&stdout, &stderr, now);
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].contains("WARN") && lines[0].contains("from the log import"), "{out}");
        assert!(lines[0].contains("transform=evil@1.0.0") && lines[0].contains("stream=\"log\""), "{out}");
        assert!(lines[1].contains("INFO") && lines[1].contains("printed"), "{out}");
        assert!(lines[1].contains("transform=evil@1.0.0") && lines[1].contains("stream=\"stdout\""), "{out}");
    }

    #[test]
    fn a_version_may_send_one_burst_then_lines_at_the_rate() {
        let rates = LogRates::default();
        let rate = rates.for_module("evil@1.0.0");
        let t0 = Instant::now();
        let admitted = |at: Instant, n: usize| (0..n).filter(|_| rate.admit(at, 100)).count();
        assert_eq!(admitted(t0, 250), 100, "a fresh bucket holds one second's worth");
        assert_eq!(admitted(t0 + Duration::from_millis(100), 50), 10, "refilled at 100 a second");
        assert_eq!(admitted(t0 + Duration::from_secs(60), 500), 100, "a long quiet refills only up to the burst");
        assert_eq!(rate.take_summary(t0 + Duration::from_secs(60)), Some(Dropped { lines: 150 + 40 + 400, bytes: 0 }));
    }

    #[test]
    fn versions_have_buckets_of_their_own() {
        let rates = LogRates::default();
        let now = Instant::now();
        let noisy = rates.for_module("evil@1.0.0");
        while noisy.admit(now, 10) {}
        assert!(!rates.for_module("evil@1.0.0").admit(now, 10), "the same version shares its bucket");
        assert!(rates.for_module("evil@1.0.1").admit(now, 10), "another version is not held back");
        assert!(rates.for_module("indicators@1.0.0").admit(now, 10));
    }

    #[test]
    fn dropped_lines_are_summarized_at_most_once_per_interval() {
        let rate = LogRates::default().for_module("evil@1.0.0");
        let t0 = Instant::now();
        assert_eq!(rate.take_summary(t0), None, "nothing dropped, nothing to say");
        rate.count(Dropped { lines: 3, bytes: 0 });
        assert_eq!(rate.take_summary(t0), Some(Dropped { lines: 3, bytes: 0 }), "the first report is at once");
        rate.count(Dropped { lines: 5, bytes: 7 });
        assert_eq!(rate.take_summary(t0 + SUMMARY_INTERVAL / 2), None, "too soon after the last");
        rate.count(Dropped { lines: 1, bytes: 0 });
        assert_eq!(rate.take_summary(t0 + SUMMARY_INTERVAL), Some(Dropped { lines: 6, bytes: 7 }), "accumulated");
        assert_eq!(rate.take_summary(t0 + SUMMARY_INTERVAL * 5), None, "cleared once reported");
    }

    #[test]
    fn summaries_name_the_version_and_what_was_dropped() {
        assert_eq!(Dropped { lines: 12, bytes: 0 }.message("evil@1.0.0"), "dropped 12 log lines from evil@1.0.0");
        assert_eq!(Dropped { lines: 0, bytes: 80 }.message("evil@1.0.0"), "dropped 80 bytes of output from evil@1.0.0");
        assert_eq!(
            Dropped { lines: 2, bytes: 80 }.message("evil@1.0.0"),
            "dropped 2 log lines and 80 bytes of output from evil@1.0.0"
        );
    }

    #[test]
    fn a_call_over_the_rate_logs_the_rate_then_one_summary_warning() {
        let rates = LogRates::default();
        let now = Instant::now();
        let log = call_log(&rates, "evil@1.0.0", 1 << 20, 5);
        let (stdout, stderr) = (GuestOutput::new(log.budget().clone()), GuestOutput::new(log.budget().clone()));
        let out = logged(|| {
            for i in 0..1000 {
                log.line(Level::INFO, &format!("line {i}"), now);
            }
            log.finish(&stdout, &stderr, now);
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 6, "five lines, then the summary: {out}");
        assert!(lines[4].contains("line 4"), "{out}");
        assert!(lines[5].contains("WARN") && lines[5].contains("dropped 995 log lines from evil@1.0.0"), "{out}");
        assert!(lines[5].contains("dropped_lines=995"), "{out}");

        // The next call within the interval is dropped silently; its count
        // waits for the next report.
        let next = call_log(&rates, "evil@1.0.0", 1 << 20, 5);
        let out = logged(|| {
            next.line(Level::INFO, "one more", now + Duration::from_millis(1));
            next.finish(&stdout, &stderr, now + Duration::from_millis(1));
        });
        assert_eq!(out, "");
        assert_eq!(
            rates.for_module("evil@1.0.0").take_summary(now + SUMMARY_INTERVAL),
            Some(Dropped { lines: 1, bytes: 0 })
        );
    }

    #[test]
    fn stdout_lines_and_log_lines_share_the_rate_and_budget_drops_join_the_summary() {
        let rates = LogRates::default();
        let now = Instant::now();
        let log = call_log(&rates, "evil@1.0.0", 40, 3);
        let mut stdout = GuestOutput::new(log.budget().clone());
        let stderr = GuestOutput::new(log.budget().clone());
        let out = logged(|| {
            log.line(Level::INFO, "first", now);
            stdout.write(Bytes::from_static(b"a\nb\nc\nd\n")).unwrap();
            stdout.write(Bytes::from(vec![b'x'; 100])).unwrap();
            log.line(Level::INFO, "over the budget", now);
            log.finish(&stdout, &stderr, now);
        });
        let lines: Vec<&str> = out.lines().collect();
        // `first`, then stdout `a` and `b` use the rate of 3; `c`, `d` and the
        // x's are over it. Budget: 40 - 5 - 8 leaves 27 of the 100 x's.
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[1].contains("stream=\"stdout\"") && lines[1].contains(": a transform="), "{out}");
        assert!(lines[3].contains("dropped 4 log lines and 88 bytes of output from evil@1.0.0"), "{out}");
    }

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
