//! # wafer-evil-guest
//!
//! A test-only transform that misbehaves on purpose, so the end-to-end tests
//! can prove the sandbox holds: each failure must be an error for that call
//! only, reported with a useful reason, and must leave the host serving.
//!
//! The parameter `mode` picks the behaviour, in `batch` and `on_demand` alike:
//!
//! | mode         | behaviour |
//! |--------------|-----------|
//! | `ok`         | succeeds: column `x` doubled (batch: the first float column of the first source) |
//! | `error`      | returns `Err("refusing on purpose")`, a guest error, not a trap |
//! | `trap`       | panics, which traps (`panic = "abort"`) |
//! | `loop`       | spins forever; only the epoch deadline stops it |
//! | `alloc`      | allocates and touches memory until the memory cap stops it |
//! | `recurse`    | recurses without bound until the Wasm stack is exhausted |
//! | `wrong_len`  | returns a column with one row more than the timestamps |
//! | `nan`        | returns `x` doubled with its last row NaN (not null) |
//! | `inf`        | returns `x` doubled with its last row +infinity (not null) |
//! | `big_output` | returns `x` doubled and a `text` column of [`BIG_OUTPUT_BYTES`] in all |
//! | `log`        | calls the `log` import [`LOG_LINES`] times, then succeeds as `ok` |
//! | `stdout`     | prints [`LOG_LINES`] lines to stdout (buffered), then succeeds as `ok` |
//! | `fs`         | tries to read `/etc/passwd`; returns the error it got (or the bytes read, which would be a sandbox escape) |
//! | `env`        | returns `Err` listing the environment variables it can see |
//! | `clock`      | reads the clocks: `x` is the wall clock (`SystemTime`) in seconds since the Unix epoch on row 0, and the nanoseconds the monotonic clock (`Instant`) advanced over a short busy loop on later rows |
//! | `exit`       | calls `std::process::exit(3)`, which must end the call, not the host (WASI 0.2's `exit` only tells success from failure: the host sees status 1) |
//! | `sleep`      | sleeps [`SLEEP_SECS`] seconds (`std::thread::sleep`, a blocking WASI poll), then succeeds as `ok` |
//! | `net`        | only with the `net` feature: resolves `localhost` and opens a TCP connection through `std::net`; see below |
//! | `ts_reversed` | succeeds as `ok` but returns the rows' timestamps in descending order |
//! | `ts_repeat`  | succeeds as `ok` but stamps every row with the first row's timestamp |
//! | `ts_max`     | succeeds as `ok` but stamps row i at `i64::MAX - n + i` microseconds (ascending, past any calendar) |
//! | `ts_min`     | succeeds as `ok` but stamps row i at `i64::MIN + i` microseconds (ascending, before any calendar) |
//! | `ts_9999`    | succeeds as `ok` but moves every row to year 9999 (ascending) |
//! | `remember`   | counts its calls in a static and looks for what an earlier call left in memory: `x` is the count on row 0 and, on row 1, how many bytes of a zero-initialized static buffer are not zero; then it marks the buffer for the next call to find |
//!
//! Unknown modes are refused with an error naming the mode.
//!
//! `net` is left out of the default build on purpose: `std::net` makes the
//! component import `wasi:sockets/*`, and the sandbox refuses any component
//! that imports them when it is published, so a guest carrying `net` could
//! not be published to test the other modes. The refusal itself is what the
//! tests check (on a component that imports `wasi:sockets`); `cargo build
//! --target wasm32-wasip2 -p wafer-evil-guest --features net` builds the real
//! attempt, which is refused the same way.

use core::hint::black_box;
use wafer_guest::{BatchInput, Column, Descriptor, OnDemandInput, Table, Transform, ValueType, Values};

/// How many lines the `log` and `stdout` modes write: about 700 KB, far
/// more than any sane per-call log budget or per-second rate, so the host's
/// bounds are what stop them. Not more: each `log` line is a host call, and
/// a debug build of the host under load must still finish them all well
/// within the default 2 s deadline.
pub const LOG_LINES: usize = 10_000;

/// Bytes of text the `big_output` mode returns: over the host's default
/// output cap (16 MiB), yet small enough to build within a 32 MiB memory
/// cap, so it is the output check that stops it and not the allocator.
pub const BIG_OUTPUT_BYTES: usize = 20 << 20;

