//! `wafer-bench historical`: point-in-time retrieval of training data over
//! HTTP, on the embedded backend or (with `--database-url`) PostgreSQL.
//!
//! Loads `--feature-rows` rows (default 1,000,000) of a 12-feature push
//! group, spread over `--entities` entities (default 1,000) at daily event
//! times with one late correction in every 20, straight into the offline
//! store. Then asks for `--entity-rows` (default 100,000) random entity
//! rows in one CSV request, answered as streamed CSV (and, with `--json`,
//! once more as JSON), and reports seconds, rows/s and how far the
//! process's anonymous memory (heap, not the mapped database file) rose
//! during the request.
//!
//! `--scan true` also times the other join strategy's unavoidable part: one
//! ordered scan of the group's whole history (what a sort-merge in the host
//! would read before merging), straight through sqlx.

use crate::backends::Backends;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use wafer_host::model::{EntityKey, FeatureRow, Timestamp, Value};

const FEATURES: usize = 12;
const DAY: i64 = 86_400;
/// 2020-01-01T00:00:00Z.
const START: i64 = 1_577_836_800;

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let (mut feature_rows, mut entity_rows, mut entities) = (1_000_000usize, 100_000usize, 1_000usize);
    let (mut json, mut scan) = (false, false);
    let usage = "--feature-rows N --entity-rows N --entities N --json true --scan true";
    let mut backends = Backends::parse_args(args, usage, |flag, value| {
        match flag {
            "--feature-rows" => feature_rows = value.parse()?,
            "--entity-rows" => entity_rows = value.parse()?,
            "--entities" => entities = value.parse()?,
            "--json" => json = value.parse()?,
            "--scan" => scan = value.parse()?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let dir = std::env::temp_dir().join(format!("wafer-bench-hist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = wafer_host::config::Config::new(&dir);
    backends.configure(&mut config);
    config.max_body_bytes = 256 << 20;
    println!("historical bench on {}", backends.describe());
    let scan_db = match (scan, &backends.database_url) {
        (false, _) => None,
        (true, Some(url)) => Some(ScanDb::Postgres(url.clone(), backends.schema())),
        (true, None) => anyhow::bail!("--scan true measures the PostgreSQL store; give --database-url postgres://..."),
    };
    let result = measure(config, feature_rows, entity_rows, entities, json).await;
    let result = match (result, scan_db) {
        (Ok(()), Some(db)) => full_scan(db).await,
        (result, _) => result,
    };
    backends.clean_up().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(
    config: wafer_host::config::Config,
    feature_rows: usize,
    entity_rows: usize,
    entities: usize,
    json: bool,
) -> anyhow::Result<()> {
    let app = wafer_host::App::open(config, Arc::new(wafer_host::clock::SystemClock)).await?;
    let w = app.wafer.clone();
    w.put_entity("ticker", serde_json::from_value(json!({"join_keys": ["ticker"]}))?).await?;
    let features: Vec<_> = (0..FEATURES).map(|i| json!({"name": format!("f{i}"), "type": "float64"})).collect();
    let group = json!({
        "entity": "ticker", "features": features, "producer": {"kind": "push"},
        "freshness": {"expected_interval_seconds": DAY, "max_age_seconds": 3 * DAY}
    });
    w.put_feature_group("bench", serde_json::from_value(group)?).await?;

    let table = w.offline_table("bench")?;
    // Load: entity-major, one row per day, every 20th row corrected later.
    let days = feature_rows.div_ceil(entities);
    let mut rng = SmallRng::seed_from_u64(7);
    let t = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    let mut loaded = 0u64;
    for n in 0..feature_rows {
        let (e, day) = (n % entities, n / entities);
        let event = Timestamp::from_secs(START + day as i64 * DAY);
        let corrected = n % 20 == 0;
        let values: BTreeMap<String, Value> =
            (0..FEATURES).map(|i| (format!("f{i}"), Value::Float64(rng.gen_range(0.0..1000.0)))).collect();
        // A push group: no transform computed these rows.
        let entity = EntityKey(format!("T{e:05}"));
        batch.push(FeatureRow {
            entity,
            event_ts: event,
            created: event,
            created_given: false,
            values,
            provenance: None,
        });
        if corrected {
            let mut again = batch.last().expect("just pushed").clone();
            again.created = event.plus_secs(3600);
            batch.push(again);
        }
        if batch.len() >= 10_000 {
            loaded += w.offline().write_feature_rows(&table, &batch).await?;
            batch.clear();
        }
    }
    loaded += w.offline().write_feature_rows(&table, &batch).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "loaded {loaded} feature rows ({entities} entities x {days} days, 1 in 20 corrected) in {secs:.1} s ({:.0} rows/s)",
        loaded as f64 / secs
    );

    // Entity rows: random entities at random times across the history,
    // with some before it starts and some entities unknown.
    let mut csv = String::with_capacity(entity_rows * 40);
    csv.push_str("ticker,event_timestamp,label\n");
    for i in 0..entity_rows {
        let e = rng.gen_range(0..entities + entities / 100 + 1);
        let at = START + rng.gen_range(-5 * DAY..(days as i64 + 5) * DAY);
        csv.push_str(&format!("T{e:05},{},{}\n", Timestamp::from_secs(at).to_rfc3339(), i % 2));
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = app.router();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::new();
    let refs: Vec<String> = (0..FEATURES).map(|i| format!("bench:f{i}")).collect();
    let url = format!("http://{addr}/v1/features/historical?features={}", refs.join(","));

    for round in 0..2 {
        let sampler = AnonSampler::start();
        let t = Instant::now();
        let mut response = client
            .post(&url)
            .header("content-type", "text/csv")
            .header("accept", "text/csv")
            .body(csv.clone())
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "answered {}: {}", response.status(), response.text().await?);
        let first_byte = t.elapsed().as_secs_f64();
        let (mut bytes, mut lines, mut empty_cells) = (0usize, 0usize, 0usize);
        while let Some(chunk) = response.chunk().await? {
            bytes += chunk.len();
            lines += chunk.iter().filter(|&&b| b == b'\n').count();
            empty_cells += chunk.windows(2).filter(|w| w == b",," || w == b",\n").count();
        }
        let secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(lines == entity_rows + 1, "expected {} lines, got {lines}", entity_rows + 1);
        let growth = sampler.stop();
        println!(
            "{} CSV: {entity_rows} entity rows x {FEATURES} features in {secs:.2} s ({:.0} rows/s); \
             first byte after {:.0} ms; {:.1} MB out; {:.1} % null cells; anonymous memory peaked {} MiB above its start",
            if round == 0 { "cold" } else { "warm" },
            entity_rows as f64 / secs,
            first_byte * 1000.0,
            bytes as f64 / 1e6,
            100.0 * empty_cells as f64 / (entity_rows * FEATURES) as f64,
            growth,
        );
    }
    if json {
        let rows: Vec<serde_json::Value> = csv
            .lines()
            .skip(1)
            .map(|l| {
                let mut cells = l.split(',');
                json!({"ticker": cells.next(), "event_timestamp": cells.next(), "label": cells.next()})
            })
            .collect();
        let body = serde_json::to_vec(&json!({"entity_rows": rows, "features": refs}))?;
        let t = Instant::now();
        let mut response = client
            .post(format!("http://{addr}/v1/features/historical"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "answered {}", response.status());
        let mut bytes = 0;
        while let Some(chunk) = response.chunk().await? {
            bytes += chunk.len();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "JSON: {entity_rows} entity rows in {secs:.2} s ({:.0} rows/s); {:.1} MB out",
            entity_rows as f64 / secs,
            bytes as f64 / 1e6
        );
    }
    server.abort();
    app.wafer.shutdown().await;
    Ok(())
}

enum ScanDb {
    /// URL and schema.
    Postgres(String, String),
}

/// Reads the group's whole history in primary-key order, as a host-side
/// sort-merge join would have to, and reports how long that alone takes.
async fn full_scan(db: ScanDb) -> anyhow::Result<()> {
    use futures_util::TryStreamExt;
    use sqlx::{Connection, Executor};
    const SCAN: &str = "SELECT entity_key, event_ts, created_ts, values_json FROM feature_rows \
                        WHERE group_name = 'bench' ORDER BY entity_key, event_ts, created_ts";
    // Every row is decoded, as a merge would need it.
    macro_rules! scan {
        ($conn:expr) => {{
            let mut stream = sqlx::query_as::<_, (String, i64, i64, String)>(SCAN).fetch(&mut $conn);
            let (mut rows, mut bytes) = (0u64, 0usize);
            while let Some((key, _event, _created, values)) = stream.try_next().await? {
                bytes += key.len() + values.len() + 16;
                rows += 1;
            }
            (rows, bytes)
        }};
    }
    let t = Instant::now();
    let (rows, bytes) = match db {
        ScanDb::Postgres(url, schema) => {
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            conn.execute(format!("SET search_path TO \"{schema}\"").as_str()).await?;
            scan!(conn)
        }
    };
    let secs = t.elapsed().as_secs_f64();
    println!(
        "ordered full scan of the history (a sort-merge's input): {rows} rows, {:.0} MB in {secs:.2} s",
        bytes as f64 / 1e6
    );
    Ok(())
}

/// Samples the process's anonymous resident memory (heap, stacks: not
/// the mapped database file) every 5 ms while a request runs.
pub struct AnonSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Option<u64>>,
}

impl AnonSampler {
    pub fn start() -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = rss_anon_kib()?;
            let mut peak = start;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_anon_kib()?);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Some(peak.saturating_sub(start) / 1024)
        });
        AnonSampler { stop, thread }
    }

    /// MiB of the peak above the start; "?" off Linux.
    pub fn stop(self) -> String {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().ok().flatten().map_or("?".into(), |m| m.to_string())
    }
}

/// `RssAnon` from /proc/self/status, in KiB.
fn rss_anon_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
