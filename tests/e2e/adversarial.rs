//! The adversarial suite: every way the evil guest misbehaves (see
//! `tests/guests/evil`), all at once over HTTP, while well-behaved clients
//! keep calling the same server. Each misbehaving call must get its own
//! precise error (status, stable code, and a message naming what happened),
//! every well-behaved request must succeed, the server must still answer
//! afterwards, and its memory must come back to where it was.
//!
//! Embedded backend only: the sandbox is the runtime's, and the stores play
//! no part in it. Calls go through `POST /v1/transforms/evil/invoke`, the
//! dry run, which is outside the circuit breaker: a breaker opening after
//! five failures would otherwise answer the later calls for the guest.
//! Statuses, codes and counts are asserted, never timings.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use wafer_tests::TestApp;
use wafer_tests::guests::{EVIL, component_importing};

/// The published name and version, as error messages name it.
const EVIL_AT: &str = "evil@0.1.0";

/// How far resident memory may stay above its warmed-up baseline after the
/// attacks. Everything a guest touches lives in its pooled linear memory,
/// which the pooling allocator gives back when the call ends (no memory is
/// kept resident: `linear_memory_keep_resident(0)` in `runtime/engine.rs`),
/// so the margin is for the host's own heap: the allocator may keep freed
/// chunks (a `big_output` call lifts 20 MiB of strings), and the blocking
/// threads that ran guests keep the stack pages they touched. One memory
/// cap's worth (64 MiB) is less than a leak of the guests' memory would
/// show: the `alloc` call of each round touches 64 MiB.
const MEMORY_MARGIN_BYTES: u64 = 64 << 20;

/// Rounds of attacks after the warm-up; each runs every mode at once.
const ROUNDS: usize = 2;

/// Well-behaved clients calling while the attacks run.
const CLIENTS: usize = 4;

/// What a mode must answer: status, code and a part of the message that
/// says precisely what happened (`None`: a success, checked by its mode).
struct Expected {
    mode: &'static str,
    status: StatusCode,
    code: Option<&'static str>,
    message: &'static str,
}

const fn fails(mode: &'static str, status: StatusCode, code: &'static str, message: &'static str) -> Expected {
    Expected { mode, status, code: Some(code), message }
}

const fn succeeds(mode: &'static str) -> Expected {
    Expected { mode, status: StatusCode::OK, code: None, message: "" }
}