/// How long the `sleep` mode sleeps: well past the deadlines the tests set.
pub const SLEEP_SECS: u64 = 3;

/// The misbehaving transform.
pub struct Evil;

impl Transform for Evil {
    fn describe() -> Descriptor {
        Descriptor::batch("Misbehaves on purpose, as selected by `mode`; for sandbox tests only")
            .input("x", ValueType::Float64, "Any number")
            .output("x", ValueType::Float64, "The input doubled (mode `ok`)")
            .output("text", ValueType::Text, "Filled only by mode `big_output`")
            .param(
                "mode",
                ValueType::Text,
                Some("ok"),
                "ok|error|trap|loop|alloc|recurse|wrong_len|nan|inf|big_output|log|stdout|fs|env|clock|exit|sleep|net\
                 |ts_reversed|ts_repeat|ts_max|ts_min|ts_9999",
            )
            .min_history(1)
    }

    fn batch(input: BatchInput) -> Result<Table, String> {
        let mode = input.param("mode").unwrap_or("ok").to_string();
        let source = input.first_source()?;
        let x = source.columns.iter().find_map(|c| c.as_float64()).ok_or("the first source has no float64 column")?;
        misbehave(&mode, source.timestamps.clone(), x)
    }

    fn on_demand(input: OnDemandInput) -> Result<Table, String> {
        let mode = input.param("mode").unwrap_or("ok").to_string();
        let columns = || input.request.iter().chain(&input.features);
        // `x` by name, as a request field or a `group:x` feature, else the
        // first float column.
        let named_x = columns().find(|c| c.name() == "x" || c.name().ends_with(":x"));
        let x = named_x
            .and_then(|c| c.as_float64())
            .or_else(|| columns().find_map(|c| c.as_float64()))
            .ok_or("the input has no float64 column")?;
        misbehave(&mode, vec![0; input.rows()], x)
    }
}

fn misbehave(mode: &str, timestamps: Vec<i64>, x: &[f64]) -> Result<Table, String> {
    let doubled =
        || Ok(Table::new(timestamps.clone()).with(Column::from_f64s("x", x.iter().map(|v| v * 2.0).collect())));
    match mode {
        "ok" => doubled(),
        "error" => Err("refusing on purpose".to_string()),
        "trap" => panic!("trapping on purpose"),
        "loop" => {
            let mut n = 0u64;
            loop {
                // black_box hides that the loop has no effect.
                n = black_box(n.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = vec![0u8; 1 << 20];
                // Touch every page so the memory is really used.
                for byte in chunk.iter_mut().step_by(4096) {
                    *byte = 1;
                }
                hoard.push(black_box(chunk));
            }
        }
        "recurse" => Err(format!("recursion ended at depth {}", recurse(0))),
        "wrong_len" => {
            let mut values: Vec<f64> = x.to_vec();
            values.push(0.0);
            Ok(Table::new(timestamps).with(Column::from_f64s("x", values)))
        }
        "nan" => Ok(Table::new(timestamps).with(last_row_is(x, f64::NAN))),
        "inf" => Ok(Table::new(timestamps).with(last_row_is(x, f64::INFINITY))),
        "big_output" => {
            let rows = timestamps.len();
            let Some(per_row) = BIG_OUTPUT_BYTES.checked_div(rows) else {
                return Err("big_output needs at least one row".to_string());
            };
            let text = (0..rows).map(|_| Some("x".repeat(per_row + 1))).collect();
            let doubled = x.iter().map(|v| v * 2.0).collect();
            Ok(Table::new(timestamps).with(Column::from_f64s("x", doubled)).with(Column::text("text", text)))
        }
        "log" => {
            for i in 0..LOG_LINES {
                wafer_guest::log::info(&format!(
                    "evil guest log line {i} of {LOG_LINES}, padded to look like real output"
                ));
            }
            doubled()
        }
        "stdout" => {
            // Buffered: the flood is in bytes, not in line-by-line flushes,
            // each a host call (several, in fact) that a debug build of the
            // host makes slow enough to hit the deadline under load.
            use std::io::Write;
            let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
            for i in 0..LOG_LINES {
                writeln!(out, "evil guest stdout line {i} of {LOG_LINES}").map_err(|e| e.to_string())?;
            }
            out.flush().map_err(|e| e.to_string())?;
            drop(out);
            doubled()
        }
        "fs" => match std::fs::read("/etc/passwd") {
            Ok(bytes) => Err(format!("sandbox escape: read {} bytes of /etc/passwd", bytes.len())),
            Err(e) => Err(format!("fs blocked: {e}")),
        },
        "env" => Err(format!("env: {:?}", std::env::vars().map(|(k, _)| k).collect::<Vec<_>>())),
        "clock" => Ok(Table::new(timestamps.clone()).with(Column::from_f64s("x", read_clocks(timestamps.len())))),
        "exit" => std::process::exit(3),
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(SLEEP_SECS));
            doubled()
        }
        #[cfg(feature = "net")]
        "net" => connect(),
        #[cfg(not(feature = "net"))]
        "net" => Err("mode `net` is built only with the `net` feature: std::net imports wasi:sockets, \
                      which the sandbox refuses at publish"
            .to_string()),
        "ts_reversed" | "ts_repeat" | "ts_max" | "ts_min" | "ts_9999" => {
            Ok(Table::new(skewed_times(mode, &timestamps))
                .with(Column::from_f64s("x", x.iter().map(|v| v * 2.0).collect())))
        }
        "remember" => {
            let (calls, residue) = remember();
            let mut x = vec![0.0; timestamps.len()];
            x.iter_mut().zip([calls as f64, residue as f64]).for_each(|(x, v)| *x = v);
            Ok(Table::new(timestamps).with(Column::from_f64s("x", x)))
        }
        other => Err(format!("unknown mode `{other}`")),
    }
}

