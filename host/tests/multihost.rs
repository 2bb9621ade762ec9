//! Several `wafer serve` processes on one PostgreSQL and one Redis act as one
//! service: registry writes and transform activations reach every host
//! within a second, a materialization job is shared through task leases,
//! and a host killed mid-job loses only the tasks it held.
//!
//! Needs `WAFER_TEST_DATABASE_URL` and `WAFER_TEST_REDIS_URL` (`.ci/run`
//! sets both); without them each test says it skipped and passes. Every
//! test uses its own schema and key prefix and removes both at the end.

mod support;

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Server, send, start_server};
use wafer_host::model::Timestamp;

/// One PostgreSQL schema and one Redis key prefix shared by a test's hosts.
struct Shared {
    database_url: String,
    redis_url: String,
    schema: String,
    prefix: String,
    dirs: tempfile::TempDir,
}

impl Shared {
    fn new(test: &str) -> Option<Shared> {
        let (Ok(database_url), Ok(redis_url)) =
            (std::env::var("WAFER_TEST_DATABASE_URL"), std::env::var("WAFER_TEST_REDIS_URL"))
        else {
            eprintln!("skipped {test}: WAFER_TEST_DATABASE_URL / WAFER_TEST_REDIS_URL unset");
            return None;
        };
        let tag = format!("{:016x}", rand::random::<u64>());
        Some(Shared {
            database_url,
            redis_url,
            schema: format!("wafer_multihost_{tag}"),
            prefix: format!("wafer-multihost:{tag}:"),
            dirs: tempfile::tempdir().expect("temp dir"),
        })
    }

    /// Starts a host on the shared stores with its own data dir.
    async fn host(&self, id: &str, extra: &[&str]) -> Server {
        let mut args: Vec<String> = [
            "--database-url",
            &self.database_url,
            "--database-schema",
            &self.schema,
            "--online",
            &self.redis_url,
            "--online-key-prefix",
            &self.prefix,
            "--host-id",
            id,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        start_server(&self.dirs.path().join(id), &args).await
    }

    async fn db(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.database_url).await.expect("connecting to PostgreSQL")
    }

    fn table(&self, name: &str) -> String {
        format!("\"{}\".{name}", self.schema)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let (db, redis, schema, prefix) =
            (self.database_url.clone(), self.redis_url.clone(), self.schema.clone(), self.prefix.clone());
        // The test's runtime may be gone; a thread with its own can block.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&db).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).execute(&pool).await;
                }
                if let Ok(client) = redis::Client::open(redis.as_str())
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> =
                        redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.unwrap_or_default();
                    if !keys.is_empty() {
                        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
                    }
                }
            });
        })
        .join();
    }
}

/// Publishes `indicators` as `version` (and activates it) on `host`.
async fn publish(client: &reqwest::Client, host: &Server, version: &str) {
    let put = client
        .put(host.url(&format!("/v1/transforms/indicators/versions/{version}")))
        .header("content-type", "application/wasm")
        .body(wafer_host::bundled::INDICATORS.to_vec());
    send(put).await;
    send(client.post(host.url("/v1/transforms/indicators/activate")).json(&json!({"version": version}))).await;
}

