//! `wafer-bench`: the performance numbers we report, measured on this
//! machine (never asserted in tests).
//!
//! - `wafer-bench http [--endpoint online|feast|enrich] [--connections N] [--seconds N] [--rate N] [--server-cpu true | --server URL [--server-pid PID]]`:
//!   serving latency, throughput and server CPU per request over HTTP
//!   (online read, the same read through the Feast endpoint, or prompt
//!   enrichment).
//! - `wafer-bench wasm [--iterations N]`: per-call overhead of the Wasm
//!   runtime (fresh store + instantiate + call, against a reused instance),
//!   load time compiled and from the disk cache, and one indicators batch
//!   call over 252 rows.
//! - `wafer-bench materialize [--tickers N] [--days N]`: ingest and
//!   materialization throughput.
//! - `wafer-bench write --database-url URL [--rows N] [--features N] [--iterations N]`:
//!   batch write latency of the offline store on PostgreSQL.
//! - `wafer-bench catalog [--hits N] [--misses N] [--settle-ms N]`: the seed features of
//!   one ticker read in process, online hits against computed on the miss.
//! - `wafer-bench historical [--feature-rows N] [--entity-rows N] [--entities N] [--json true]`:
//!   point-in-time training data over HTTP, streamed as CSV.
//! - `wafer-bench load [--rows N] [--entities N] [--json true]`: bulk load
//!   of feature rows over HTTP, one Parquet request (and JSON requests).
//! - `wafer-bench pit [--feature-rows N] [--entity-rows N] [--rounds N] [--feast-python PATH]`:
//!   the large point-in-time case (three groups, one with a composite key),
//!   against Feast's DuckDB offline store on the same files in the same run.
//!
//! `http`, `materialize`, `catalog`, `historical`, `load` and `pit` run on the embedded stores unless given
//! `--database-url postgres://...` and/or `--online redis://...`; every run
//! on those gets its own schema and key prefix and removes them at the end
//! (`backends.rs`).
//!
//! Build in release: `cargo run --release -p wafer-host --bin wafer-bench -- http`.

mod backends;
mod catalog;
mod historical;
mod http;
mod load;
mod materialize;
mod pit;
mod wasm;
mod write;

const USAGE: &str = "usage: wafer-bench http [--endpoint online|feast|enrich] [--connections N] [--seconds N] [--rate N] [--server-cpu true | --server URL [--server-pid PID]] [BACKENDS]
       wafer-bench wasm [--iterations N]
       wafer-bench materialize [--tickers N] [--days N] [BACKENDS]
       wafer-bench write --database-url postgres://... [--rows N] [--features N] [--iterations N]
       wafer-bench catalog [--hits N] [--misses N] [--settle-ms N] [BACKENDS]
       wafer-bench historical [--feature-rows N] [--entity-rows N] [--entities N] [--json true] [BACKENDS]
       wafer-bench load [--rows N] [--entities N] [--json true] [BACKENDS]
       wafer-bench pit [--feature-rows N] [--entity-rows N] [--rounds N] [--feast-python PATH] [BACKENDS]
BACKENDS: [--database-url postgres://...] [--online redis://...] (default: Delta tables with a SQLite registry + in-process)";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("http") => http::run(http::HttpArgs::parse(&args[1..])?).await,
        Some("wasm") => wasm::run(&args[1..]).await,
        Some("materialize") => materialize::run(&args[1..]).await,
        Some("write") => write::run(&args[1..]).await,
        Some("catalog") => catalog::run(&args[1..]).await,
        Some("historical") => historical::run(&args[1..]).await,
        Some("load") => load::run(&args[1..]).await,
        Some("pit") => pit::run(&args[1..]).await,
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}
