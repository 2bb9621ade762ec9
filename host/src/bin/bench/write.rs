//! `wafer-bench write --database-url postgres://... [--rows N] [--features N]
//! [--iterations N]`: batch write latency of the offline store on
//! PostgreSQL.
//!
//! Each iteration is one `OfflineStore::write_feature_rows` call of `--rows`
//! rows (one per entity, `--features` float64 values each) at a new event
//! time, so every call appends history as a materialization or a pushed
//! batch does (one transaction, durable on return). Rows carry a
//! provenance, as materialized ones do (pushed ones are a little cheaper).
//! The store runs in a schema of its own, dropped afterwards.

use crate::backends::Backends;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use wafer_host::model::{EntityKey, FeatureRow, Provenance, Timestamp, Value, ValueType};
use wafer_host::store::postgres::PostgresStore;
use wafer_host::store::{OfflineStore, TableDef};

/// Calls before measuring: connections opened, statements prepared.
const WARM_UP: usize = 10;

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let (mut rows, mut features, mut iterations) = (1000usize, 12usize, 500usize);
    let mut backends = Backends::parse_args(args, "--rows N --features N --iterations N", |flag, value| {
        match flag {
            "--rows" => rows = value.parse()?,
            "--features" => features = value.parse()?,
            "--iterations" => iterations = value.parse()?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    anyhow::ensure!(rows > 0 && iterations > 0, "--rows and --iterations must be at least 1");
    let Some(url) = backends.database_url.clone() else {
        anyhow::bail!("wafer-bench write needs --database-url postgres://...");
    };
    let schema = backends.schema();
    let store = PostgresStore::connect(&url, Some(&schema)).await?;
    let result = measure(&store, rows, features, iterations).await;
    store.close().await;
    backends.clean_up().await;
    result
}

async fn measure(store: &PostgresStore, rows: usize, features: usize, iterations: usize) -> anyhow::Result<()> {
    println!(
        "offline store write on PostgreSQL: {rows} rows x {features} features ({} values) per call, {iterations} calls",
        rows * features
    );
    let entities: Vec<EntityKey> = (0..rows).map(|i| EntityKey::from_parts(&[format!("T{i:05}")])).collect();
    let names: Vec<String> = (0..features).map(|f| format!("f{f:02}")).collect();
    let provenance = Provenance { transform: "bench".into(), version: "1.0.0".into(), sha256: "0f".repeat(32) };
    let table = TableDef {
        name: "bench".into(),
        join_keys: vec!["ticker".into()],
        columns: names.iter().map(|n| (n.clone(), ValueType::Float64)).collect(),
    };
    let start = Timestamp::from_secs(1_700_000_000);
    let batch = |n: usize| -> Vec<FeatureRow> {
        let event_ts = start.plus_secs(n as i64 * 86_400);
        entities
            .iter()
            .enumerate()
            .map(|(e, entity)| FeatureRow {
                entity: entity.clone(),
                event_ts,
                created: event_ts,
                created_given: false,
                values: names
                    .iter()
                    .enumerate()
                    .map(|(f, name)| (name.clone(), Value::Float64((n * rows + e) as f64 + f as f64 * 0.5)))
                    .collect::<BTreeMap<_, _>>(),
                provenance: Some(provenance.clone()),
            })
            .collect()
    };
    for n in 0..WARM_UP {
        store.write_feature_rows(&table, &batch(n)).await?;
    }
    let mut latencies = Vec::with_capacity(iterations);
    let total = Instant::now();
    for n in WARM_UP..WARM_UP + iterations {
        let rows = batch(n);
        let t = Instant::now();
        let written = store.write_feature_rows(&table, &rows).await?;
        latencies.push(t.elapsed());
        anyhow::ensure!(written as usize == rows.len(), "wrote {written} of {} rows", rows.len());
    }
    let busy: Duration = latencies.iter().sum();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "write_feature_rows: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  mean {:.2} ms  ({:.0} rows/s while writing, {:.1} s in all)",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*latencies.last().expect("at least one call")),
        ms(busy) / latencies.len() as f64,
        (rows * latencies.len()) as f64 / busy.as_secs_f64(),
        total.elapsed().as_secs_f64()
    );
    Ok(())
}
