//! Per-call limits for transform instances. One struct, documented defaults;
//! the server config can override each field.

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
    /// Bytes of guest log output kept per call (the rest is dropped and
    /// counted). Default 4 KiB.
    pub log_bytes_per_call: usize,
    /// Instances that may run at once; calls beyond wait. Default 64.
    pub max_concurrent_calls: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_timeout: Duration::from_secs(2),
            memory_bytes: 64 << 20,
            module_bytes: 32 << 20,
            output_rows: 1_000_000,
            log_bytes_per_call: 4 << 10,
            max_concurrent_calls: 64,
        }
    }
}