/// Every mode of the evil guest and its precise answer under the default
/// limits (2 s deadline, 64 MiB memory, 16 MiB output).
fn expectations() -> Vec<Expected> {
    use StatusCode as S;
    vec![
        fails("error", S::UNPROCESSABLE_ENTITY, "transform_failed", "returned an error: refusing on purpose"),
        fails("trap", S::INTERNAL_SERVER_ERROR, "transform_trapped", "trapping on purpose"),
        fails("loop", S::GATEWAY_TIMEOUT, "transform_timeout", "exceeded its 2s deadline and was stopped"),
        // A timer would block in the host, out of the epoch deadline's
        // reach, so the sandbox refuses to make one.
        fails("sleep", S::INTERNAL_SERVER_ERROR, "transform_trapped", "tried to sleep"),
        fails(
            "alloc",
            S::INTERNAL_SERVER_ERROR,
            "transform_memory_limit",
            "exceeded its memory limit of 67108864 bytes",
        ),
        fails("recurse", S::INTERNAL_SERVER_ERROR, "transform_trapped", "call stack exhausted"),
        // `exit(3)`: WASI 0.2 carries only success or failure, so status 1.
        fails("exit", S::INTERNAL_SERVER_ERROR, "transform_trapped", "Exited with i32 exit status 1"),
        fails("wrong_len", S::UNPROCESSABLE_ENTITY, "transform_bad_output", "column 'x' has 4 rows, expected 3"),
        fails(
            "nan",
            S::UNPROCESSABLE_ENTITY,
            "transform_bad_output",
            "column 'x' row 2 is NaN; return null for a missing value",
        ),
        fails(
            "inf",
            S::UNPROCESSABLE_ENTITY,
            "transform_bad_output",
            "column 'x' row 2 is +infinity; return null for a missing value",
        ),
        // 3 rows: 24 bytes of timestamps, 24 of `x`, and 3 strings of
        // 20 MiB / 3 + 1 bytes (the guest's BIG_OUTPUT_BYTES).
        fails(
            "big_output",
            S::UNPROCESSABLE_ENTITY,
            "transform_bad_output",
            "output is 20971569 bytes, over the limit of 16777216",
        ),
        // Batch rows must be strictly ascending and within year 1000 to
        // the server's clock plus the skew, whatever the guest returns.
        fails(
            "ts_reversed",
            S::UNPROCESSABLE_ENTITY,
            "transform_bad_output",
            "row 1: timestamp 2024-05-02T00:00:00Z is before row 0's (2024-05-03T00:00:00Z)",
        ),
        fails(
            "ts_repeat",
            S::UNPROCESSABLE_ENTITY,
            "transform_bad_output",
            "row 1: timestamp 2024-05-01T00:00:00Z repeats row 0's",
        ),
        fails(
            "ts_max",
            S::UNPROCESSABLE_ENTITY,
            "transform_bad_output",
            "row 0: timestamp 9223372036854775804 microseconds since the epoch is after",
        ),
        fails(
            "ts_min",
            S::UNPROCESSABLE_ENTITY,
            "transform_bad_output",
            "row 0: timestamp -9223372036854775808 microseconds since the epoch is before year 1000",
        ),
        fails(
            "ts_9999",
            S::UNPROCESSABLE_ENTITY,
            "transform_bad_output",
            "row 0: timestamp 9999-01-01T00:00:00Z is after",
        ),
        // No preopened directory: the guest's own std reports the failure.
        fails("fs", S::UNPROCESSABLE_ENTITY, "transform_failed", "returned an error: fs blocked: "),
        fails("env", S::UNPROCESSABLE_ENTITY, "transform_failed", "returned an error: env: []"),
        // The published build has no sockets (see the evil guest's docs);
        // a component that does is refused at publish, tested below.
        fails("net", S::UNPROCESSABLE_ENTITY, "transform_failed", "only with the `net` feature"),
        // Output past the per-call log budget is dropped, not an error.
        succeeds("log"),
        succeeds("stdout"),
        succeeds("clock"),
        succeeds("ok"),
    ]
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

/// The wall clock now, in seconds since the Unix epoch.
fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs_f64()
}

/// Checks one answer against its expectation; `Err` says what was wrong.
fn check(e: &Expected, status: StatusCode, body: &Value) -> Result<(), String> {
    let wrong = |what: &str| Err(format!("{}: {what}: {status} {body}", e.mode));
    if status != e.status {
        return wrong(&format!("expected status {}", e.status));
    }
    let Some(code) = e.code else {
        return check_success(e.mode, body).map_err(|what| format!("{}: {what}: {body}", e.mode));
    };
    if body["error"]["code"] != json!(code) {
        return wrong(&format!("expected code {code}"));
    }
    let text = message(body);
    if !text.contains(EVIL_AT) || !text.contains(e.message) {
        return wrong(&format!("expected a message naming {EVIL_AT} and saying {:?}", e.message));
    }
    Ok(())
}

/// What a successful mode returned: `x` doubled, except `clock`, whose `x`
/// is what the guest read from its clocks.
fn check_success(mode: &str, body: &Value) -> Result<(), String> {
    let x: Vec<f64> = body["columns"]["x"]
        .as_array()
        .ok_or("no column x")?
        .iter()
        .map(|v| v.as_f64().ok_or("a null or non-number in x"))
        .collect::<Result<_, _>>()?;
    if mode != "clock" {
        return if x == [3.0, -4.0, 8.5] { Ok(()) } else { Err(format!("x is {x:?}, not doubled")) };
    }
    // The guest sees the machine's real wall clock (WASI's default), and a
    // monotonic clock that advances.
    if (x[0] - unix_now()).abs() > 3600.0 {
        return Err(format!("wall clock {} is not the machine's ({})", x[0], unix_now()));
    }
    if x[1..].iter().any(|&nanos| nanos <= 0.0) {
        return Err(format!("the monotonic clock did not advance: {x:?}"));
    }
    Ok(())
}

