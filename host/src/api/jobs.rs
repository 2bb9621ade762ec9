//! Materialization jobs.

use super::error::{ApiError, ApiResult, Json, Path, Query};
use crate::model::Job;
use crate::service::Wafer;
use crate::service::materialize::MaterializeRequest;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<Wafer> {
    Router::new()
        .route("/v1/materialize", post(materialize))
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job))
}

#[derive(Deserialize)]
struct WaitQuery {
    #[serde(default)]
    wait: bool,
}

/// 202 with the job id; with `?wait=true`, 200 with the finished job.
async fn materialize(
    State(w): State<Wafer>,
    Query(q): Query<WaitQuery>,
    Json(req): Json<MaterializeRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let job = w.start_materialize(req).await?;
    if q.wait {
        let job = w.jobs().wait(&job.id).await?.ok_or_else(|| ApiError::not_found("job vanished"))?;
        return Ok((StatusCode::OK, Json(serde_json::to_value(job).unwrap_or_default())));
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"job_id": job.id, "state": job.state}))))
}

async fn get_job(State(w): State<Wafer>, Path(id): Path<String>) -> ApiResult<Json<Job>> {
    let job = w.jobs().get(&id).await?.ok_or_else(|| ApiError::not_found(format!("job '{id}' not found")))?;
    Ok(Json(job))
}

#[derive(Deserialize)]
struct ListQuery {
    feature_group: Option<String>,
    limit: Option<u32>,
}

async fn list_jobs(State(w): State<Wafer>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let jobs = w.jobs().list(q.feature_group.as_deref(), q.limit.unwrap_or(50).min(1000)).await?;
    Ok(Json(json!({"jobs": jobs})))
}