/// Bytes `remember` marks in static memory.
const REMEMBER_BYTES: usize = 256 << 10;

/// Calls of `remember` this instance has seen (a new instance starts at 0).
/// Initialized from the module's data image.
static CALLS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// This instance's calls of `remember`, and how many bytes it found marked
/// by an earlier call in a zero-initialized static: memory past the data
/// image, as a heap's fresh pages are, which a slot reused from a finished
/// call must hand over zeroed.
fn remember() -> (u32, usize) {
    use core::sync::atomic::{AtomicU8, Ordering};
    static MARKS: [AtomicU8; REMEMBER_BYTES] = [const { AtomicU8::new(0) }; REMEMBER_BYTES];
    let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    let residue = MARKS.iter().filter(|b| b.load(Ordering::Relaxed) != 0).count();
    MARKS.iter().for_each(|b| b.store(0xAB, Ordering::Relaxed));
    (calls, residue)
}

/// The timestamps a `ts_*` mode returns instead of its input's: what a
/// component that does not keep the WIT's ascending order (or a sane
/// clock) would hand the host.
fn skewed_times(mode: &str, timestamps: &[i64]) -> Vec<i64> {
    let n = timestamps.len() as i64;
    match mode {
        "ts_reversed" => timestamps.iter().rev().copied().collect(),
        "ts_repeat" => vec![timestamps.first().copied().unwrap_or(0); timestamps.len()],
        "ts_max" => (0..n).map(|i| i64::MAX - n + i).collect(),
        "ts_min" => (0..n).map(|i| i64::MIN + i).collect(),
        // 9999-01-01T00:00:00Z, one microsecond apart.
        _ => (0..n).map(|i| 253_370_764_800_000_000 + i).collect(),
    }
}

/// Calls itself through a pointer the optimizer cannot see through, so the
/// recursion is neither inlined nor turned into a loop, and never ends.
fn recurse(depth: u64) -> u64 {
    let next: fn(u64) -> u64 = black_box(recurse);
    next(depth + 1).wrapping_add(depth)
}

/// `x` doubled, its last row set to `value` and not marked null: what a
/// transform that forgot to turn a bad float into a null would return. (The
/// SDK's `Column::from_f64s` would null it, so the raw constructor is used.)
fn last_row_is(x: &[f64], value: f64) -> Column {
    let mut values: Vec<f64> = x.iter().map(|v| v * 2.0).collect();
    if let Some(last) = values.last_mut() {
        *last = value;
    }
    Column::new("x", Values::Float64(values), vec![])
}

