//! Liveness, readiness and metrics.

use super::error::ApiResult;
use crate::service::Wafer;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::fmt::Write;

pub fn router() -> Router<Wafer> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// 200 when every backend answers; 503 naming the ones that do not.
async fn readyz(State(w): State<Wafer>) -> impl IntoResponse {
    let mut checks = serde_json::Map::new();
    let mut ok = true;
    // A backend that hangs is as unready as one that refuses. The checks
    // run together, so an outage of the database (registry and offline
    // store) costs one timeout, not two.
    let check = |f| tokio::time::timeout(std::time::Duration::from_secs(1), f);
    let (registry, offline, online) =
        tokio::join!(check(w.registry().ping()), check(w.offline().ping()), check(w.online().ping()));
    for (name, result) in [("registry", registry), ("offline_store", offline), ("online_store", online)] {
        let status = match result {
            Ok(Ok(())) => "ok".to_string(),
            Ok(Err(e)) => {
                ok = false;
                e.to_string()
            }
            Err(_) => {
                ok = false;
                "did not answer within 1 s".to_string()
            }
        };
        checks.insert(name.to_string(), json!(status));
    }
    let code = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(json!({"status": if ok { "ready" } else { "unavailable" }, "checks": checks})))
}

/// Prometheus text: registry sizes and per-transform-version call counters.
async fn metrics(State(w): State<Wafer>) -> ApiResult<impl IntoResponse> {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP wafer_feature_groups Registered feature groups.\n# TYPE wafer_feature_groups gauge");
    let _ = writeln!(out, "wafer_feature_groups {}", w.list_feature_groups().len());
    let _ = writeln!(
        out,
        "# HELP wafer_transform_calls_total Transform calls by version.\n# TYPE wafer_transform_calls_total counter"
    );
    let mut errors = String::new();
    for t in w.list_transforms().await? {
        for v in &t.versions {
            let s = w.transform_stats(v);
            let labels = format!("transform=\"{}\",version=\"{}\"", v.name, v.version);
            let _ = writeln!(out, "wafer_transform_calls_total{{{labels}}} {}", s.calls);
            let _ = writeln!(errors, "wafer_transform_errors_total{{{labels}}} {}", s.errors);
        }
    }
    let _ = writeln!(
        out,
        "# HELP wafer_transform_errors_total Failed transform calls by version.\n# TYPE wafer_transform_errors_total counter"
    );
    out.push_str(&errors);
    let h = w.source_history_stats();
    for (name, kind, help, value) in [
        ("wafer_source_cache_hits_total", "counter", "Entity histories found in the source-history cache.", h.hits),
        ("wafer_source_cache_misses_total", "counter", "Entity histories read from the offline store.", h.misses),
        (
            "wafer_source_cache_evictions_total",
            "counter",
            "Entity histories dropped to stay within the budget.",
            h.evictions,
        ),
        ("wafer_source_cache_entries", "gauge", "Entity histories kept (empty ones too).", h.entries as u64),
        ("wafer_source_cache_bytes", "gauge", "Bytes the kept histories hold.", h.bytes as u64),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
