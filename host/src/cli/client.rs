//! Client commands: talk to a running server over HTTP and print results.

use super::{MaterializeArgs, PublishArgs};
use anyhow::{Context, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::time::Duration;

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("HTTP client")
}

/// For answers that stream as long as the data takes: no overall deadline,
/// but a connection that stalls for minutes fails.
pub(super) fn streaming_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(300))
        .build()
        .expect("HTTP client")
}

/// The `code` and `message` of an error envelope.
fn envelope(body: &Value) -> (&str, &str) {
    (body["error"]["code"].as_str().unwrap_or("?"), body["error"]["message"].as_str().unwrap_or("no message"))
}

/// Turns an error envelope into a readable error.
async fn check(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let (code, msg) = envelope(&body);
        bail!("server answered {status} ({code}): {msg}");
    }
    Ok(body)
}

/// The error of an unsuccessful answer. A 4xx is the request's fault, so
/// its message alone (with the alternatives the server offers, if any)
/// says what to fix; anything else names the status and code too.
pub(super) async fn failure(resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let (code, msg) = envelope(&body);
    if !status.is_client_error() {
        return anyhow!("server answered {status} ({code}): {msg}");
    }
    match body["error"]["details"]["available"].as_array().filter(|a| !a.is_empty()) {
        Some(available) => {
            let names: Vec<&str> = available.iter().filter_map(Value::as_str).collect();
            anyhow!("{msg} (available: {})", names.join(", "))
        }
        None => anyhow!("{msg}"),
    }
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let base = args.server.trim_end_matches('/');
    let resp = client()
        .put(format!("{base}/v1/transforms/{}/versions/{}", args.name, args.version))
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .with_context(|| format!("connecting to {base}"))?;
    let created = resp.status() == reqwest::StatusCode::CREATED;
    let body = check(resp).await?;
    println!(
        "{} {}@{} sha256 {} ({} outputs)",
        if created { "published" } else { "already published" },
        args.name,
        args.version,
        body["sha256"].as_str().unwrap_or("?"),
        body["outputs"].as_array().map_or(0, Vec::len)
    );
    if args.activate {
        let resp = client()
            .post(format!("{base}/v1/transforms/{}/activate", args.name))
            .json(&json!({"version": args.version}))
            .send()
            .await?;
        check(resp).await?;
        println!("activated {}@{}", args.name, args.version);
    }
    Ok(())
}

pub async fn materialize(args: MaterializeArgs) -> anyhow::Result<()> {
    let base = args.server.trim_end_matches('/');
    let mut req = json!({"feature_group": args.group, "incremental": args.incremental});
    if !args.entities.is_empty() {
        req["entities"] = json!(args.entities);
    }
    let resp = client()
        .post(format!("{base}/v1/materialize"))
        .json(&req)
        .send()
        .await
        .with_context(|| format!("connecting to {base}"))?;
    let started = check(resp).await?;
    let id = started["job_id"].as_str().context("no job_id in answer")?.to_string();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} entities ({elapsed})")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_message(id.clone());
    let job = loop {
        let job = check(client().get(format!("{base}/v1/jobs/{id}")).send().await?).await?;
        bar.set_length(job["entities_total"].as_u64().unwrap_or(0));
        bar.set_position(job["entities_done"].as_u64().unwrap_or(0));
        if matches!(job["state"].as_str(), Some("succeeded" | "failed")) {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    bar.finish();
    println!(
        "{} {}: {} entities, {} rows written",
        id,
        job["state"].as_str().unwrap_or("?"),
        job["entities_done"],
        job["rows_written"]
    );
    if let Some(errors) = job["errors"].as_array().filter(|e| !e.is_empty()) {
        for e in errors {
            eprintln!("  error: {}", e.as_str().unwrap_or_default());
        }
        bail!("materialization finished with {} error(s)", errors.len());
    }
    Ok(())
}
