//! Property-based testing of the HTTP API against its own OpenAPI document:
//! [schemathesis](https://schemathesis.readthedocs.io) generates requests
//! from `GET /openapi.json` (valid and invalid ones) and sends them to the
//! real `wafer demo` binary, and every answer must pass the checks in
//! [`CHECKS`]: no 5xx, a documented status, the documented content type and
//! a body that fits the documented schema. Any finding fails the test, with
//! schemathesis' report (which has a `curl` line reproducing each one).
//!
//! The schemathesis CLI comes from `WAFER_TEST_SCHEMATHESIS` (the path of
//! its executable; `.ci/run` installs the pinned version into a cached
//! virtualenv and sets it). Without it the test says it skipped and passes,
//! except under `CI=true`, where a missing schemathesis is a failure.
//!
//! `host/tests/schemathesis/` holds the configuration (realistic names of
//! the demo's groups, sources, entities, transforms and versions, so the
//! generated requests reach the handlers rather than 404s) and the hooks
//! (a serializer for the `application/wasm` upload; half the uploads carry
//! a real component so the publish path is reached).
//!
//! Destructive operations run last, in a second pass on the same server:
//! DELETE of registry objects and transform versions, activate, disable,
//! roll back, promote and limits. Mixed into the first pass they would pull
//! the demo catalog away from the operations tested after them: a deleted
//! group turns every later read into a 404, and a disabled transform, a
//! 1 ms call timeout or a 1-byte module cap (all valid requests) turns the
//! reads that compute on demand into the 503s and 504s those states are
//! documented to give, which `not_a_server_error` would count as findings.
//!
//! `WAFER_SCHEMATHESIS_SEED` replays another seed (the default is fixed so
//! CI is reproducible); `WAFER_SCHEMATHESIS_EXAMPLES` sets the examples per
//! operation.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{Server, start_demo};

/// The checks every answer must pass.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
/// Examples per operation in the fuzzing phase (the examples and coverage
/// phases add their own, a bounded number). About a minute for both passes
/// against a debug build on two cores.
const MAX_EXAMPLES: &str = "50";
const SEED: &str = "20240501";
/// Paths of the state-changing operations besides DELETE (second pass).
const DESTRUCTIVE_PATHS: &str = "/(activate|disable|rollback|promote|limits)$";
/// Longest a pass may take before the test gives up on it.
const PASS_TIMEOUT: Duration = Duration::from_secs(600);

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("schemathesis")
}

/// The schemathesis executable, or `None` (skip) outside CI.
fn schemathesis() -> Option<PathBuf> {
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match std::env::var_os("WAFER_TEST_SCHEMATHESIS") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "WAFER_TEST_SCHEMATHESIS={} is not a file", path.display());
            Some(path)
        }
        None if in_ci => panic!(
            "CI=true but WAFER_TEST_SCHEMATHESIS is not set: .ci/run installs schemathesis and sets it (see its log)"
        ),
        None => {
            eprintln!(
                "skipped: set WAFER_TEST_SCHEMATHESIS to a schemathesis executable to run it (see README, Tests)"
            );
            None
        }
    }
}

/// One schemathesis pass over the operations `selection` picks; panics
/// with its report on any finding or error.
fn run_pass(exe: &Path, server: &Server, work: &Path, name: &str, selection: &[&str]) {
    let seed = std::env::var("WAFER_SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.into());
    let examples = std::env::var("WAFER_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| MAX_EXAMPLES.into());
    let log = work.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).expect("creating the schemathesis log");
    let mut child = Command::new(exe)
        .arg("--no-color")
        .arg("--config-file")
        .arg(assets().join("schemathesis.toml"))
        .args(["run", &server.url("/openapi.json")])
        .args(["--checks", CHECKS, "--max-examples", &examples, "--seed", &seed])
        .args(["--generation-database", "none", "--request-timeout", "30"])
        .args(selection)
        .env("SCHEMATHESIS_HOOKS", assets().join("hooks.py"))
        .env("WAFER_SCHEMATHESIS_COMPONENT", work.join("indicators.wasm"))
        // No __pycache__ beside the hooks in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // Its report files and caches stay in the temp dir.
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log handle"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("polling schemathesis") {
            break Some(status);
        }
        if started.elapsed() > PASS_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("schemathesis {name} pass: {:.1} s", started.elapsed().as_secs_f64());
    match status {
        Some(status) if status.success() => {
            // The summary lines, so a passing run still shows what it covered.
            for line in report.lines().filter(|l| l.contains("generated,") || l.contains("Selected:")) {
                eprintln!("  {}", line.trim());
            }
        }
        Some(status) => {
            panic!("schemathesis found problems in the {name} pass ({status}); its report:\n{}", tail(&report, 60_000))
        }
        None => panic!(
            "the schemathesis {name} pass ran past {PASS_TIMEOUT:?}; its output so far:\n{}",
            tail(&report, 20_000)
        ),
    }
}

/// The last `max` bytes of `text` (on a character boundary).
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_every_generated_request_as_its_openapi_document_says() {
    let Some(exe) = schemathesis() else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let work = tmp.path().to_path_buf();
    std::fs::write(work.join("indicators.wasm"), wafer_host::bundled::INDICATORS).expect("writing the component");
    let (server, ready_after) = start_demo(&work.join("data")).await;
    eprintln!("wafer demo served after {:.1} s", ready_after.as_secs_f64());

    let started = Instant::now();
    let server = tokio::task::spawn_blocking(move || {
        let everything_else = ["--exclude-method", "DELETE", "--exclude-path-regex", DESTRUCTIVE_PATHS];
        run_pass(&exe, &server, &work, "main", &everything_else);
        let destructive = ["--include-method", "DELETE", "--include-path-regex", DESTRUCTIVE_PATHS];
        run_pass(&exe, &server, &work, "destructive", &destructive);
        server
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    eprintln!("schemathesis: {:.1} s for both passes", started.elapsed().as_secs_f64());

    // Still serving after all of it.
    let health = reqwest::get(server.url("/healthz")).await.expect("GET /healthz after the run");
    assert!(health.status().is_success(), "{}", health.status());
    drop(server); // kills the demo by its pid
}
