//! Serving: online reads.

use super::error::{ApiResult, Json};
use crate::service::Wafer;
use crate::service::serving::{OnlineRequest, OnlineResponse};
use axum::Router;
use axum::extract::State;
use axum::routing::post;

pub fn router() -> Router<Wafer> {
    Router::new().route("/v1/features/online", post(online))
}

async fn online(State(w): State<Wafer>, Json(req): Json<OnlineRequest>) -> ApiResult<Json<OnlineResponse>> {
    Ok(Json(w.read_online(req).await?))
}