/// Registers `ticker`, `prices` and `technical`, and ingests `days` bars for
/// each ticker in one CSV request; returns each ticker's closes.
async fn setup(client: &reqwest::Client, host: &Server, tickers: &[String], days: usize) -> BTreeMap<String, Vec<f64>> {
    send(client.put(host.url("/v1/entities/ticker")).json(&json!({"join_keys": ["ticker"]}))).await;
    let source = json!({"entity": "ticker", "timestamp_field": "ts", "fields": [
        {"name": "open", "type": "float64"}, {"name": "high", "type": "float64"},
        {"name": "low", "type": "float64"}, {"name": "close", "type": "float64"},
        {"name": "volume", "type": "int64"}]});
    send(client.put(host.url("/v1/sources/prices")).json(&source)).await;
    send(client.put(host.url("/v1/feature-groups/technical")).json(&wafer_host::demo::technical_group_json())).await;
    let end = Timestamp::from_secs(chrono::Utc::now().timestamp());
    let mut csv = String::from("ticker,ts,open,high,low,close,volume\n");
    let mut closes = BTreeMap::new();
    for ticker in tickers {
        let one = wafer_host::demo::prices_csv(ticker, days, end);
        let rows: Vec<&str> = one.lines().skip(1).collect();
        closes.insert(ticker.clone(), rows.iter().map(|r| r.split(',').nth(5).unwrap().parse().unwrap()).collect());
        for row in rows {
            csv.push_str(row);
            csv.push('\n');
        }
    }
    let req = client.post(host.url("/v1/sources/prices/rows")).header("content-type", "text/csv").body(csv);
    assert_eq!(send(req).await["written"], json!(tickers.len() * days));
    closes
}

async fn read_technical(client: &reqwest::Client, host: &Server, tickers: &[String]) -> Value {
    let entities: Vec<Value> = tickers.iter().map(|t| json!({"ticker": t})).collect();
    let body = json!({"entities": entities, "feature_groups": ["technical"], "fallback": "none"});
    send(client.post(host.url("/v1/features/online")).json(&body)).await
}

/// A read with its `age_seconds` removed (they grow between two reads).
fn without_ages(read: &Value) -> Value {
    let mut read = read.clone();
    for result in read["results"].as_array_mut().into_iter().flatten() {
        for (_, v) in result["features"].as_object_mut().into_iter().flatten() {
            v.as_object_mut().map(|o| o.remove("age_seconds"));
        }
    }
    read
}

/// Polls `check` every 10 ms until it returns true; returns how long it took.
async fn within<F: AsyncFnMut() -> bool>(limit: Duration, what: &str, mut check: F) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

/// Three bars of inline input for a dry run of `indicators`.
fn invoke_body() -> Value {
    let ts: Vec<String> = (0..3).map(|d| Timestamp::from_secs(1_700_000_000 + d * 86_400).to_rfc3339()).collect();
    let prices = json!({"timestamps": ts, "columns": {
        "open": [10.0, 11.0, 12.0], "high": [11.0, 12.0, 13.0], "low": [9.0, 10.0, 11.0],
        "close": [10.5, 11.5, 12.5], "volume": [100, 200, 300]}});
    json!({"sources": {"prices": prices}})
}

