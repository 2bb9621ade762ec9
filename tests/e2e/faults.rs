//! Backend faults on a private `redis-server` this test starts on a spare
//! port (never the shared one): online reads keep answering from the
//! offline store while Redis is down, `/readyz` names it, and the host
//! recovers by itself when Redis is back.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use wafer_tests::TestApp;

/// A `redis-server` child process, stopped (by its pid) when dropped.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start(port: u16) -> Option<PrivateRedis> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut redis = PrivateRedis { port, child: Some(child) };
        redis.wait_until_up();
        Some(redis)
    }

    fn wait_until_up(&mut self) {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private redis-server on port {} did not start", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

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
