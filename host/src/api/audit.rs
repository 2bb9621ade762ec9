//! `GET /v1/audit?limit=N` (admin): the newest registry and plugin changes
//! first, as `[{"at", "actor", "action", "target", "details"}]`.

use super::error::{ApiResult, Json, Query};
use crate::model::AuditEntry;
use crate::service::Wafer;
use axum::Router;
use axum::extract::State;
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

async fn audit(State(w): State<Wafer>, Query(params): Query<Params>) -> ApiResult<Json<Vec<AuditEntry>>> {
    Ok(Json(w.audit_trail(params.limit.unwrap_or(100)).await?))
}