/// Runs every mode at once and checks each answer; returns the failures.
async fn attack(app: &Arc<TestApp>) -> Vec<String> {
    let mut calls = tokio::task::JoinSet::new();
    for e in expectations() {
        let app = app.clone();
        calls.spawn(async move {
            let started = std::time::Instant::now();
            let (status, body) = app.invoke_evil(e.mode).await;
            // Reported, not asserted.
            let took = started.elapsed();
            println!("{:>10} ({took:.1?}): {status} {}", e.mode, if e.code.is_some() { message(&body) } else { "" });
            check(&e, status, &body)
        });
    }
    calls.join_all().await.into_iter().filter_map(Result::err).collect()
}

fn online_read() -> Value {
    json!({"entities": [{"ticker": "AAPL"}], "features": ["technical:sma_20", "technical:rsi_14"], "fallback": "none"})
}

/// One well-behaved request: even clients call the evil guest's `ok` mode,
/// odd ones read stored features online. `Err` says what failed.
async fn behave(app: &TestApp, i: usize) -> Result<(), String> {
    if i.is_multiple_of(2) {
        let (status, body) = app.invoke_evil("ok").await;
        return if status == StatusCode::OK && check_success("ok", &body).is_ok() {
            Ok(())
        } else {
            Err(format!("ok invoke: {status} {body}"))
        };
    }
    let (status, body) = app.post_json("/v1/features/online", &online_read()).await;
    let served = body["results"][0]["features"]
        .as_object()
        .is_some_and(|f| f.len() == 2 && f.values().all(|v| v["status"] == json!("fresh") && v["value"].is_f64()));
    if status == StatusCode::OK && served { Ok(()) } else { Err(format!("online read: {status} {body}")) }
}

/// Resident memory of this process, in bytes (`VmRSS` of /proc/self/status).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("a VmRSS line in kB");
    kib << 10
}

/// Set by the parent when it runs a test in a process of its own.
const ALONE_VAR: &str = "WAFER_TEST_ALONE";

/// Whether this test is alone in its process: always under nextest, which
/// runs one process per test; under `cargo test` only in the child that
/// [`run_alone`] starts. Resident memory is the whole process's, so it
/// means nothing while other tests run beside this one.
fn alone() -> bool {
    std::env::var("NEXTEST_EXECUTION_MODE").is_ok_and(|m| m == "process-per-test")
        || std::env::var_os(ALONE_VAR).is_some()
}

/// Runs the test `name` (its path within this test binary) again, alone in
/// a child process of this binary, and fails if it fails.
async fn run_alone(name: &'static str) {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(std::env::current_exe().expect("the test binary's path"))
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(ALONE_VAR, "1")
            .output()
            .expect("running the test binary")
    })
    .await
    .expect("the child test");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{stdout}\n{stderr}");
    assert!(output.status.success(), "{name}, run alone, failed: {}", output.status);
    assert!(stdout.contains("1 passed"), "{name} did not run in the child: {stdout}");
}

