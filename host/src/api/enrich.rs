//! Prompt enrichment for agents, and its monitor.

use super::error::{ApiResult, Json};
use crate::service::Wafer;
use crate::service::enrich::{EnrichRequest, EnrichResponse, EnrichStats, FeedbackRequest, FeedbackResponse};
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub fn router() -> Router<Wafer> {
    Router::new()
        .route("/v1/enrich", post(enrich))
        .route("/v1/enrich/feedback", post(feedback))
        .route("/v1/enrich/stats", get(stats))
        .route("/v1/enrich/tasks", get(tasks))
}

async fn enrich(State(w): State<Wafer>, Json(req): Json<EnrichRequest>) -> ApiResult<Json<EnrichResponse>> {
    Ok(Json(w.enrich(req).await?))
}

async fn feedback(State(w): State<Wafer>, Json(req): Json<FeedbackRequest>) -> ApiResult<Json<FeedbackResponse>> {
    Ok(Json(w.enrichment_feedback(req)?))
}

async fn stats(State(w): State<Wafer>) -> Json<EnrichStats> {
    Json(w.enrichment_stats())
}

/// Rendered here: the view borrows from the service handle.
async fn tasks(State(w): State<Wafer>) -> Response {
    Json(w.enrichment_tasks()).into_response()
}
