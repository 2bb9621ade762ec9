//! Client plumbing: requests to a running server with the caller's token,
//! and its error envelopes turned into readable errors. Also `wafer
//! materialize`.

use super::{MaterializeArgs, ServerArgs};
use crate::api::auth::required_role;
use anyhow::{Context, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// A server and the token to show it.
pub(super) struct Remote {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Remote {
    /// For ordinary requests: each must finish within two minutes.
    pub fn new(args: &ServerArgs) -> Remote {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("HTTP client");
        Remote::with_client(args, http)
    }

    /// For answers that stream as long as the data takes: no overall
    /// deadline, but a connection that stalls for minutes fails.
    pub fn streaming(args: &ServerArgs) -> Remote {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(300))
            .build()
            .expect("HTTP client");
        Remote::with_client(args, http)
    }

    fn with_client(args: &ServerArgs, http: reqwest::Client) -> Remote {
        let token = args.token.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string);
        Remote { base: args.server.trim_end_matches('/').to_string(), token, http }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to `path` (which starts with `/`), with the token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Sends the request; any answer but a success becomes the error
    /// [`Remote::failure`] describes.
    pub async fn send(&self, req: RequestBuilder) -> anyhow::Result<Response> {
        let req = req.build().context("building the request")?;
        let (method, path) = (req.method().clone(), req.url().path().to_string());
        let resp = self.http.execute(req).await.with_context(|| format!("connecting to {}", self.base))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.failure(&method, &path, resp).await)
    }

    /// Sends the request and reads the answer's JSON body (`null` when
    /// there is none, as for a 204).
    pub async fn json(&self, req: RequestBuilder) -> anyhow::Result<Value> {
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        resp.json().await.context("reading the server's answer")
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.json(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.json(self.request(Method::POST, path).json(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.json(self.request(Method::PUT, path).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.json(self.request(Method::DELETE, path)).await
    }

    /// The error of an unsuccessful answer. A refused token says what to
    /// do about it; any other 4xx is the request's fault, so its message
    /// alone (with the alternatives the server offers, if any) says what to
    /// fix; anything else names the status and code too.
    pub async fn failure(&self, method: &Method, path: &str, resp: Response) -> anyhow::Error {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let (code, msg) = envelope(&body);
        match status {
            StatusCode::UNAUTHORIZED if self.token.is_none() => {
                return anyhow!("the server needs a token: pass --token or set WAFER_TOKEN ({msg})");
            }
            StatusCode::UNAUTHORIZED => {
                return anyhow!("the server refused the token ({msg}); check --token or WAFER_TOKEN");
            }
            StatusCode::FORBIDDEN => {
                let role = required_role(method, path).map_or("another", |r| r.name());
                return anyhow!("this needs the {role} role, which the token does not have ({msg})");
            }
            _ => {}
        }
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
}

/// The `code` and `message` of an error envelope.
fn envelope(body: &Value) -> (&str, &str) {
    (body["error"]["code"].as_str().unwrap_or("?"), body["error"]["message"].as_str().unwrap_or("no message"))
}

/// A path segment as it must appear in a URL: names are checked by the
/// server, but a typo with a `/` or `?` must not reach another endpoint.
pub(super) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `wafer offline compact`: one line per table.
pub async fn compact(args: ServerArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args);
    let answer = remote.post("/v1/offline/compact", &json!({})).await?;
    let tables = answer["tables"].as_array().context("no tables in answer")?;
    for t in tables {
        println!(
            "{}: {} files, {} rewritten into {}, {} superseded files deleted",
            t["table"].as_str().unwrap_or("?"),
            t["files_before"],
            t["files_removed"],
            t["files_added"],
            t["files_deleted"]
        );
    }
    if tables.is_empty() {
        println!("no offline table to compact");
    }
    Ok(())
}

pub async fn materialize(args: MaterializeArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote);
    let mut req = json!({"feature_group": args.group, "incremental": args.incremental});
    if !args.entities.is_empty() {
        req["entities"] = json!(args.entities);
    }
    let started = remote.post("/v1/materialize", &req).await?;
    let id = started["job_id"].as_str().context("no job_id in answer")?.to_string();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} entities ({elapsed})")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_message(id.clone());
    let job = loop {
        let job = remote.get(&format!("/v1/jobs/{}", segment(&id))).await?;
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

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(super::segment("sma_20-v1.0"), "sma_20-v1.0");
        assert_eq!(super::segment("a/b?c d"), "a%2Fb%3Fc%20d");
    }
}
