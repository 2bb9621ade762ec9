//! `wafer-bench pit`: the large point-in-time case, side by side with
//! Feast's DuckDB offline store on the same files in the same run.
//!
//! The data: `--feature-rows` rows (default 994,820) in three push groups
//! over 1,000 tickers, written as Parquet files that both stores read:
//! - `daily` (ticker; close, volume, ret_1d; max age 3 days): one row per
//!   ticker and day, one in 20 corrected an hour later (same event time, a
//!   later created time, other values);
//! - `venue` (ticker and venue, a composite key; spread_bps, depth; max age
//!   5 days): one row per ticker, venue and day;
//! - `fundamentals` (ticker; pe_ratio, eps; no max age): one row per ticker
//!   and week.
//!
//! `--entity-rows` (default 100,000) entity rows (`row_id`, `ticker`,
//! `venue`, `event_timestamp`): random tickers (1 % unknown) and venues at
//! random times across the history and 5 days either side, one in ten on a
//! midnight, where the max-age bounds fall exactly on a row.
//!
//! wafer loads each file in one Parquet `POST /v1/features/write` and then
//! answers the entity rows as a CSV body with a CSV answer over HTTP: on
//! the server that loaded the data (warm), and on a server freshly
//! restarted over the same data dir (cold: the first read loads the
//! tables). With `--feast-python PATH` (a Python with `feast[duckdb]`), the
//! same entity CSV goes through `feast_pit.py` beside this file: CSV read,
//! `get_historical_features(...).to_df()`, CSV written, timed in the
//! script, once cold and once warm. The two answers are then compared
//! cell by cell by `row_id`, as numbers (both print shortest round-trip
//! floats; empty is null).

use crate::backends::Backends;
use crate::historical::AnonSampler;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use wafer_host::model::Timestamp;

const DAY: i64 = 86_400;
/// 2020-01-01T00:00:00Z.
const START: i64 = 1_577_836_800;
const TICKERS: usize = 1_000;
const VENUES: [&str; 3] = ["XNYS", "XNAS", "ARCX"];

/// One of the three groups: its key columns, features, max age and share
/// of the rows.
struct Group {
    name: &'static str,
    entity: &'static str,
    keys: &'static [&'static str],
    features: &'static [&'static str],
    max_age_days: Option<i64>,
    /// Days between a series' rows.
    every_days: i64,
    /// Per mille of `--feature-rows`.
    share: usize,
}

