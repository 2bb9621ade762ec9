//! The admin's path from a candidate version to a served one, while
//! traffic is served: shadow (the candidate runs beside the active version
//! and is compared per feature, never served), promote, roll back, disable;
//! per-transform limits; the per-version breaker.
//!
//! The candidate is the skew guest: the evil guest's `ok` mode (`2x`) with
//! a known difference (`2x(1 + 1e-7)` for x >= 0, `2x + 1` below), so which
//! rows match at which tolerance is known by hand.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use wafer_host::model::Timestamp;
use wafer_tests::guests::{EVIL, SKEW};
use wafer_tests::{Backend, TestApp, backend_tests};

backend_tests!(an_admin_shadows_compares_promotes_rolls_back_and_disables_while_reads_keep_succeeding,);

/// Source `xs` rows per ticker, oldest first, one a day.
const AAPL: [f64; 4] = [1.5, 4.25, 0.0, -2.0];
const MSFT: [f64; 1] = [3.0];

fn day(d: i64) -> Timestamp {
    Timestamp::parse("2024-05-01T00:00:00Z").unwrap().plus_secs(d * 86_400)
}

/// Entity `ticker`, source `xs` with float `x`, and group `doubled` run by
/// transform `evil` in mode `ok` (`2x`), with the rows above ingested.
async fn register_doubled(app: &TestApp) {
    let (status, body) = app.put_json("/v1/entities/ticker", &json!({"join_keys": ["ticker"]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let source = json!({"entity": "ticker", "timestamp_field": "ts", "fields": [{"name": "x", "type": "float64"}]});
    let (status, body) = app.put_json("/v1/sources/xs", &source).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    put_doubled(app, "ok").await;
    let mut csv = String::from("ticker,ts,x\n");
    for (ticker, xs) in [("AAPL", &AAPL[..]), ("MSFT", &MSFT[..])] {
        for (d, x) in xs.iter().enumerate() {
            csv.push_str(&format!("{ticker},{},{x}\n", day(d as i64)));
        }
    }
    let (status, body) = app.post_csv("/v1/sources/xs/rows", &csv).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// (Re)registers group `doubled` with the evil guest in `mode`.
async fn put_doubled(app: &TestApp, mode: &str) {
    let group = json!({
        "entity": "ticker",
        "features": [{"name": "x", "type": "float64"}],
        "producer": {"kind": "batch", "transform": "evil", "source": "xs", "lookback": 10, "params": {"mode": mode}}
    });
    let (status, body) = app.put_json("/v1/feature-groups/doubled", &group).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The shadow report once the candidate has run for `calls` active calls
/// (candidate calls run in the background after the active one answers).
async fn report_after(app: &TestApp, name: &str, calls: u64) -> Value {
    for _ in 0..600 {
        let (status, report) = app.get(&format!("/v1/transforms/{name}/shadow")).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        if report["calls"]["shadowed"].as_u64().unwrap() >= calls {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the candidate of {name} never ran {calls} times");
}

fn feature<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["features"].as_array().unwrap().iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("{report}"))
}

/// What AAPL's newest `doubled:x` is served as.
async fn served_aapl(app: &TestApp) -> Value {
    let (status, body) = app.read_groups(&["AAPL"], &["doubled"], "none").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["results"][0]["features"]["doubled:x"]["value"].clone()
}

/// Reads in a loop until stopped; counts reads and failed ones.
struct Traffic {
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    fn start(app: &TestApp) -> Traffic {
        let (stop, reads, failures) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::default());
        let (client, url) = (app.client.clone(), app.url("/v1/features/online"));
        let body = json!({"entities": [{"ticker": "AAPL"}, {"ticker": "MSFT"}], "feature_groups": ["doubled"], "fallback": "none"});
        let task = tokio::spawn({
            let (stop, reads, failures): (_, _, Arc<std::sync::Mutex<Vec<String>>>) =
                (stop.clone(), reads.clone(), Arc::clone(&failures));
            async move {
                while !stop.load(Ordering::SeqCst) {
                    match client.post(&url).json(&body).send().await {
                        Ok(r) if r.status() == StatusCode::OK => {}
                        Ok(r) => {
                            let failure = format!("{}: {}", r.status(), r.text().await.unwrap_or_default());
                            failures.lock().unwrap().push(failure);
                        }
                        Err(e) => failures.lock().unwrap().push(e.to_string()),
                    }
                    reads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        Traffic { stop, reads, failures, task }
    }

    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let failures = self.failures.lock().unwrap();
        assert!(
            failures.is_empty(),
            "{} of the reads failed: {:?}",
            failures.len(),
            &failures[..failures.len().min(3)]
        );
        self.reads.load(Ordering::SeqCst)
    }
}

async fn an_admin_shadows_compares_promotes_rolls_back_and_disables_while_reads_keep_succeeding(backend: Backend) {
    let app = TestApp::spawn_on(backend, |_| {}).await;
    app.publish_and_activate("evil", "0.1.0", EVIL).await;
    let (status, body) = app.put_bytes("/v1/transforms/evil/versions/0.2.0", SKEW).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    register_doubled(&app).await;
    let job = app.materialize_and_wait("doubled").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    assert_eq!(served_aapl(&app).await, json!(-4.0));
    let traffic = Traffic::start(&app);

    // Refusals first: nothing to compare with itself, no such version.
    let (status, body) = app.post_json("/v1/transforms/evil/shadow", &json!({"version": "0.1.0"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = app.post_json("/v1/transforms/evil/shadow", &json!({"version": "9.9.9"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app.get("/v1/transforms/evil/shadow").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app.post_json("/v1/transforms/evil/promote", &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing to promote: {body}");

    // Tolerance 1e-6: the 1e-7 relative skew matches, the bug on negative
    // values does not.
    let (status, report) =
        app.post_json("/v1/transforms/evil/shadow", &json!({"version": "0.2.0", "tolerance": 1e-6})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["verdict"], json!("no_data"), "{report}");
    assert_eq!(
        (report["active_version"].as_str(), report["candidate_version"].as_str()),
        (Some("0.1.0"), Some("0.2.0"))
    );
    let job = app.materialize_and_wait("doubled").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    let report = report_after(&app, "evil", 2).await;
    assert_eq!(report["calls"]["compared"], json!(2), "one call per entity: {report}");
    assert_eq!(report["calls"]["candidate_errors"], json!(0), "{report}");
    let x = feature(&report, "x");
    assert_eq!(
        (x["compared"].as_u64(), x["matches"].as_u64(), x["mismatches"].as_u64()),
        (Some(5), Some(4), Some(1)),
        "{report}"
    );
    assert_eq!(x["max_abs_diff"], json!(1.0), "{report}");
    let example = &x["examples"][0];
    assert_eq!(example["entity"], json!("AAPL"), "{report}");
    assert_eq!(example["event_timestamp"], json!(day(3)), "{report}");
    assert_eq!((example["active"].as_f64(), example["candidate"].as_f64()), (Some(-4.0), Some(-3.0)), "{report}");
    assert_eq!(report["verdict"], json!("mismatch"), "{report}");
    assert!(report["latency"]["active_mean_micros"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["latency"]["candidate_relative"].as_f64().unwrap() > 0.0, "{report}");
    // Served values are the active version's, never the candidate's.
    assert_eq!(served_aapl(&app).await, json!(-4.0));
    let (_, t) = app.get("/v1/transforms/evil").await;
    assert_eq!(t["shadow"]["version"], json!("0.2.0"), "{t}");
    let candidate = t["versions"].as_array().unwrap().iter().find(|v| v["version"] == "0.2.0").unwrap();
    // `describe` when it was published, then one call per entity.
    assert_eq!(candidate["stats"]["calls"], json!(1 + 2), "the candidate's own calls are counted: {t}");

    // Restarting at the default tolerance (1e-9) compares afresh: now only
    // the zero row matches.
    let (status, report) = app.post_json("/v1/transforms/evil/shadow", &json!({"version": "0.2.0"})).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!((report["calls"]["shadowed"].as_u64(), report["tolerance"].as_f64()), (Some(0), Some(1e-9)), "{report}");
    app.materialize_and_wait("doubled").await;
    let report = report_after(&app, "evil", 2).await;
    let x = feature(&report, "x");
    assert_eq!((x["matches"].as_u64(), x["mismatches"].as_u64()), (Some(1), Some(4)), "{report}");

    // Promote: the candidate is active, the shadow is over, and the next
    // materialization serves its values.
    let (status, t) = app.post_json("/v1/transforms/evil/promote", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!((t["active_version"].as_str(), t["previous_version"].as_str()), (Some("0.2.0"), Some("0.1.0")), "{t}");
    assert_eq!(t["shadow"], Value::Null, "{t}");
    assert_eq!(t["shadow_report"]["verdict"], json!("mismatch"), "the report promotion was based on: {t}");
    let (status, _) = app.get("/v1/transforms/evil/shadow").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.materialize_and_wait("doubled").await;
    assert_eq!(served_aapl(&app).await, json!(-3.0));

    // Roll back, disable, re-enable: each takes effect on the next run.
    let (status, t) = app.post_json("/v1/transforms/evil/rollback", &json!({})).await;
    assert_eq!((status, t["active_version"].as_str()), (StatusCode::OK, Some("0.1.0")), "{t}");
    app.materialize_and_wait("doubled").await;
    assert_eq!(served_aapl(&app).await, json!(-4.0));
    let (status, t) = app.post_json("/v1/transforms/evil/disable", &json!({})).await;
    assert_eq!((status, t["status"].as_str()), (StatusCode::OK, Some("disabled")), "{t}");
    let (status, body) = app.post_json("/v1/materialize?wait=true", &json!({"feature_group": "doubled"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "a disabled transform does not run: {body}");
    // Reads keep serving what was materialized.
    assert_eq!(served_aapl(&app).await, json!(-4.0));
    let (status, t) = app.post_json("/v1/transforms/evil/rollback", &json!({})).await;
    assert_eq!((status, t["active_version"].as_str()), (StatusCode::OK, Some("0.1.0")), "rollback re-enables: {t}");

    let reads = traffic.finish().await;
    assert!(reads > 0);
    let (_, trail) = app.get("/v1/audit?limit=20").await;
    let actions: Vec<&str> = trail.as_array().unwrap().iter().rev().map(|e| e["action"].as_str().unwrap()).collect();
    let wanted = [
        "transform.shadow_start",
        "transform.shadow_start",
        "transform.promote",
        "transform.rollback",
        "transform.disable",
        "transform.rollback",
    ];
    assert!(actions.ends_with(&wanted), "{actions:?}");
}

/// On-demand calls are shadowed too: the same `signals` bytes as a second
/// version match on every row.
#[tokio::test]
async fn on_demand_reads_are_shadowed_and_an_identical_candidate_matches() {
    let app = TestApp::spawn().await;
    app.setup_technical(&["AAPL", "MSFT"], 60).await;
    app.materialize_and_wait("technical").await;
    let signals = wafer_host::bundled::SIGNALS;
    app.publish_and_activate("signals", "1.0.0", signals).await;
    let (status, body) = app.put_bytes("/v1/transforms/signals/versions/1.1.0", signals).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.put_json("/v1/feature-groups/signals", &wafer_host::demo::signals_group_json()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, report) = app.post_json("/v1/transforms/signals/shadow", &json!({"version": "1.1.0"})).await;
    assert_eq!(status, StatusCode::OK, "{report}");

    let read = json!({
        "entities": [{"ticker": "AAPL"}, {"ticker": "MSFT"}],
        "feature_groups": ["signals"],
        "request_context": {"price": [150.0, 420.0]},
    });
    for _ in 0..5 {
        let (status, body) = app.post_json("/v1/features/online", &read).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["results"][0]["features"]["signals:pct_from_sma_20"]["value"].is_f64(), "{body}");
    }
    let report = report_after(&app, "signals", 5).await;
    assert_eq!(report["verdict"], json!("match"), "{report}");
    assert_eq!(report["calls"]["compared"], json!(5), "{report}");
    for name in ["pct_from_sma_20", "pct_from_sma_50", "above_sma_50"] {
        let f = feature(&report, name);
        assert_eq!((f["compared"].as_u64(), f["mismatches"].as_u64()), (Some(10), Some(0)), "{name}: {report}");
    }
    // Stopping answers the final report; the candidate can then be deleted.
    let (status, body) = app.delete("/v1/transforms/signals/versions/1.1.0").await;
    assert_eq!(status, StatusCode::CONFLICT, "the shadow candidate is in use: {body}");
    let (status, last) = app.delete("/v1/transforms/signals/shadow").await;
    assert_eq!((status, &last["calls"]["compared"]), (StatusCode::OK, &json!(5)), "{last}");
    let (status, body) = app.delete("/v1/transforms/signals/versions/1.1.0").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

/// Limits per transform: overrides take effect on the next call, are
/// validated, show in `GET /v1/transforms/{name}`, and `{}` restores the
/// defaults.
#[tokio::test]
async fn per_transform_limits_override_the_defaults_and_are_validated() {
    let app = TestApp::spawn().await;
    app.publish_and_activate("evil", "0.1.0", EVIL).await;
    let invoke = |mode: &str| json!({"params": {"mode": mode}, "sources": {"s": {"timestamps": [day(0), day(1), day(2)], "columns": {"x": [1.5, -2.0, 4.25]}}}});
    let (_, t) = app.get("/v1/transforms/evil").await;
    let defaults = t["limits"]["effective"].clone();
    assert_eq!(defaults["call_timeout_ms"], json!(2000), "{t}");
    assert_eq!(t["limits"]["overrides"], json!({}), "{t}");

    let (status, t) = app
        .put_json(
            "/v1/transforms/evil/limits",
            &json!({"call_timeout_ms": 150, "memory_bytes": 16 << 20, "output_bytes": 40, "module_bytes": 1000, "breaker_failures": 50}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["limits"]["effective"]["call_timeout_ms"], json!(150), "{t}");
    assert_eq!(t["limits"]["effective"]["breaker_failures"], json!(50), "{t}");

    let (status, body) = app.post_json("/v1/transforms/evil/invoke", &invoke("loop")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("150ms deadline"), "{body}");
    let (status, body) = app.post_json("/v1/transforms/evil/invoke", &invoke("alloc")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&format!("memory limit of {} bytes", 16 << 20)),
        "{body}"
    );
    // Three rows: 3 timestamps and 3 floats, 48 bytes, over 40.
    let (status, body) = app.post_json("/v1/transforms/evil/invoke", &invoke("ok")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("over the limit of 40"), "{body}");
    let (status, body) = app.put_bytes("/v1/transforms/evil/versions/0.2.0", SKEW).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    for (bad, why) in [
        (json!({"memory_bytes": 1u64 << 40}), "memory_bytes must be between"),
        (json!({"call_timeout_ms": 0}), "call_timeout_ms must be between"),
        (json!({"breaker_failures": 0}), "breaker_failures must be between"),
        (json!({"deadline": 5}), "unknown field"),
    ] {
        let (status, body) = app.put_json("/v1/transforms/evil/limits", &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(why), "{bad}: {body}");
    }
    let (status, _) = app.put_json("/v1/transforms/nope/limits", &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, t) = app.put_json("/v1/transforms/evil/limits", &json!({})).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["limits"]["effective"], defaults, "{t}");
    let (status, body) = app.post_json("/v1/transforms/evil/invoke", &invoke("ok")).await;
    assert_eq!((status, &body["columns"]["x"]), (StatusCode::OK, &json!([3.0, -4.0, 8.5])), "{body}");
}

/// A version whose calls keep failing is switched off by its breaker,
/// which says so (job errors, the transform's status, the audit trail),
/// lets one call through after the cool-down, and closes when an admin
/// activates the version again.
#[tokio::test]
async fn the_breaker_switches_off_a_failing_version_and_says_so() {
    let app = TestApp::spawn().await;
    app.publish_and_activate("evil", "0.1.0", EVIL).await;
    register_doubled(&app).await;
    let (status, body) = app.put_json("/v1/transforms/evil/limits", &json!({"breaker_failures": 2})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    put_doubled(&app, "trap").await;

    // Two entities: two traps open the breaker.
    let job = app.materialize_and_wait("doubled").await;
    assert_eq!(job["state"], json!("failed"), "{job}");
    let (_, t) = app.get("/v1/transforms/evil").await;
    let breaker = &t["versions"][0]["breaker"];
    assert_eq!(breaker["state"], json!("open"), "{t}");
    assert_eq!((breaker["consecutive_failures"].as_u64(), breaker["threshold"].as_u64()), (Some(2), Some(2)), "{t}");
    assert!(breaker["last_error"].as_str().unwrap().contains("trapping on purpose"), "{t}");
    let (_, trail) = app.get("/v1/audit?limit=1").await;
    assert_eq!(
        (trail[0]["action"].as_str(), trail[0]["actor"].as_str()),
        (Some("transform.breaker_open"), Some("system:breaker")),
        "{trail}"
    );
    assert_eq!(trail[0]["target"], json!("evil@0.1.0"), "{trail}");

    // While open, calls are refused without running: the job's errors say why.
    let job = app.materialize_and_wait("doubled").await;
    let errors = job["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{job}");
    for e in errors {
        assert!(e.as_str().unwrap().contains("switched off by its breaker after 2 consecutive failed calls"), "{job}");
    }
    let (_, t) = app.get("/v1/transforms/evil").await;
    // `describe` at publish and the two trapping calls.
    assert_eq!(t["versions"][0]["stats"]["calls"], json!(1 + 2), "refused calls never ran: {t}");

    // After the cool-down one trial runs; it traps, so the breaker opens again.
    app.clock.advance_secs(wafer_host::service::breaker::COOL_DOWN_SECS);
    let job = app.materialize_and_wait("doubled").await;
    let trapped = job["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e.as_str().unwrap().contains("switched off by its breaker"))
        .count();
    assert_eq!(trapped, 1, "one trial call: {job}");
    let (_, t) = app.get("/v1/transforms/evil").await;
    assert_eq!(
        (t["versions"][0]["breaker"]["state"].as_str(), t["versions"][0]["breaker"]["times_opened"].as_u64()),
        (Some("open"), Some(2)),
        "{t}"
    );

    // The admin fixes the group and activates the version again: closed.
    put_doubled(&app, "ok").await;
    let (status, t) = app.post_json("/v1/transforms/evil/activate", &json!({"version": "0.1.0"})).await;
    assert_eq!((status, t["versions"][0]["breaker"]["state"].as_str()), (StatusCode::OK, Some("closed")), "{t}");
    let job = app.materialize_and_wait("doubled").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    assert_eq!(served_aapl(&app).await, json!(-4.0));
}
