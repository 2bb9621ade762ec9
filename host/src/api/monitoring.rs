//! Freshness and statistics, for admins and dashboards.

use super::error::{ApiResult, Path};
use crate::service::Wafer;
use crate::service::monitoring::GroupStatistics;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub fn router() -> Router<Wafer> {
    Router::new().route("/v1/freshness", get(freshness)).route("/v1/feature-groups/{name}/statistics", get(statistics))
}

async fn freshness(State(w): State<Wafer>) -> ApiResult<Json<Value>> {
    let groups = w.freshness().await?;
    Ok(Json(json!({"as_of": w.clock().now(), "groups": groups})))
}

async fn statistics(State(w): State<Wafer>, Path(name): Path<String>) -> ApiResult<Json<GroupStatistics>> {
    Ok(Json(w.statistics(&name).await?))
}