const GROUPS: [Group; 3] = [
    Group {
        name: "daily",
        entity: "ticker",
        keys: &["ticker"],
        features: &["close", "volume", "ret_1d"],
        max_age_days: Some(3),
        every_days: 1,
        share: 500,
    },
    Group {
        name: "venue",
        entity: "listing",
        keys: &["ticker", "venue"],
        features: &["spread_bps", "depth"],
        max_age_days: Some(5),
        every_days: 1,
        share: 450,
    },
    Group {
        name: "fundamentals",
        entity: "ticker",
        keys: &["ticker"],
        features: &["pe_ratio", "eps"],
        max_age_days: None,
        every_days: 7,
        share: 50,
    },
];

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let (mut feature_rows, mut entity_rows) = (994_820usize, 100_000usize);
    let mut feast_python: Option<PathBuf> = None;
    let mut rounds = 2usize;
    let usage = "--feature-rows N --entity-rows N --feast-python PATH --rounds N";
    let mut backends = Backends::parse_args(args, usage, |flag, value| {
        match flag {
            "--feature-rows" => feature_rows = value.parse()?,
            "--entity-rows" => entity_rows = value.parse()?,
            "--feast-python" => feast_python = Some(PathBuf::from(value)),
            "--rounds" => rounds = value.parse()?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    anyhow::ensure!(feature_rows >= 1_000 && entity_rows > 0 && rounds > 0, "nothing to measure");
    let dir = std::env::temp_dir().join(format!("wafer-bench-pit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("files"))?;
    println!("point-in-time bench on {}", backends.describe());
    let result = measure(&dir, &mut backends, feature_rows, entity_rows, rounds, feast_python.as_deref()).await;
    backends.clean_up().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(
    dir: &Path,
    backends: &mut Backends,
    feature_rows: usize,
    entity_rows: usize,
    rounds: usize,
    feast_python: Option<&Path>,
) -> anyhow::Result<()> {
    let files = dir.join("files");
    let mut rng = SmallRng::seed_from_u64(11);
    let t = Instant::now();
    let mut days = 0i64;
    let mut written = 0usize;
    for (g, group) in GROUPS.iter().enumerate() {
        let rows = if g + 1 == GROUPS.len() { feature_rows - written } else { feature_rows * group.share / 1000 };
        let batch = group_rows(group, rows, &mut rng)?;
        written += batch.num_rows();
        if group.every_days == 1 {
            days = days.max((rows / series(group)) as i64 + 1);
        }
        write_parquet(&files.join(format!("{}.parquet", group.name)), &batch)?;
    }
    let entity_csv = entity_rows_csv(entity_rows, days, &mut rng);
    std::fs::write(files.join("entity_rows.csv"), &entity_csv)?;
    println!(
        "{written} feature rows in {} groups ({} features), {entity_rows} entity rows; files built in {:.1} s (not timed)",
        GROUPS.len(),
        refs().len(),
        t.elapsed().as_secs_f64()
    );

    let data_dir = dir.join("data");
    let mut config = wafer_host::config::Config::new(&data_dir);
    backends.configure(&mut config);
    config.max_body_bytes = 512 << 20;
    let server = Server::start(config.clone()).await?;
    define(&server.app).await?;
    let t = Instant::now();
    for group in &GROUPS {
        let body = std::fs::read(files.join(format!("{}.parquet", group.name)))?;
        let response = server
            .client
            .post(format!("{}/v1/features/write?feature_group={}", server.url, group.name))
            .header("content-type", "application/vnd.apache.parquet")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "loading {}: {status}: {}", group.name, response.text().await?);
    }
    let secs = t.elapsed().as_secs_f64();
    println!("wafer loaded the files over HTTP in {secs:.2} s ({:.0} rows/s)", written as f64 / secs);

    let mut answer = Vec::new();
    for round in 0..rounds {
        answer = server.historical(&entity_csv, &format!("warm {}", round + 1), entity_rows).await?;
    }
    server.stop().await;
    let server = Server::start(config).await?;
    let cold = server.historical(&entity_csv, "cold (restarted server)", entity_rows).await?;
    server.stop().await;
    anyhow::ensure!(cold == answer, "the restarted server answered differently from the warm one");
    std::fs::write(files.join("wafer.csv"), &answer)?;

    let Some(python) = feast_python else {
        println!("(no --feast-python: Feast's DuckDB store not measured)");
        return Ok(());
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin/bench/feast_pit.py");
    let spec = json!({
        "dir": files,
        "rounds": rounds,
        "groups": GROUPS.iter().map(|g| json!({
            "name": g.name, "keys": g.keys, "features": g.features,
            "max_age_days": g.max_age_days,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(files.join("spec.json"), serde_json::to_vec(&spec)?)?;
    let output = std::process::Command::new(python).arg(&script).arg(files.join("spec.json")).output()?;
    anyhow::ensure!(
        output.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    print!("{}", String::from_utf8_lossy(&output.stdout));
    let feast = std::fs::read(files.join("feast.csv"))?;
    let (cells, differ) = compare(&answer, &feast)?;
    println!("wafer and Feast compared by row_id: {cells} feature cells, {differ} differ");
    Ok(())
}

/// How many series (entities) `group` has.
fn series(group: &Group) -> usize {
    if group.keys.len() == 2 { TICKERS * VENUES.len() } else { TICKERS }
}

/// `rows` rows of `group`: series-major over time, so every series covers
/// the same span; in `daily` one row in 20 is followed by its correction.
fn group_rows(group: &Group, rows: usize, rng: &mut SmallRng) -> anyhow::Result<RecordBatch> {
    let n_series = series(group);
    let (mut tickers, mut venues) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    let (mut events, mut created) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    let mut values: Vec<Vec<f64>> = vec![Vec::with_capacity(rows); group.features.len()];
    let mut n = 0usize;
    while tickers.len() < rows {
        let (s, step) = (n % n_series, (n / n_series) as i64);
        let event = (START + step * group.every_days * DAY) * 1_000_000;
        let copies = if group.name == "daily" && n.is_multiple_of(20) { 2 } else { 1 };
        for copy in 0..copies {
            if tickers.len() == rows {
                break;
            }
            tickers.push(format!("T{:04}", s % TICKERS));
            venues.push(VENUES[s / TICKERS % VENUES.len()]);
            events.push(event);
            created.push(event + copy * 3_600_000_000);
            for v in &mut values {
                v.push((rng.gen_range(0.0..1000.0f64) * 1e4).round() / 1e4);
            }
        }
        n += 1;
    }
    let mut columns: Vec<(&str, ArrayRef)> = vec![("ticker", Arc::new(StringArray::from(tickers)))];
    if group.keys.len() == 2 {
        columns.push(("venue", Arc::new(StringArray::from(venues))));
    }
    columns.push(("event_timestamp", Arc::new(TimestampMicrosecondArray::from(events).with_timezone("UTC"))));
    columns.push(("created_timestamp", Arc::new(TimestampMicrosecondArray::from(created).with_timezone("UTC"))));
    for (name, v) in group.features.iter().zip(values) {
        columns.push((name, Arc::new(Float64Array::from(v))));
    }
    Ok(RecordBatch::try_from_iter(columns)?)
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> anyhow::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
    writer.write(batch)?;
    writer.close()?;
    Ok(())
}

fn entity_rows_csv(rows: usize, days: i64, rng: &mut SmallRng) -> String {
    let mut csv = String::with_capacity(rows * 48);
    csv.push_str("row_id,ticker,venue,event_timestamp\n");
    for i in 0..rows {
        let ticker = rng.gen_range(0..TICKERS + TICKERS / 100);
        let venue = VENUES[rng.gen_range(0..VENUES.len())];
        let mut at = START + rng.gen_range(-5 * DAY..(days + 5) * DAY);
        if i % 10 == 0 {
            at -= at.rem_euclid(DAY);
        }
        csv.push_str(&format!("{i},T{ticker:04},{venue},{}\n", Timestamp::from_secs(at).to_rfc3339()));
    }
    csv
}

/// The answer's feature columns, as wafer names them.
fn refs() -> Vec<String> {
    GROUPS.iter().flat_map(|g| g.features.iter().map(move |f| format!("{}:{f}", g.name))).collect()
}

async fn define(app: &wafer_host::App) -> anyhow::Result<()> {
    let w = &app.wafer;
    w.put_entity("ticker", serde_json::from_value(json!({"join_keys": ["ticker"]}))?).await?;
    w.put_entity("listing", serde_json::from_value(json!({"join_keys": ["ticker", "venue"]}))?).await?;
    for group in &GROUPS {
        let features: Vec<_> = group.features.iter().map(|f| json!({"name": f, "type": "float64"})).collect();
        let mut freshness = json!({"expected_interval_seconds": group.every_days * DAY});
        if let Some(days) = group.max_age_days {
            freshness["max_age_seconds"] = json!(days * DAY);
        }
        let spec = json!({"entity": group.entity, "features": features, "producer": {"kind": "push"},
                          "freshness": freshness});
        w.put_feature_group(group.name, serde_json::from_value(spec)?).await?;
    }
    Ok(())
}

/// A wafer server on a spare loopback port.
struct Server {
    app: wafer_host::App,
    url: String,
    client: reqwest::Client,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(config: wafer_host::config::Config) -> anyhow::Result<Server> {
        let app = wafer_host::App::open(config, Arc::new(wafer_host::clock::SystemClock)).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let router = app.router();
        let task = tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(Server { app, url, client: reqwest::Client::new(), task })
    }

    async fn stop(self) {
        self.task.abort();
        self.app.wafer.shutdown().await;
    }

    /// Posts the entity rows as CSV, reads the whole CSV answer, and prints
    /// the time from the first byte sent to the last received.
    async fn historical(&self, csv: &str, label: &str, entity_rows: usize) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}/v1/features/historical?features={}", self.url, refs().join(","));
        let sampler = AnonSampler::start();
        let t = Instant::now();
        let mut response = self
            .client
            .post(&url)
            .header("content-type", "text/csv")
            .header("accept", "text/csv")
            .body(csv.to_string())
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "answered {}: {}", response.status(), response.text().await?);
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            answer.extend_from_slice(&chunk);
        }
        let secs = t.elapsed().as_secs_f64();
        let growth = sampler.stop();
        println!(
            "wafer {label}: {entity_rows} entity rows x {} features, CSV in and out over HTTP, in {secs:.3} s \
             ({:.0} rows/s); anonymous memory peaked {growth} MiB above its start",
            refs().len(),
            entity_rows as f64 / secs
        );
        Ok(answer)
    }
}

/// Compares two CSV answers by `row_id`: every feature column (wafer's
/// `group:feature`, Feast's `group__feature`), as numbers, empty = null.
/// Returns (cells compared, cells that differ); a row missing on either
/// side is an error.
fn compare(wafer: &[u8], feast: &[u8]) -> anyhow::Result<(usize, usize)> {
    type Rows = HashMap<String, Vec<Option<f64>>>;
    let read = |bytes: &[u8], name: &dyn Fn(&str) -> String| -> anyhow::Result<Rows> {
        let mut reader = csv::Reader::from_reader(bytes);
        let headers = reader.headers()?.clone();
        let id = headers.iter().position(|h| h == "row_id").ok_or_else(|| anyhow::anyhow!("no row_id column"))?;
        let columns = refs()
            .iter()
            .map(|r| {
                let want = name(r);
                headers.iter().position(|h| h == want).ok_or_else(|| anyhow::anyhow!("no column {want}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut rows = Rows::new();
        for record in reader.records() {
            let record = record?;
            let cells = columns
                .iter()
                .map(|&c| {
                    let text = &record[c];
                    if text.is_empty() { Ok(None) } else { text.parse::<f64>().map(Some) }
                })
                .collect::<Result<Vec<_>, _>>()?;
            anyhow::ensure!(rows.insert(record[id].to_string(), cells).is_none(), "row_id {} twice", &record[id]);
        }
        Ok(rows)
    };
    let ours = read(wafer, &|r| r.to_string())?;
    let theirs = read(feast, &|r| r.replace(':', "__"))?;
    anyhow::ensure!(ours.len() == theirs.len(), "wafer answered {} rows, Feast {}", ours.len(), theirs.len());
    let (mut cells, mut differ) = (0, 0);
    for (id, mine) in &ours {
        let other = theirs.get(id).ok_or_else(|| anyhow::anyhow!("Feast has no row_id {id}"))?;
        for (a, b) in mine.iter().zip(other) {
            cells += 1;
            if a != b {
                if differ < 5 {
                    println!("  row_id {id}: wafer {a:?}, Feast {b:?}");
                }
                differ += 1;
            }
        }
    }
    Ok((cells, differ))
}
