//! `GET /v1/audit?limit=N` (admin): the newest registry and plugin changes
//! first, as `[{"at", "actor", "action", "target", "details"}]`.

use super::error::{ApiError, ApiResult, Json};
use crate::model::AuditEntry;
use crate::service::Wafer;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;

pub fn router() -> Router<Wafer> {
    Router::new().route("/v1/audit", get(audit))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Entries to return, newest first (default 100, at most 1,000).
    limit: Option<u32>,
}

async fn audit(
    State(w): State<Wafer>,
    params: Result<Query<Params>, QueryRejection>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    let Query(params) = params.map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))?;
    Ok(Json(w.audit_trail(params.limit.unwrap_or(100)).await?))
}
