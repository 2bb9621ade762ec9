//! Transform plugins (admin): publish versions, activate, disable, roll
//! back, inspect, and invoke on inline input.

use super::error::{ApiError, ApiResult, Bytes, Json, Path};
use crate::model::{
    Actor, BatchInput, Column, LimitOverrides, NamedTable, OnDemandInput, Table, Timestamp, TransformKind,
    TransformSummary, TransformVersion, Value, ValueType,
};
use crate::service::Wafer;
use crate::service::breaker;
use crate::service::shadow::ShadowReport;
use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Map, Value as J, json};
use std::collections::BTreeMap;

pub fn router() -> Router<Wafer> {
    Router::new()
        .route("/v1/transforms", get(list))
        .route("/v1/transforms/{name}", get(get_one))
        .route("/v1/transforms/{name}/versions/{version}", put(publish).get(get_version).delete(delete_version))
        .route("/v1/transforms/{name}/activate", post(activate))
        .route("/v1/transforms/{name}/disable", post(disable))
        .route("/v1/transforms/{name}/rollback", post(rollback))
        .route("/v1/transforms/{name}/shadow", post(start_shadow).get(shadow_report).delete(stop_shadow))
        .route("/v1/transforms/{name}/promote", post(promote))
        .route("/v1/transforms/{name}/limits", put(set_limits))
        .route("/v1/transforms/{name}/invoke", post(invoke))
}

/// 201 for a new version, 200 when the same bytes were already published.
async fn publish(
    State(w): State<Wafer>,
    Extension(actor): Extension<Actor>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    Bytes(body): Bytes,
) -> ApiResult<(StatusCode, Json<J>)> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/wasm");
    if !(ct.starts_with("application/wasm") || ct.starts_with("application/octet-stream")) {
        return Err(ApiError::new("unsupported_media_type", "send the component bytes as application/wasm"));
    }
    if body.is_empty() {
        return Err(ApiError::new("invalid_component", "empty body; send the component's bytes"));
    }
    let published = w.publish_transform(&name, &version, &body).await?;
    let status = if published.created { StatusCode::CREATED } else { StatusCode::OK };
    if published.created {
        let v = &published.version;
        let details = json!({"sha256": v.sha256, "size_bytes": v.size_bytes, "kind": v.descriptor.kind});
        w.record_change(&actor, "transform.publish", &format!("{name}@{version}"), details).await;
    }
    Ok((status, Json(version_json(&published.version))))
}

fn version_json(v: &TransformVersion) -> J {
    json!({
        "name": v.name,
        "version": v.version,
        "sha256": v.sha256,
        "size_bytes": v.size_bytes,
        "kind": v.descriptor.kind,
        "inputs": v.descriptor.inputs,
        "request_fields": v.descriptor.request_fields,
        "outputs": v.descriptor.outputs,
        "params": v.descriptor.params,
        "min_history": v.descriptor.min_history,
        "related": v.descriptor.related,
        "description": v.descriptor.description,
        "created_at": v.created_at,
    })
}

fn summary_json(w: &Wafer, t: &TransformSummary) -> J {
    let versions: Vec<J> = t
        .versions
        .iter()
        .map(|v| {
            let mut j = version_json(v);
            let stats = w.transform_stats(v);
            j["active"] = json!(t.active_version.as_deref() == Some(v.version.as_str()));
            j["stats"] = json!(stats);
            j["breaker"] = json!(w.breaker_status(t, v));
            j
        })
        .collect();
    let effective = w.effective_limits(&t.settings.limits);
    json!({
        "name": t.name,
        "status": t.status,
        "active_version": t.active_version,
        "previous_version": t.previous_version,
        "shadow": t.settings.shadow,
        "limits": {
            "overrides": t.settings.limits,
            "effective": {
                "call_timeout_ms": effective.call_timeout.as_millis() as u64,
                "memory_bytes": effective.memory_bytes,
                "module_bytes": effective.module_bytes,
                "output_bytes": effective.output_bytes,
                "breaker_failures": t.settings.limits.breaker_failures.unwrap_or(breaker::DEFAULT_FAILURES),
            },
        },
        "versions": versions,
    })
}

async fn list(State(w): State<Wafer>) -> ApiResult<Json<J>> {
    let all = w.list_transforms().await?;
    Ok(Json(json!({"transforms": all.iter().map(|t| summary_json(&w, t)).collect::<Vec<_>>()})))
}

async fn get_one(State(w): State<Wafer>, Path(name): Path<String>) -> ApiResult<Json<J>> {
    let t = w.transform(&name).await?;
    Ok(Json(summary_json(&w, &t)))
}

