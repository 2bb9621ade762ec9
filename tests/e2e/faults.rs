//! Backend faults, each on a private server this file starts on a spare
//! port (never the shared ones):
//! - Redis down: online reads keep answering from the offline store,
//!   `/readyz` names it, and the host recovers by itself when it is back.
//! - PostgreSQL down (crashed with `pg_ctl stop -m immediate`): online reads
//!   keep answering from Redis, writes fail promptly with 503, `/readyz`
//!   names the database, and once it is back writes work again without a
//!   restart and every acknowledged write is still there.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wafer_tests::TestApp;
use wafer_tests::pg::PrivatePostgres;
use wafer_tests::redis::PrivateRedis;
use wafer_tests::spare_port;

fn sources(body: &Value) -> Vec<String> {
    body["results"][0]["features"]
        .as_object()
        .expect("features")
        .values()
        .map(|v| v["source"].as_str().unwrap_or("none").to_string())
        .collect()
}

fn values(body: &Value) -> Vec<Value> {
    body["results"][0]["features"].as_object().expect("features").values().map(|v| v["value"].clone()).collect()
}

#[tokio::test]
async fn reads_answer_from_the_offline_store_while_redis_is_down_and_recover_when_it_returns() {
    let port = spare_port();
    let Some(mut redis) = PrivateRedis::start(port) else {
        eprintln!("skipped: redis-server is not installed");
        return;
    };
    let app = TestApp::spawn_with(|c| c.online = Some(format!("redis://127.0.0.1:{port}"))).await;
    app.setup_technical(&["AAPL"], 260).await;
    let job = app.materialize_and_wait("technical").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    let (status, before) = app.read_groups(&["AAPL"], &["technical"], "none").await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert!(sources(&before).iter().all(|s| s == "online"), "{before}");

    redis.stop();
    let (status, during) = app.read_groups(&["AAPL"], &["technical"], "none").await;
    assert_eq!(status, StatusCode::OK, "a read during the outage: {during}");
    assert!(sources(&during).iter().all(|s| s == "offline"), "{during}");
    assert_eq!(values(&during), values(&before), "the offline store has the same latest values");
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_ne!(ready["checks"]["online_store"], json!("ok"), "{ready}");
    assert_eq!(ready["checks"]["offline_store"], json!("ok"), "{ready}");

    // Same port, empty server: the connection manager reconnects by itself.
    let mut redis = PrivateRedis::start(port).expect("restart redis-server");
    let mut recovered = false;
    for _ in 0..50 {
        if app.get("/readyz").await.0 == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the host did not see Redis come back");
    // The new server starts empty; reads refill it from the offline store
    // (refills queued during the outage may already have landed), and soon
    // every value is an online hit again, unchanged.
    let mut after = Value::Null;
    for _ in 0..50 {
        let (status, body) = app.read_groups(&["AAPL"], &["technical"], "none").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(values(&body), values(&before), "{body}");
        after = body;
        if sources(&after).iter().all(|s| s == "online") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sources(&after).iter().all(|s| s == "online"), "not refilled: {after}");
    redis.stop();
}

/// How long a write may take to fail while PostgreSQL is down: the pool's
/// acquire timeout plus slack for a loaded CI machine. Far below the HTTP
/// client's own timeout, so a hanging write is a failure, not a wait.
const WRITE_FAILS_WITHIN: Duration = Duration::from_secs(6);

/// The online store for the PostgreSQL test: a private `redis-server`, or
/// else the shared one at `WAFER_TEST_REDIS_URL` under the app's own key
/// prefix (the test deletes its group at the end, which deletes its keys).
enum Online {
    Private(PrivateRedis),
    Shared(String),
}

impl Online {
    fn start() -> Option<Online> {
        let port = spare_port();
        if let Some(redis) = PrivateRedis::start(port) {
            return Some(Online::Private(redis));
        }
        let shared = std::env::var("WAFER_TEST_REDIS_URL").ok().filter(|u| !u.is_empty())?;
        Some(Online::Shared(shared))
    }

    fn url(&self) -> String {
        match self {
            Online::Private(redis) => redis.url(),
            Online::Shared(url) => url.clone(),
        }
    }
}

/// Status, body and how long the request took.
async fn timed<F: std::future::Future<Output = (StatusCode, Value)>>(f: F) -> (StatusCode, Value, Duration) {
    let t = Instant::now();
    let (status, body) = f.await;
    (status, body, t.elapsed())
}

#[track_caller]
fn assert_unavailable(what: &str, (status, body, took): &(StatusCode, Value, Duration)) {
    assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{what} while PostgreSQL is down: {body}");
    assert_eq!(body["error"]["code"], json!("unavailable"), "{what}: {body}");
    assert_eq!(body["error"]["details"]["backend"], json!("postgres"), "{what}: {body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("retry")), "{what}: {body}");
    assert!(*took < WRITE_FAILS_WITHIN, "{what} took {took:?} to fail; expected under {WRITE_FAILS_WITHIN:?}");
}

#[tokio::test]
async fn writes_fail_fast_with_503_while_postgres_is_down_reads_keep_working_and_nothing_acknowledged_is_lost() {
    let Some(pg) = PrivatePostgres::start() else { return };
    let Some(online) = Online::start() else {
        eprintln!("skipped: neither redis-server nor WAFER_TEST_REDIS_URL is available");
        return;
    };
    let prefix = format!("wafer-test-pgdown:{}:{}:", std::process::id(), pg.port());
    let mut app = TestApp::spawn_with(|c| {
        c.database_url = Some(pg.url());
        c.database_schema = None;
        c.online = Some(online.url());
        c.online_key_prefix = prefix.clone();
    })
    .await;

    // Acknowledged before the crash: definitions, 2 x 260 bars, their
    // features, and (right before the crash) 260 more bars and an entity.
    app.setup_technical(&["AAPL", "MSFT"], 260).await;
    let job = app.materialize_and_wait("technical").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    let rows_per_ticker = job["rows_written"].as_u64().expect("rows_written") / 2;
    assert!(rows_per_ticker > 0, "{job}");
    let (status, before) = app.read_groups(&["AAPL", "MSFT"], &["technical"], "none").await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert!(sources(&before).iter().all(|s| s == "online"), "{before}");
    app.ingest_prices(&["GOOG"], 260).await;
    let (status, body) = app.put_json("/v1/entities/before_crash", &json!({"join_keys": ["id"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    pg.stop_immediate();

    // Reads of values Redis holds never touch PostgreSQL.
    for fallback in ["none", "compute"] {
        let (status, during, took) = timed(app.read_groups(&["AAPL", "MSFT"], &["technical"], fallback)).await;
        assert_eq!(status, StatusCode::OK, "a read during the outage: {during}");
        assert!(sources(&during).iter().all(|s| s == "online"), "{during}");
        assert_eq!(during["results"], before["results"], "reads during the outage serve the same values");
        eprintln!("PostgreSQL down: online read (fallback {fallback}) answered in {took:?}");
    }

    // A miss would need the offline store: by the read's deadline the
    // hit is served from Redis and the miss is reported missing.
    let (status, mixed, took) = timed(app.read_groups(&["AAPL", "NOPE"], &["technical"], "none")).await;
    assert_eq!(status, StatusCode::OK, "a read with a miss during the outage: {mixed}");
    assert_eq!(mixed["results"][0], before["results"][0], "{mixed}");
    let missing = mixed["results"][1]["features"].as_object().expect("features");
    assert!(missing.values().all(|v| v["status"] == json!("missing")), "{mixed}");
    eprintln!("PostgreSQL down: online read with a miss answered in {took:?} (the read's deadline)");
    // With a deadline longer than the pool's wait, the offline lookup fails
    // before the deadline does: the hit is still served, the miss missing.
    let body = json!({"entities": [{"ticker": "AAPL"}, {"ticker": "NOPE"}], "feature_groups": ["technical"],
                      "fallback": "none", "timeout_ms": 5000});
    let (status, long) = app.post_json("/v1/features/online", &body).await;
    assert_eq!(status, StatusCode::OK, "a long-deadline read with a miss during the outage: {long}");
    assert_eq!(long["results"][0], before["results"][0], "{long}");
    assert!(
        long["results"][1]["features"].as_object().expect("features").values().all(|v| v["status"] == json!("missing"))
    );

    // Writes fail promptly with a clear, retryable error.
    let csv = wafer_host::demo::prices_csv("NVDA", 10, wafer_host::model::Timestamp::from_secs(1_700_000_000));
    let ingest = timed(app.post_csv("/v1/sources/prices/rows", &csv)).await;
    assert_unavailable("CSV ingest", &ingest);
    let entity = timed(app.put_json("/v1/entities/during_outage", &json!({"join_keys": ["id"]}))).await;
    assert_unavailable("PUT entity", &entity);
    eprintln!("PostgreSQL down: CSV ingest failed in {:?}, PUT entity in {:?}", ingest.2, entity.2);
    let (status, body) = app.get("/v1/entities/during_outage").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a failed registry write is not cached: {body}");

    let (status, ready, took) = timed(app.get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_ne!(ready["checks"]["registry"], json!("ok"), "{ready}");
    assert_ne!(ready["checks"]["offline_store"], json!("ok"), "{ready}");
    assert_eq!(ready["checks"]["online_store"], json!("ok"), "{ready}");
    assert!(took < WRITE_FAILS_WITHIN, "/readyz took {took:?}");
    let (status, health) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "liveness does not depend on the database: {health}");

    // Same port, same data dir: crash recovery replays the WAL, and the
    // host's pool reconnects by itself.
    let t = Instant::now();
    pg.start_again();
    let restarted = t.elapsed();
    let t = Instant::now();
    let mut recovered = None;
    while t.elapsed() < Duration::from_secs(30) {
        let (status, _) = app.put_json("/v1/entities/after_crash", &json!({"join_keys": ["id"]})).await;
        if status == StatusCode::OK {
            recovered = Some(t.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = recovered.expect("writes did not succeed within 30 s of PostgreSQL's restart");
    eprintln!("PostgreSQL restarted (crash recovery) in {restarted:?}; first write succeeded {recovered:?} later");
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    app.ingest_prices(&["AMZN"], 260).await;

    // Every acknowledged source row is in the database, and nothing else:
    // the write answered 503 left no trace.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&pg.url()).await.expect("connect");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM source_rows WHERE source = 'prices'")
        .fetch_one(&mut conn)
        .await
        .expect("count source rows");
    assert_eq!(stored, 4 * 260, "acknowledged source rows (AAPL, MSFT, GOOG before the crash, AMZN after)");
    sqlx::Connection::close(conn).await.expect("close");
    let job = app.materialize_and_wait("technical").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    assert_eq!(job["entities_done"], json!(4), "{job}");
    assert_eq!(job["rows_written"], json!(4 * rows_per_ticker), "{job}");
    let (status, after) = app.read_groups(&["AAPL", "MSFT", "GOOG", "AMZN"], &["technical"], "none").await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["results"][0], before["results"][0], "AAPL is unchanged");
    for r in after["results"].as_array().expect("results") {
        let features = r["features"].as_object().expect("features");
        assert!(features.values().all(|v| v["status"] == json!("fresh")), "{r}");
    }

    // A new host process reads the registry back from the database: the
    // definitions and the entity written just before the crash are there.
    app.restart().await;
    let (status, entities) = app.get("/v1/entities").await;
    assert_eq!(status, StatusCode::OK, "{entities}");
    let names: Vec<&str> =
        entities["entities"].as_array().expect("entities").iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names, ["after_crash", "before_crash", "ticker"], "{entities}");
    let (status, body) = app.read_groups(&["GOOG"], &["technical"], "none").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(sources(&body).iter().all(|s| s == "online"), "{body}");

    // Deleting the group deletes its keys, for a shared Redis.
    let (status, body) = app.delete("/v1/feature-groups/technical").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}
