//! Running the real `wafer` binary in tests: a server as a child process
//! (killed by its pid when the test ends, even on a panic), and the client
//! commands against it.

#![allow(dead_code)] // each test binary uses its own part of this

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const WAFER: &str = env!("CARGO_BIN_EXE_wafer");

/// A `wafer serve` child process.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago. The server binds it itself, so there
/// is a small race with other processes; retrying would hide real failures.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A command with no ambient configuration from the environment.
pub fn wafer() -> Command {
    let mut cmd = Command::new(WAFER);
    for (var, _) in std::env::vars() {
        if var.starts_with("WAFER_") {
            cmd.env_remove(var);
        }
    }
    cmd.env("RUST_LOG", "warn").stdin(Stdio::null());
    cmd
}

/// Starts `wafer demo` on a free port with `data_dir` and waits until it
/// serves, which is after it has loaded and materialized everything (it
/// binds its port first, so requests before then wait rather than fail).
/// Returns the server and how long it took to serve.
pub async fn start_demo(data_dir: &Path) -> (Server, Duration) {
    let port = free_port();
    let started = Instant::now();
    let child = wafer()
        .args(["demo", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting wafer demo");
    let mut server = Server { child, base: format!("http://127.0.0.1:{port}") };
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("client");
    let deadline = started + Duration::from_secs(120);
    loop {
        if let Ok(resp) = client.get(server.url("/healthz")).send().await
            && resp.status().is_success()
        {
            return (server, started.elapsed());
        }
        if let Some(status) = server.child.try_wait().expect("polling the demo") {
            panic!("wafer demo exited early with {status}");
        }
        assert!(Instant::now() < deadline, "wafer demo did not serve within 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `wafer serve` on a free port with `data_dir` and `extra` flags,
/// and waits until it answers `/healthz`.
pub async fn start_server(data_dir: &Path, extra: &[String]) -> Server {
    let port = free_port();
    let child = wafer()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting wafer serve");
    let mut server = Server { child, base: format!("http://127.0.0.1:{port}") };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = client.get(format!("{}/healthz", server.base)).send().await
            && resp.status().is_success()
        {
            return server;
        }
        if let Some(status) = server.child.try_wait().expect("polling the server") {
            panic!("wafer serve exited early with {status}");
        }
        assert!(Instant::now() < deadline, "wafer serve did not answer /healthz within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a client command off the async runtime and returns its output.
pub async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || wafer().args(&args).output().expect("running wafer"))
        .await
        .expect("command task")
}

pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Sends the request and returns its JSON body, asserting success.
pub async fn send(req: reqwest::RequestBuilder) -> Value {
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {body}");
    body
}