async fn get_version(State(w): State<Wafer>, Path((name, version)): Path<(String, String)>) -> ApiResult<Json<J>> {
    let v = w.resolve_version(&name, Some(&version)).await?;
    Ok(Json(version_json(&v)))
}

/// 204; 409 while pinned by a group, active, or the rollback target.
async fn delete_version(
    State(w): State<Wafer>,
    Extension(actor): Extension<Actor>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    w.delete_transform_version(&name, &version).await?;
    w.record_change(&actor, "transform.delete_version", &format!("{name}@{version}"), json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
    version: String,
}

async fn activate(
    State(w): State<Wafer>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Json(b): Json<ActivateBody>,
) -> ApiResult<Json<J>> {
    let t = w.activate_transform(&name, &b.version).await?;
    w.record_change(&actor, "transform.activate", &name, lifecycle_details(&t)).await;
    Ok(Json(summary_json(&w, &t)))
}

async fn disable(
    State(w): State<Wafer>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<Json<J>> {
    let t = w.disable_transform(&name).await?;
    w.record_change(&actor, "transform.disable", &name, lifecycle_details(&t)).await;
    Ok(Json(summary_json(&w, &t)))
}

async fn rollback(
    State(w): State<Wafer>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<Json<J>> {
    let t = w.rollback_transform(&name).await?;
    w.record_change(&actor, "transform.rollback", &name, lifecycle_details(&t)).await;
    Ok(Json(summary_json(&w, &t)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowBody {
    version: String,
    #[serde(default)]
    tolerance: Option<f64>,
}

/// Starts (or restarts) a shadow comparison; answers the empty report.
async fn start_shadow(
    State(w): State<Wafer>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Json(b): Json<ShadowBody>,
) -> ApiResult<Json<ShadowReport>> {
    let report = w.start_shadow(&name, &b.version, b.tolerance).await?;
    let details = json!({"candidate_version": report.candidate_version, "tolerance": report.tolerance});
    w.record_change(&actor, "transform.shadow_start", &name, details).await;
    Ok(Json(report))
}

async fn shadow_report(State(w): State<Wafer>, Path(name): Path<String>) -> ApiResult<Json<ShadowReport>> {
    Ok(Json(w.shadow_report(&name).await?))
}

/// Stops the comparison; answers its final report.
async fn stop_shadow(
    State(w): State<Wafer>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<Json<ShadowReport>> {
    let report = w.stop_shadow(&name).await?;
    w.record_change(&actor, "transform.shadow_stop", &name, json!({"candidate_version": report.candidate_version}))
        .await;
    Ok(Json(report))
}

/// Activates the candidate; answers the transform with `shadow_report`,
/// the comparison the promotion was based on.
async fn promote(
    State(w): State<Wafer>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
) -> ApiResult<Json<J>> {
    let (report, t) = w.promote_shadow(&name).await?;
    let mut details = lifecycle_details(&t);
    details["verdict"] = json!(report.verdict);
    w.record_change(&actor, "transform.promote", &name, details).await;
    let mut answer = summary_json(&w, &t);
    answer["shadow_report"] = json!(report);
    Ok(Json(answer))
}

/// Replaces the transform's limit overrides; `{}` restores the defaults.
async fn set_limits(
    State(w): State<Wafer>,
    Extension(actor): Extension<Actor>,
    Path(name): Path<String>,
    Json(b): Json<LimitOverrides>,
) -> ApiResult<Json<J>> {
    let t = w.set_transform_limits(&name, b.clone()).await?;
    w.record_change(&actor, "transform.limits", &name, json!(b)).await;
    Ok(Json(summary_json(&w, &t)))
}

/// The lifecycle after a change: the audit entry's details.
fn lifecycle_details(t: &TransformSummary) -> J {
    json!({"status": t.status, "active_version": t.active_version, "previous_version": t.previous_version})
}

/// A dry run on inline input. Batch: `{"entity", "sources": {name:
/// {"timestamps": [...], "columns": {field: [...]}}}, "related": {...},
/// "params": {...}}`. On-demand: `{"features": {"group:feature": [...]},
/// "request": {field: [...]}, "params": {...}}`. `version` defaults to the
/// active one. Answers `{"timestamps": [...], "columns": {name: [...]}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvokeBody {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    entity: Option<String>,
    #[serde(default)]
    sources: Map<String, J>,
    #[serde(default)]
    related: Map<String, J>,
    #[serde(default)]
    features: Map<String, J>,
    #[serde(default)]
    request: Map<String, J>,
    #[serde(default)]
    params: Map<String, J>,
}

async fn invoke(State(w): State<Wafer>, Path(name): Path<String>, Json(b): Json<InvokeBody>) -> ApiResult<Json<J>> {
    let version = w.resolve_version(&name, b.version.as_deref()).await?;
    let d = &version.descriptor;
    let types: BTreeMap<&str, ValueType> =
        d.inputs.iter().chain(d.request_fields.iter()).map(|f| (f.name.as_str(), f.value_type)).collect();
    let params = b
        .params
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
        .collect::<Vec<_>>();
    let params = with_defaults(params, &version);
    let output = match d.kind {
        TransformKind::Batch => {
            let input = BatchInput {
                entity: b.entity.unwrap_or_else(|| "invoke".into()),
                sources: named_tables(&b.sources, &types)?,
                related: named_tables(&b.related, &types)?,
                params,
            };
            w.dry_run_batch(&version, input).await?
        }
        TransformKind::OnDemand => {
            let input = OnDemandInput {
                features: columns(&b.features, &types, "features")?,
                request: columns(&b.request, &types, "request")?,
                params,
            };
            w.dry_run_on_demand(&version, input).await?
        }
    };
    let mut answer = table_json(&output);
    // Which version ran: without a version in the request, the active one.
    answer["transform"] = json!({"name": version.name, "version": version.version, "sha256": version.sha256});
    Ok(Json(answer))
}

fn with_defaults(mut params: Vec<(String, String)>, v: &TransformVersion) -> Vec<(String, String)> {
    for p in &v.descriptor.params {
        if let Some(d) = &p.default
            && !params.iter().any(|(k, _)| *k == p.name)
        {
            params.push((p.name.clone(), d.clone()));
        }
    }
    params
}

fn named_tables(tables: &Map<String, J>, types: &BTreeMap<&str, ValueType>) -> ApiResult<Vec<NamedTable>> {
    let mut out = Vec::new();
    for (name, t) in tables {
        let timestamps = t
            .get("timestamps")
            .and_then(J::as_array)
            .ok_or_else(|| ApiError::invalid(format!("sources.{name}.timestamps must be an array of timestamps")))?
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| ApiError::invalid(format!("sources.{name}.timestamps holds a non-string")))
                    .and_then(|s| Timestamp::parse(s).map_err(|e| ApiError::invalid(e.to_string())))
                    .map(Timestamp::micros)
            })
            .collect::<ApiResult<Vec<i64>>>()?;
        let cols = t.get("columns").and_then(J::as_object).cloned().unwrap_or_default();
        let table = Table { timestamps, columns: columns(&cols, types, name)? };
        table.check_shape().map_err(|e| ApiError::invalid(format!("sources.{name}: {e}")))?;
        out.push(NamedTable { name: name.clone(), table });
    }
    Ok(out)
}

/// JSON arrays as typed columns: the declared type when the transform
/// declares the column, else inferred from the first non-null value.
fn columns(cols: &Map<String, J>, types: &BTreeMap<&str, ValueType>, at: &str) -> ApiResult<Vec<Column>> {
    let mut out = Vec::new();
    for (name, values) in cols {
        let arr = values.as_array().ok_or_else(|| ApiError::invalid(format!("{at}.{name} must be an array")))?;
        let ty = types.get(name.as_str()).copied().unwrap_or_else(|| infer(arr));
        let parsed = arr
            .iter()
            .map(|v| Value::from_json(v, ty).map_err(|e| ApiError::invalid(format!("{at}.{name}: {e}"))))
            .collect::<ApiResult<Vec<_>>>()?;
        out.push(Column::from_values(name, ty, parsed.iter()));
    }
    Ok(out)
}

fn infer(values: &[J]) -> ValueType {
    match values.iter().find(|v| !v.is_null()) {
        Some(J::String(_)) => ValueType::String,
        Some(J::Bool(_)) => ValueType::Bool,
        Some(J::Array(items)) if items.first().is_some_and(J::is_string) => ValueType::StringList,
        Some(J::Array(_)) => ValueType::Float64List,
        _ => ValueType::Float64,
    }
}

fn table_json(t: &Table) -> J {
    let columns: Map<String, J> = t
        .columns
        .iter()
        .map(|c| (c.name.clone(), J::Array((0..c.len()).map(|i| c.value(i).to_json()).collect())))
        .collect();
    let timestamps: Vec<String> = t.timestamps.iter().map(|&ts| Timestamp(ts).to_rfc3339()).collect();
    json!({"timestamps": timestamps, "columns": columns})
}
