//! [`TestApp`]: a real wafer server on an ephemeral port with its own temp
//! data dir and a [`ManualClock`], driven over HTTP like any client would.
//!
//! Every test gets its own app, so tests run in parallel without sharing
//! state. Time only moves when a test moves `app.clock`, so freshness checks
//! never sleep. (Redis expires keys by its own wall clock, so on
//! [`Backend::Production`] moving the clock ages values but never evicts
//! them.)

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wafer_host::App;
use wafer_host::clock::ManualClock;
use wafer_host::config::Config;
use wafer_host::model::Timestamp;

use crate::backend::{Backend, Isolation};

/// A running server plus what a test needs to talk to it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// The server's clock; move it to age served values.
    pub clock: ManualClock,
    /// The pair this server runs on.
    pub backend: Backend,
    config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
    /// The schema and key prefix of a production app, removed on drop.
    isolation: Option<Isolation>,
    // Last, so the directory outlives the server that uses it.
    data_dir: TempDir,
}

impl TestApp {
    /// An embedded server with the default configuration.
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    /// An embedded server whose configuration `configure` may adjust
    /// (limits, body size...) before it starts. The data dir is always a
    /// fresh temp dir.
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        TestApp::spawn_on(Backend::Embedded, configure).await
    }

    /// A server on `backend`, then as [`TestApp::spawn_with`]. On
    /// [`Backend::Production`] it gets its own PostgreSQL schema and Redis
    /// key prefix, removed when the app is dropped.
    ///
    /// # Panics
    /// On `Production` without `WAFER_TEST_DATABASE_URL` and
    /// `WAFER_TEST_REDIS_URL`; [`crate::backend_tests!`] checks first.
    pub async fn spawn_on(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
        let data_dir = tempfile::Builder::new().prefix("wafer-test-").tempdir().expect("temp data dir");
        let mut config = Config::new(data_dir.path());
        let isolation = (backend == Backend::Production).then(Isolation::new);
        if let Some(isolation) = &isolation {
            isolation.configure(&mut config);
        }
        configure(&mut config);
        config.data_dir = data_dir.path().to_path_buf();
        let clock = ManualClock::new(Timestamp::from_datetime(chrono::Utc::now()));
        // Built before the server starts, so a failed start still cleans up.
        let mut app = TestApp {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            client: client(),
            clock,
            backend,
            config,
            shutdown: None,
            task: None,
            isolation,
            data_dir,
        };
        let (addr, shutdown, task) = start(app.config.clone(), app.clock.clone()).await;
        (app.addr, app.shutdown, app.task) = (addr, Some(shutdown), Some(task));
        app
    }

    /// The online store's keys for this app (sorted), or `None` on the
    /// embedded pair, whose in-process store is not visible from outside.
    pub async fn online_keys(&self) -> Option<Vec<String>> {
        let isolation = self.isolation.as_ref()?;
        Some(isolation.keys().await.expect("listing the app's Redis keys"))
    }

    /// Shuts the server down gracefully, waits for it to finish and opens
    /// the same stores again (data dir, or schema and key prefix) on a new
    /// port with the same clock.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (addr, shutdown, task) = start(self.config.clone(), self.clock.clone()).await;
        self.addr = addr;
        self.shutdown = Some(shutdown);
        self.task = Some(task);
        // Pooled connections point at the old server.
        self.client = client();
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(std::time::Duration::from_secs(30), task)
                .await
                .expect("server did not shut down within 30 s");
            result.expect("server task panicked").expect("server returned an error");
        }
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        answer(self.client.get(self.url(path)).send().await).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        answer(self.client.delete(self.url(path)).send().await).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        answer(self.client.post(self.url(path)).json(body).send().await).await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        answer(self.client.put(self.url(path)).json(body).send().await).await
    }

    /// PUT raw bytes as `application/wasm` (component uploads).
    pub async fn put_bytes(&self, path: &str, bytes: &[u8]) -> (StatusCode, Value) {
        let req = self.client.put(self.url(path)).header("content-type", "application/wasm").body(bytes.to_vec());
        answer(req.send().await).await
    }

    /// POST a body with an explicit content type (malformed JSON, CSV...).
    pub async fn post_raw(&self, path: &str, content_type: &str, body: impl Into<String>) -> (StatusCode, Value) {
        let req = self.client.post(self.url(path)).header("content-type", content_type).body(body.into());
        answer(req.send().await).await
    }

    /// A POST of raw bytes (Parquet, Arrow IPC) as `content_type`.
    pub async fn post_bytes(&self, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let req = self.client.post(self.url(path)).header("content-type", content_type).body(body);
        answer(req.send().await).await
    }

    pub async fn post_csv(&self, path: &str, csv: &str) -> (StatusCode, Value) {
        self.post_raw(path, "text/csv", csv).await
    }

    /// Publishes `bytes` as `name@version` and activates it.
    pub async fn publish_and_activate(&self, name: &str, version: &str, bytes: &[u8]) -> Value {
        let (status, body) = self.put_bytes(&format!("/v1/transforms/{name}/versions/{version}"), bytes).await;
        assert!(status.is_success(), "publishing {name}@{version}: {status} {body}");
        let (status, activated) =
            self.post_json(&format!("/v1/transforms/{name}/activate"), &json!({"version": version})).await;
        assert_eq!(status, StatusCode::OK, "activating {name}@{version}: {activated}");
        body
    }

    /// A dry run of the evil guest (published as `evil`) in `mode` over
    /// [`crate::guests::evil_input`].
    pub async fn invoke_evil(&self, mode: &str) -> (StatusCode, Value) {
        self.post_json("/v1/transforms/evil/invoke", &crate::guests::evil_input(mode)).await
    }

    /// The bundled `indicators` transform as `indicators@1.0.0`, active.
    pub async fn publish_indicators(&self) -> Value {
        self.publish_and_activate("indicators", "1.0.0", wafer_host::bundled::INDICATORS).await
    }

    /// Entity `ticker`, source `prices` (OHLCV) and group `technical`.
    pub async fn register_technical(&self) {
        let (status, body) = self.put_json("/v1/entities/ticker", &json!({"join_keys": ["ticker"]})).await;
        assert_eq!(status, StatusCode::OK, "entity: {body}");
        let (status, body) = self.put_json("/v1/sources/prices", &prices_source_json()).await;
        assert_eq!(status, StatusCode::OK, "source: {body}");
        let group = wafer_host::demo::technical_group_json();
        let (status, body) = self.put_json("/v1/feature-groups/technical", &group).await;
        assert_eq!(status, StatusCode::OK, "group: {body}");
    }

    /// Ingests `days` daily bars per ticker ending at the clock's current
    /// second, and returns them so tests can compute expectations.
    pub async fn ingest_prices(&self, tickers: &[&str], days: usize) -> Prices {
        let end = whole_second(wafer_host::clock::Clock::now(&self.clock));
        let mut prices = Prices { end, bars: BTreeMap::new() };
        for ticker in tickers {
            let csv = wafer_host::demo::prices_csv(ticker, days, end);
            let (status, body) = self.post_csv("/v1/sources/prices/rows", &csv).await;
            assert_eq!(status, StatusCode::OK, "ingesting {ticker}: {body}");
            assert_eq!(body["written"], json!(days), "ingesting {ticker}: {body}");
            prices.bars.insert(ticker.to_string(), Bar::parse_csv(&csv));
        }
        prices
    }

    /// Publish, register and ingest: everything the `technical` group needs
    /// before materialization.
    pub async fn setup_technical(&self, tickers: &[&str], days: usize) -> Prices {
        self.publish_indicators().await;
        self.register_technical().await;
        self.ingest_prices(tickers, days).await
    }

    /// Materializes `group` and waits for the job; returns the finished job.
    pub async fn materialize_and_wait(&self, group: &str) -> Value {
        let (status, job) = self.post_json("/v1/materialize?wait=true", &json!({"feature_group": group})).await;
        assert_eq!(status, StatusCode::OK, "materializing {group}: {job}");
        job
    }

    /// Online read of whole groups for `tickers` with the given fallback.
    pub async fn read_groups(&self, tickers: &[&str], groups: &[&str], fallback: &str) -> (StatusCode, Value) {
        let entities: Vec<Value> = tickers.iter().map(|t| json!({"ticker": t})).collect();
        let body = json!({"entities": entities, "feature_groups": groups, "fallback": fallback});
        self.post_json("/v1/features/online", &body).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // The runtime may be shutting down with the test; do not wait.
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(isolation) = &self.isolation {
            isolation.clean_up();
        }
    }
}

