//! Per-call limits for transform instances. One struct, documented defaults;
//! the server config can override each field.

use crate::model::{TimeWindow, Timestamp};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Wall-clock deadline of one call, enforced by epoch interruption.
    /// Default 2 s: a batch call over a few thousand rows takes milliseconds;
    /// anything near this is a bug or an attack.
    pub call_timeout: Duration,
    /// Cap on a call's linear memory, in bytes. Default 64 MiB.
    pub memory_bytes: usize,
    /// Largest accepted component, in bytes. Default 32 MiB.
    pub module_bytes: usize,
    /// Largest output a call may return, in rows. Default 1,000,000.
    pub output_rows: usize,
    /// Largest output a call may return, in bytes as the host estimates
    /// them: 8 per timestamp and per numeric or boolean cell, a string's
    /// length in bytes, a list's elements summed the same way (see
    /// `validate::output_bytes`). Default 16 MiB: a year of daily rows of a
    /// dozen features is about 40 KiB, so this leaves room for long minute
    /// histories while keeping what one call can make the host store, cache
    /// and serialize well below the memory cap. The memory cap already bounds
    /// what a guest can hand over; this bounds what the host keeps of it.
    pub output_bytes: usize,
    /// Bytes of guest log output kept per call (the rest is dropped and
    /// counted). Default 4 KiB.
    pub log_bytes_per_call: usize,
    /// Guest log lines (the `log` import, stdout and stderr alike) one
    /// transform version may send to the host log per second, across all its
    /// calls; a version that was quiet may send one second's worth at once.
    /// Lines over the rate are dropped and counted, and reported in one
    /// summary warning. Default 100: the per-call byte budget alone lets a
    /// version called a thousand times a second write megabytes a second.
    pub log_lines_per_second: u32,
    /// Instances that may run at once; calls beyond wait. Default 64.
    pub max_concurrent_calls: usize,
    /// The times a batch output's timestamps must lie in (they must also be
    /// strictly ascending). The service sets it for each call to what
    /// ingestion accepts at that moment: year 1000 to its clock plus
    /// `--max-future-skew`, so a transform cannot store a row no client
    /// could write. The default has no upper bound, for calls made outside
    /// the service (benchmarks).
    pub output_times: TimeWindow,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_timeout: Duration::from_secs(2),
            memory_bytes: 64 << 20,
            module_bytes: 32 << 20,
            output_rows: 1_000_000,
            output_bytes: 16 << 20,
            log_bytes_per_call: 4 << 10,
            log_lines_per_second: 100,
            max_concurrent_calls: 64,
            output_times: TimeWindow { earliest: TimeWindow::EARLIEST, latest: Timestamp(i64::MAX) },
        }
    }
}
