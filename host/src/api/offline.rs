//! Offline table maintenance (admin): `POST /v1/offline/compact`.

use super::error::ApiResult;
use crate::service::Wafer;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

pub fn router() -> Router<Wafer> {
    Router::new().route("/v1/offline/compact", post(compact))
}

async fn compact(State(w): State<Wafer>) -> ApiResult<Json<Value>> {
    let tables = w.compact_offline().await?;
    Ok(Json(json!({"tables": tables})))
}