/// The `prices` source of the seed catalog.
pub fn prices_source_json() -> Value {
    json!({
        "entity": "ticker", "timestamp_field": "ts",
        "fields": [
            {"name": "open", "type": "float64"}, {"name": "high", "type": "float64"},
            {"name": "low", "type": "float64"}, {"name": "close", "type": "float64"},
            {"name": "volume", "type": "int64"}
        ]
    })
}

/// What a test ingested, per ticker, oldest bar first.
pub struct Prices {
    /// The timestamp of every ticker's last bar.
    pub end: Timestamp,
    pub bars: BTreeMap<String, Vec<Bar>>,
}

impl Prices {
    pub fn closes(&self, ticker: &str) -> Vec<f64> {
        self.bars[ticker].iter().map(|b| b.close).collect()
    }
}

/// One ingested bar, read back from the CSV that was sent.
#[derive(Clone, Debug)]
pub struct Bar {
    pub ts: Timestamp,
    pub close: f64,
}

impl Bar {
    /// Reads `ts` and `close` from a CSV with a header row.
    pub fn parse_csv(csv: &str) -> Vec<Bar> {
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().expect("header").split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name}"));
        let (ts, close) = (col("ts"), col("close"));
        lines
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let cells: Vec<&str> = l.split(',').collect();
                Bar {
                    ts: Timestamp::parse(cells[ts]).expect("bar timestamp"),
                    close: cells[close].parse().expect("bar close"),
                }
            })
            .collect()
    }
}

/// `t` without its sub-second part.
pub fn whole_second(t: Timestamp) -> Timestamp {
    Timestamp::from_secs(t.micros().div_euclid(Timestamp::MICROS_PER_SECOND))
}

/// Asserts `actual` is within `rel` relative tolerance of `expected`.
#[track_caller]
pub fn assert_close(actual: f64, expected: f64, rel: f64, what: &str) {
    let scale = expected.abs().max(f64::MIN_POSITIVE);
    assert!(
        ((actual - expected) / scale).abs() <= rel,
        "{what}: got {actual}, expected {expected} (relative error {:e})",
        ((actual - expected) / scale).abs()
    );
}

async fn start(
    config: Config,
    clock: ManualClock,
) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<Result<(), String>>) {
    let app = App::open(config, Arc::new(clock)).await.expect("opening the app");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = rx.await;
        };
        wafer_host::server::serve(app, listener, shutdown).await.map_err(|e| format!("{e:#}"))
    });
    (addr, tx, task)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build().expect("HTTP client")
}

/// Status and JSON body (`Value::Null` for an empty or non-JSON body).
async fn answer(resp: reqwest::Result<reqwest::Response>) -> (StatusCode, Value) {
    let resp = resp.expect("request failed to complete");
    let status = resp.status();
    let bytes = resp.bytes().await.expect("reading the response body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body)
}