/// A server with the default limits, the evil guest published and active,
/// and the `technical` group materialized for AAPL for the online reads.
async fn adversarial_app() -> Arc<TestApp> {
    let app = TestApp::spawn().await;
    app.publish_and_activate("evil", "0.1.0", EVIL).await;
    app.setup_technical(&["AAPL"], 60).await;
    let job = app.materialize_and_wait("technical").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    Arc::new(app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_attack_gets_its_precise_error_under_load_and_memory_returns_to_baseline() {
    if !alone() {
        return run_alone("adversarial::every_attack_gets_its_precise_error_under_load_and_memory_returns_to_baseline")
            .await;
    }
    let app = adversarial_app().await;

    // Warm-up: one round, so thread pools, allocator arenas and lazily
    // built state exist before the baseline is taken.
    let failures = attack(&app).await;
    assert!(failures.is_empty(), "warm-up:\n{}", failures.join("\n"));
    let baseline = resident_bytes();

    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let (app, stop) = (app.clone(), stop.clone());
        clients.spawn(async move {
            let (mut served, mut failures) = (0usize, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match behave(&app, i).await {
                    Ok(()) => served += 1,
                    Err(failure) => failures.push(format!("client {i}: {failure}")),
                }
            }
            (served, failures)
        });
    }
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        failures.extend(attack(&app).await.into_iter().map(|f| format!("round {round}: {f}")));
    }
    stop.store(true, Ordering::Relaxed);
    let clients = clients.join_all().await;

    assert!(failures.is_empty(), "attacks answered wrongly:\n{}", failures.join("\n"));
    let client_failures: Vec<&String> = clients.iter().flat_map(|(_, failures)| failures).collect();
    assert!(client_failures.is_empty(), "well-behaved requests failed: {client_failures:#?}");
    let counts: Vec<usize> = clients.iter().map(|(served, _)| *served).collect();
    assert!(counts.iter().all(|&n| n > 0), "a client got no request through during the attacks: {counts:?}");
    let served: usize = counts.iter().sum();

    let (status, body) = app.get("/healthz").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = app.invoke_evil("ok").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let after = resident_bytes();
    println!(
        "resident memory: baseline {} MiB, after {ROUNDS} rounds {} MiB; {served} well-behaved requests served",
        baseline >> 20,
        after >> 20
    );
    assert!(
        after <= baseline + MEMORY_MARGIN_BYTES,
        "resident memory grew from {baseline} to {after} bytes, more than the {MEMORY_MARGIN_BYTES}-byte margin"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_reads_the_machines_real_clocks_not_the_servers_injected_clock() {
    let app = TestApp::spawn().await;
    app.publish_and_activate("evil", "0.1.0", EVIL).await;
    // Ten years ahead: a guest reading the server's clock would see it.
    app.clock.advance_secs(10 * 365 * 86_400);
    let (status, body) = app.invoke_evil("clock").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    check_success("clock", &body).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_would_use_the_network_is_refused_at_publish_naming_the_sockets_import() {
    let app = TestApp::spawn().await;
    // Interfaces `std::net` makes a wasm32-wasip2 component import for a DNS
    // lookup and a TCP connection. The evil guest built with its `net`
    // feature imports all of these and is refused naming the first,
    // `wasi:sockets/network@0.2.6`.
    let imports = ["wasi:sockets/network@0.2.6", "wasi:sockets/ip-name-lookup@0.2.6", "wasi:sockets/tcp@0.2.6"];
    for import in imports {
        let (status, body) = app.put_bytes("/v1/transforms/net/versions/1.0.0", &component_importing(import)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{import}: {body}");
        assert_eq!(body["error"]["code"], json!("invalid_component"), "{body}");
        let expected = format!("imports '{import}', which the sandbox does not provide");
        assert!(message(&body).contains(&expected), "{import}: {body}");
    }
    let (status, body) = app.get("/v1/transforms/net").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_over_the_size_cap_is_refused_at_publish_with_its_size_and_the_cap() {
    let cap = 64 << 10;
    let app = TestApp::spawn_with(|config| config.limits.module_bytes = cap).await;
    let (status, body) = app.put_bytes("/v1/transforms/evil/versions/0.1.0", EVIL).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], json!("module_too_large"), "{body}");
    assert_eq!(message(&body), format!("module is {} bytes, over the {cap}-byte limit", EVIL.len()), "{body}");
}