fn tickers(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("T{i:03}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_serve_the_same_features_and_see_each_others_registry_changes_within_a_second() {
    let Some(shared) = Shared::new("the two-host registry test") else { return };
    let a = shared.host("a", &[]).await;
    let b = shared.host("b", &[]).await;
    let client = reqwest::Client::new();

    publish(&client, &a, "1.0.0").await;
    let names = tickers(6);
    let closes = setup(&client, &a, &names, 260).await;
    // The group defined on A is served by B without a restart.
    let seen = within(Duration::from_secs(1), "group visible on B", async || {
        client.get(b.url("/v1/feature-groups/technical")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    eprintln!("group defined on A visible on B after {seen:?}");

    // A job started on B computes every entity; both hosts then serve the
    // same values from Redis.
    let job = send(client.post(b.url("/v1/materialize?wait=true")).json(&json!({"feature_group": "technical"}))).await;
    assert_eq!((job["state"].as_str(), job["entities_done"].as_u64()), (Some("succeeded"), Some(6)), "{job}");
    let from_a = read_technical(&client, &a, &names).await;
    let from_b = read_technical(&client, &b, &names).await;
    assert!(without_ages(&from_a) == without_ages(&from_b), "both hosts serve the same values");
    for (i, ticker) in names.iter().enumerate() {
        let sma = &from_b["results"][i]["features"]["technical:sma_20"];
        assert_eq!(sma["source"], json!("online"), "{sma}");
        let c = &closes[ticker];
        let expected = c[c.len() - 20..].iter().sum::<f64>() / 20.0;
        let got = sma["value"].as_f64().expect("sma_20 value");
        assert!((got - expected).abs() <= 1e-9 * expected, "{ticker}: sma_20 {got}, expected {expected}");
    }

    // B resolves the active version from its cache; activating a new
    // version on A reaches it within a second.
    let active_on_b = async || {
        let body = send(client.post(b.url("/v1/transforms/indicators/invoke")).json(&invoke_body())).await;
        body["transform"]["version"].as_str().map(str::to_string)
    };
    assert_eq!(active_on_b().await.as_deref(), Some("1.0.0"));
    publish(&client, &a, "1.0.1").await;
    let took =
        within(Duration::from_secs(1), "B runs 1.0.1", async || active_on_b().await.as_deref() == Some("1.0.1")).await;
    eprintln!("activation on A took effect on B after {took:?}");

    // Rolling back on B reaches A just the same.
    send(client.post(b.url("/v1/transforms/indicators/rollback"))).await;
    within(Duration::from_secs(1), "A runs 1.0.0 again", async || {
        let body = send(client.post(a.url("/v1/transforms/indicators/invoke")).json(&invoke_body())).await;
        body["transform"]["version"] == json!("1.0.0")
    })
    .await;

    // A host started later serves the same features at once.
    let c = shared.host("c", &[]).await;
    assert!(without_ages(&read_technical(&client, &c, &names).await) == without_ages(&from_b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_shared_through_leases_and_a_host_killed_mid_job_loses_only_its_tasks() {
    let Some(shared) = Shared::new("the shared-job test") else { return };
    // One entity per task and 2 s leases, so the test sees tasks move
    // between hosts quickly.
    let flags = ["--job-chunk-entities", "1", "--job-lease-seconds", "2"];
    let a = shared.host("a", &flags).await;
    let mut b = shared.host("b", &flags).await;
    let client = reqwest::Client::new();
    publish(&client, &a, "1.0.0").await;
    let names = tickers(120);
    setup(&client, &a, &names, 300).await;
    let db = shared.db().await;
    let tasks = shared.table("job_tasks");

    // Freeze A, start the job on B and let B work until it has committed a
    // few tasks; then kill B, which is holding leases at that moment.
    signal(&a, "STOP");
    let started = send(client.post(b.url("/v1/materialize")).json(&json!({"feature_group": "technical"}))).await;
    let job_id = started["job_id"].as_str().expect("job id").to_string();
    within(Duration::from_secs(30), "B commits 3 tasks and holds another", async || {
        let (done, held): (i64, i64) = sqlx::query_as(&format!(
            "SELECT COUNT(*) FILTER (WHERE state = 'done'), COUNT(*) FILTER (WHERE state = 'leased') \
             FROM {tasks} WHERE owner = 'b'"
        ))
        .fetch_one(&db)
        .await
        .expect("counting B's tasks");
        done >= 3 && held >= 1
    })
    .await;
    b.child.kill().expect("killing B");
    b.child.wait().expect("reaping B");
    let held: Vec<i64> =
        sqlx::query_scalar(&format!("SELECT task_no FROM {tasks} WHERE owner = 'b' AND state = 'leased'"))
            .fetch_all(&db)
            .await
            .expect("B's leases");
    assert!(!held.is_empty() && held.len() <= 2, "B died holding its 1-2 task slots: {held:?}");
    signal(&a, "CONT");

    // A finishes the job: the pending tasks at once, B's after its leases
    // expire.
    let finished = within(Duration::from_secs(60), "the job finishes on A", async || {
        let job = send(client.get(a.url(&format!("/v1/jobs/{job_id}")))).await;
        job["state"] != json!("running")
    })
    .await;
    eprintln!("A finished the job {finished:?} after B was killed");
    let job = send(client.get(a.url(&format!("/v1/jobs/{job_id}")))).await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    assert_eq!((job["entities_done"].as_u64(), job["entities_total"].as_u64()), (Some(120), Some(120)), "{job}");
    let (on_a, on_b) = (job["hosts"]["a"].as_u64().unwrap_or(0), job["hosts"]["b"].as_u64().unwrap_or(0));
    assert!(on_a > 0 && on_b >= 3 && on_a + on_b == 120, "each entity counted once, by the host that did it: {job}");

    // Only B's held tasks ran twice, and A re-ran them.
    let rerun: Vec<(i64, String)> =
        sqlx::query_as(&format!("SELECT task_no, owner FROM {tasks} WHERE attempts > 1 ORDER BY task_no"))
            .fetch_all(&db)
            .await
            .expect("re-run tasks");
    let rerun_nos: HashSet<i64> = rerun.iter().map(|(n, _)| *n).collect();
    assert_eq!(rerun_nos, held.iter().copied().collect::<HashSet<_>>(), "re-run tasks: {rerun:?}");
    assert!(rerun.iter().all(|(_, owner)| owner == "a"), "{rerun:?}");
    let open: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {tasks} WHERE state <> 'done'"))
        .fetch_one(&db)
        .await
        .expect("open tasks");
    assert_eq!(open, 0);

    // A task computed twice wrote the same rows again: no duplicates.
    let (rows, distinct): (i64, i64) = sqlx::query_as(&format!(
        "SELECT COUNT(*), COUNT(DISTINCT (entity_key, event_ts)) FROM {} WHERE group_name = 'technical'",
        shared.table("feature_rows")
    ))
    .fetch_one(&db)
    .await
    .expect("counting feature rows");
    assert_eq!(rows, distinct, "one row per entity and event time");
    assert_eq!(job["rows_written"].as_i64(), Some(rows), "{job}");

    let served = read_technical(&client, &a, &names).await;
    for (i, result) in served["results"].as_array().expect("results").iter().enumerate() {
        let sma = &result["features"]["technical:sma_20"];
        assert_eq!((&sma["status"], &sma["source"]), (&json!("fresh"), &json!("online")), "{}: {sma}", names[i]);
    }
}

/// Sends `SIGSTOP` / `SIGCONT` to a server.
fn signal(server: &Server, sig: &str) {
    let status = Command::new("kill").args([format!("-{sig}"), server.pid().to_string()]).status().expect("kill");
    assert!(status.success(), "kill -{sig} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_announcement_is_lost_arrives_with_the_periodic_resync() {
    let Some(shared) = Shared::new("the resync test") else { return };
    let resync = ["--registry-resync-seconds", "0.5"];
    let a = shared.host("a", &resync).await;
    let b = shared.host("b", &resync).await;
    let client = reqwest::Client::new();
    // Without its trigger, a write to `entities` is never announced: only
    // the periodic resync can bring it to B.
    let db = shared.db().await;
    sqlx::query(&format!("ALTER TABLE {} DISABLE TRIGGER entities_changed", shared.table("entities")))
        .execute(&db)
        .await
        .expect("disabling the trigger");
    send(client.put(a.url("/v1/entities/unannounced")).json(&json!({"join_keys": ["id"]}))).await;
    let seen = within(Duration::from_secs(5), "the unannounced entity reaches B", async || {
        client.get(b.url("/v1/entities/unannounced")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    eprintln!("an unannounced change reached B by resync after {seen:?}");
    // Deletions travel the same way.
    let deleted = client.delete(a.url("/v1/entities/unannounced")).send().await.expect("delete");
    assert!(deleted.status().is_success(), "{}", deleted.status());
    within(Duration::from_secs(5), "the deletion reaches B", async || {
        client.get(b.url("/v1/entities/unannounced")).send().await.is_ok_and(|r| r.status().as_u16() == 404)
    })
    .await;
}

/// Rows of `scores:y` for one write: (user, event seconds, y); each created
/// one second after its event, so the same key written twice differs only
/// in which write came last.
async fn write_scores(client: &reqwest::Client, host: &Server, rows: &[(String, i64, i64)]) {
    let rows: Vec<Value> = rows
        .iter()
        .map(|(user, event, y)| {
            json!({"entity": {"user_id": user}, "event_timestamp": Timestamp::from_secs(*event).to_rfc3339(),
                   "created_timestamp": Timestamp::from_secs(event + 1).to_rfc3339(), "values": {"y": y}})
        })
        .collect();
    let body = json!({"feature_group": "scores", "rows": rows});
    assert_eq!(send(client.post(host.url("/v1/features/write")).json(&body)).await["written"], json!(rows.len()));
}

/// `scores:y` as of each key's own event time, on `host`, in key order.
async fn scores_as_of(client: &reqwest::Client, host: &Server, keys: &[(String, i64)]) -> Vec<Value> {
    let entity_rows: Vec<Value> = keys
        .iter()
        .map(|(user, event)| json!({"user_id": user, "event_timestamp": Timestamp::from_secs(*event).to_rfc3339()}))
        .collect();
    let body = json!({"entity_rows": entity_rows, "features": ["scores:y"]});
    let answer = send(client.post(host.url("/v1/features/historical")).json(&body)).await;
    answer["rows"].as_array().expect("rows").iter().map(|r| r["scores:y"].clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_on_one_table_root_keep_one_history_and_a_host_killed_before_its_flush_loses_nothing() {
    let Some(shared) = Shared::new("the shared-tables test") else { return };
    let root = shared.dirs.path().join("tables");
    let root_arg = root.to_str().expect("utf-8 path").to_string();
    let tables = ["--offline", "delta", "--offline-url", root_arg.as_str()];
    // No flush by age while the test writes: the small writes wait in the
    // log until B shuts down.
    let waiting_long = [&tables[..], &["--offline-flush-age", "1h"]].concat();
    let mut a = shared.host("a", &waiting_long).await;
    let mut b = shared.host("b", &waiting_long).await;
    let client = reqwest::Client::new();
    send(client.put(a.url("/v1/entities/user")).json(&json!({"join_keys": ["user_id"]}))).await;
    let group = json!({"entity": "user", "features": [{"name": "y", "type": "int64"}], "producer": {"kind": "push"}});
    send(client.put(a.url("/v1/feature-groups/scores")).json(&group)).await;
    within(Duration::from_secs(5), "B sees the group", async || {
        client.get(b.url("/v1/feature-groups/scores")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;

    // What each key should read: the last acknowledged write of it, on
    // whichever host. Small writes wait in the log; B's large one commits
    // to the table directly.
    const T0: i64 = 1_700_000_000;
    let mut expected: BTreeMap<(String, i64), i64> = BTreeMap::new();
    let mut record = |rows: &[(String, i64, i64)]| {
        for (user, event, y) in rows {
            expected.insert((user.clone(), *event), *y);
        }
    };
    for u in 0..10i64 {
        let user = format!("u{u}");
        let from_a: Vec<_> = (0..20).map(|k| (user.clone(), T0 + k * 60, 1000 * u + k)).collect();
        write_scores(&client, &a, &from_a).await;
        record(&from_a);
        // B overwrites the odd events A just wrote.
        let from_b: Vec<_> =
            (0..20).filter(|k| k % 2 == 1).map(|k| (user.clone(), T0 + k * 60, -(1000 * u + k))).collect();
        write_scores(&client, &b, &from_b).await;
        record(&from_b);
    }
    let bulk: Vec<_> = (0..6).flat_map(|w| (0..1000).map(move |k| (format!("w{w}"), T0 + k * 60, k))).collect();
    write_scores(&client, &b, &bulk).await;
    record(&bulk);
    // A small write over a row of B's direct commit, and over one of B's
    // logged rows; then A dies at once, with its writes unflushed.
    let last = vec![("w0".to_string(), T0 + 5 * 60, 99_999), ("u0".to_string(), T0 + 60, 7)];
    write_scores(&client, &a, &last).await;
    record(&last);
    a.child.kill().expect("killing A");
    a.child.wait().expect("reaping A");

    let db = shared.db().await;
    let log = shared.table("offline_log");
    let waiting = async || -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {log} WHERE table_name = 'features/scores'"))
            .fetch_one(&db)
            .await
            .expect("counting waiting writes")
    };
    assert_eq!(waiting().await, 21, "every small write still waits in the log");
    let keys: Vec<(String, i64)> = expected.keys().cloned().collect();
    let want: Vec<Value> = expected.values().map(|y| json!(y)).collect();
    assert_eq!(want.len(), 6_200);
    assert_eq!(scores_as_of(&client, &b, &keys).await, want, "B, with the log and the table merged");
    let stats = send(client.get(b.url("/v1/feature-groups/scores/statistics"))).await;
    assert_eq!((&stats["rows"], &stats["features"]["y"]["count"]), (&json!(6_200), &json!(6_200)), "B: {stats}");

    // B shuts down cleanly and flushes every waiting write, A's too, into
    // the one table.
    signal(&b, "TERM");
    let exit = b.child.wait().expect("waiting for B");
    assert!(exit.success(), "B exits cleanly: {exit}");
    assert_eq!(waiting().await, 0, "B's shutdown flushed the log");
    assert!(root.join("features/scores/_delta_log").is_dir(), "one Delta table under the shared root");

    // A new host reads the table alone and answers the same history, with
    // one stored row per key.
    let c = shared.host("c", &tables).await;
    assert_eq!(scores_as_of(&client, &c, &keys).await, want, "C, from the table alone");
    let stats = send(client.get(c.url("/v1/feature-groups/scores/statistics"))).await;
    assert_eq!((&stats["rows"], &stats["features"]["y"]["count"]), (&json!(6_200), &json!(6_200)), "C: {stats}");
}

/// `technical:sma_20` of `ticker` read on `host`, computed on the miss
/// (the group's rows are all expired, so every read computes): the value
/// and where it came from.
async fn sma_computed(client: &reqwest::Client, host: &Server, ticker: &str) -> (Option<f64>, Value) {
    let body = json!({"entities": [{"ticker": ticker}], "features": ["technical:sma_20"], "fallback": "compute"});
    let read = send(client.post(host.url("/v1/features/online")).json(&body)).await;
    let sma = read["results"][0]["features"]["technical:sma_20"].clone();
    (sma["value"].as_f64(), sma["source"].clone())
}

/// Bars of `ticker` as CSV rows (no header): `closes[i]` on day `first + i`.
fn bars_csv(ticker: &str, first_day: i64, closes: &[f64]) -> String {
    let mut csv = String::from("ticker,ts,open,high,low,close,volume\n");
    for (i, c) in closes.iter().enumerate() {
        let ts = Timestamp::from_secs((first_day + i as i64) * 86_400).to_rfc3339();
        csv.push_str(&format!("{ticker},{ts},{c},{},{},{c},1000\n", c + 1.0, c - 1.0));
    }
    csv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_computed_on_a_miss_follow_every_source_write_made_on_another_host() {
    let Some(shared) = Shared::new("the source-history cache test") else { return };
    let a = shared.host("a", &[]).await;
    let b = shared.host("b", &[]).await;
    let client = reqwest::Client::new();
    publish(&client, &a, "1.0.0").await;
    send(client.put(a.url("/v1/entities/ticker")).json(&json!({"join_keys": ["ticker"]}))).await;
    let source = json!({"entity": "ticker", "timestamp_field": "ts", "fields": [
        {"name": "open", "type": "float64"}, {"name": "high", "type": "float64"},
        {"name": "low", "type": "float64"}, {"name": "close", "type": "float64"},
        {"name": "volume", "type": "int64"}]});
    send(client.put(a.url("/v1/sources/prices")).json(&source)).await;
    // Bars end ten days ago and rows expire after an hour: nothing stored
    // is ever served, so every read computes from the source history.
    let mut group = wafer_host::demo::technical_group_json();
    group["freshness"] = json!({"expected_interval_seconds": 600, "max_age_seconds": 3600});
    send(client.put(a.url("/v1/feature-groups/technical")).json(&group)).await;
    let today = chrono::Utc::now().timestamp() / 86_400;
    let first = today - 10 - 59;
    let mut closes: Vec<f64> = (0..60).map(|i| 100.0 + (i % 7) as f64 * 1.5 + i as f64 * 0.25).collect();
    let ingest = async |host: &Server, csv: String| {
        let req = client.post(host.url("/v1/sources/prices/rows")).header("content-type", "text/csv").body(csv);
        send(req).await;
    };
    ingest(&a, bars_csv("KNOWN", first, &closes)).await;
    let sma = |c: &[f64]| c[c.len() - 20..].iter().sum::<f64>() / 20.0;
    within(Duration::from_secs(1), "B knows the group", async || {
        client.get(b.url("/v1/feature-groups/technical")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;

    // B computes from the history A wrote, then from what it kept of it.
    for _ in 0..3 {
        let (value, source) = sma_computed(&client, &b, "KNOWN").await;
        assert_eq!(source, json!("computed"));
        let (got, expected) = (value.expect("sma_20"), sma(&closes));
        assert!((got - expected).abs() <= 1e-9 * expected, "sma_20 {got}, expected {expected}");
    }
    // A ticker with no prices: nothing to compute, and B remembers that.
    for _ in 0..3 {
        assert_eq!(sma_computed(&client, &b, "UNKNOWN").await, (None, Value::Null));
    }

    // A writes: a correction of the newest bar and a new bar for KNOWN,
    // and UNKNOWN's first prices. B's next computations use them, once
    // A's announcement arrives (it is sent before A acknowledges).
    let corrected = closes.len() - 1;
    closes[corrected] = 250.0;
    closes.push(400.0);
    let mut csv = bars_csv("KNOWN", first + corrected as i64, &closes[corrected..]);
    csv.push_str(bars_csv("UNKNOWN", first, &closes[..30]).split_once('\n').expect("header").1);
    ingest(&a, csv).await;
    let expected = sma(&closes);
    let took = within(Duration::from_secs(1), "B computes from A's new bars", async || {
        let (got, _) = sma_computed(&client, &b, "KNOWN").await;
        got.is_some_and(|g| (g - expected).abs() <= 1e-9 * expected)
    })
    .await;
    eprintln!("B computed from A's write {took:?} after A acknowledged it");
    within(Duration::from_secs(1), "B computes UNKNOWN once it has prices", async || {
        let (got, source) = sma_computed(&client, &b, "UNKNOWN").await;
        let want = sma(&closes[..30]);
        got.is_some_and(|g| (g - want).abs() <= 1e-9 * want) && source == json!("computed")
    })
    .await;
    // And it stays that way: no older history comes back.
    for _ in 0..5 {
        let (got, _) = sma_computed(&client, &b, "KNOWN").await;
        assert!((got.expect("sma_20") - expected).abs() <= 1e-9 * expected);
    }

    // A source redefined on A (a field added) is dropped whole on B; B's
    // computations go on from the new definition.
    let mut wider = source.clone();
    wider["fields"].as_array_mut().expect("fields").push(json!({"name": "vwap", "type": "float64"}));
    send(client.put(a.url("/v1/sources/prices")).json(&wider)).await;
    within(Duration::from_secs(1), "B reads the wider source", async || {
        send(client.get(b.url("/v1/sources/prices"))).await["fields"].as_array().is_some_and(|f| f.len() == 6)
    })
    .await;
    let (got, _) = sma_computed(&client, &b, "KNOWN").await;
    assert!((got.expect("sma_20") - expected).abs() <= 1e-9 * expected);
}