/// Row 0: the wall clock in seconds since the Unix epoch (negative if it is
/// before it); later rows: nanoseconds the monotonic clock advanced across a
/// million-step busy loop.
fn read_clocks(rows: usize) -> Vec<f64> {
    let wall = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    };
    (0..rows)
        .map(|row| {
            if row == 0 {
                return wall;
            }
            let started = std::time::Instant::now();
            let mut n = 0u64;
            for _ in 0..1_000_000 {
                n = black_box(n.wrapping_add(1));
            }
            started.elapsed().as_nanos() as f64
        })
        .collect()
}

/// Resolves `localhost` (DNS, `wasi:sockets/ip-name-lookup`) and connects
/// to its discard port (`wasi:sockets/tcp`). Loopback only: the component is
/// meant to be refused before it runs, and even natively it reaches nothing
/// beyond this machine.
#[cfg(feature = "net")]
fn connect() -> Result<Table, String> {
    use std::net::ToSocketAddrs;
    let addr = match ("localhost", 9).to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or("net blocked: localhost resolved to nothing")?,
        Err(e) => return Err(format!("net blocked: resolving localhost: {e}")),
    };
    match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)) {
        Ok(_) => Err(format!("sandbox escape: connected to {addr}")),
        Err(e) => Err(format!("net blocked: connecting to {addr}: {e}")),
    }
}

wafer_guest::export!(Evil);

#[cfg(test)]
mod tests {
    use super::*;
    use wafer_guest::{NamedTable, Param};

    fn batch(mode: &str) -> Result<Table, String> {
        Evil::batch(BatchInput {
            entity: "e".into(),
            sources: vec![NamedTable::new("s", Table::new(vec![1, 2]).with(Column::from_f64s("v", vec![1.5, 2.0])))],
            related: vec![],
            params: vec![Param::new("mode", mode)],
        })
    }

    #[test]
    fn ok_doubles_and_wrong_len_adds_a_row() {
        let out = batch("ok").unwrap();
        assert_eq!(out.columns[0].as_float64().unwrap(), &[3.0, 4.0]);
        assert_eq!(batch("wrong_len").unwrap().columns[0].rows(), 3);
        assert_eq!(batch("error").unwrap_err(), "refusing on purpose");
        assert_eq!(batch("nope").unwrap_err(), "unknown mode `nope`");
    }

    #[test]
    fn nan_and_inf_put_a_non_finite_value_in_the_last_row_without_a_null() {
        for (mode, check) in [("nan", f64::is_nan as fn(f64) -> bool), ("inf", |v: f64| v == f64::INFINITY)] {
            let out = batch(mode).unwrap();
            let x = out.columns[0].as_float64().unwrap();
            assert_eq!(x[0], 3.0, "{mode}");
            assert!(check(x[1]), "{mode}: {x:?}");
            assert!(out.columns[0].nulls().is_empty(), "{mode}: the bad value is not marked null");
        }
    }

    #[test]
    fn big_output_returns_a_text_column_of_the_promised_size() {
        let out = batch("big_output").unwrap();
        let text = out.column("text").unwrap();
        let Values::Text(rows) = text.values() else { panic!("text is {:?}", text.value_type()) };
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().map(String::len).sum::<usize>() > BIG_OUTPUT_BYTES);
        assert_eq!(out.column("x").unwrap().as_float64().unwrap(), &[3.0, 4.0]);
    }

    #[test]
    fn clock_reads_the_wall_clock_and_a_monotonic_interval() {
        let x = batch("clock").unwrap().columns[0].as_float64().unwrap().to_vec();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!((now - x[0]).abs() < 60.0, "wall clock {} vs {now}", x[0]);
        assert!(x[1] >= 0.0, "{x:?}");
    }

    #[test]
    fn net_is_refused_by_name_unless_built_in() {
        if cfg!(not(feature = "net")) {
            assert!(batch("net").unwrap_err().contains("only with the `net` feature"));
        }
    }

    #[test]
    fn on_demand_prefers_the_column_named_x() {
        let input = OnDemandInput {
            features: vec![Column::from_f64s("g:y", vec![10.0]), Column::from_f64s("g:x", vec![1.0])],
            request: vec![],
            params: vec![],
        };
        let out = Evil::on_demand(input).unwrap();
        assert_eq!((out.timestamps.len(), out.columns[0].as_float64().unwrap()), (1, &[2.0][..]));
    }
}
