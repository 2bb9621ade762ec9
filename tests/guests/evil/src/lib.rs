//! # wafer-evil-guest
//!
//! A test-only transform that misbehaves on purpose, so the end-to-end tests
//! can prove the sandbox holds: each failure must be an error for that call
//! only, reported with a useful reason, and must leave the host serving.
//!
//! The parameter `mode` picks the behaviour, in `batch` and `on_demand` alike:
//!
//! | mode        | behaviour |
//! |-------------|-----------|
//! | `ok`        | succeeds: column `x` doubled (batch: the first float column of the first source) |
//! | `error`     | returns `Err("refusing on purpose")`, a guest error, not a trap |
//! | `trap`      | panics, which traps (`panic = "abort"`) |
//! | `loop`      | spins forever; only the epoch deadline stops it |
//! | `alloc`     | allocates and touches memory until the memory cap stops it |
//! | `wrong_len` | returns a column with one row more than the timestamps |
//! | `log`       | calls the `log` import [`LOG_LINES`] times, then succeeds as `ok` |
//! | `stdout`    | prints [`LOG_LINES`] lines to stdout, then succeeds as `ok` |
//! | `fs`        | tries to read `/etc/passwd`; returns the error it got (or the bytes read, which would be a sandbox escape) |
//! | `env`       | returns `Err` listing the environment variables it can see |
//!
//! Unknown modes are refused with an error naming the mode.

use core::hint::black_box;
use wafer_guest::{BatchInput, Column, Descriptor, OnDemandInput, Table, Transform, ValueType};

/// How many lines the `log` and `stdout` modes write: far more than any sane
/// per-call log budget, so the host's bound is what stops them.
pub const LOG_LINES: usize = 100_000;

/// The misbehaving transform.
pub struct Evil;

impl Transform for Evil {
    fn describe() -> Descriptor {
        Descriptor::batch("Misbehaves on purpose, as selected by `mode`; for sandbox tests only")
            .input("x", ValueType::Float64, "Any number")
            .output("x", ValueType::Float64, "The input doubled (mode `ok`)")
            .param("mode", ValueType::Text, Some("ok"), "ok|error|trap|loop|alloc|wrong_len|log|stdout|fs|env")
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
        "wrong_len" => {
            let mut values: Vec<f64> = x.to_vec();
            values.push(0.0);
            Ok(Table::new(timestamps).with(Column::from_f64s("x", values)))
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
            for i in 0..LOG_LINES {
                println!("evil guest stdout line {i} of {LOG_LINES}");
            }
            doubled()
        }
        "fs" => match std::fs::read("/etc/passwd") {
            Ok(bytes) => Err(format!("sandbox escape: read {} bytes of /etc/passwd", bytes.len())),
            Err(e) => Err(format!("fs blocked: {e}")),
        },
        "env" => Err(format!("env: {:?}", std::env::vars().map(|(k, _)| k).collect::<Vec<_>>())),
        other => Err(format!("unknown mode `{other}`")),
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
