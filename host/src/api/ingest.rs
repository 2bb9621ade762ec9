//! Data in: source rows (JSON or CSV) and pushed feature rows.

use super::error::{ApiError, ApiResult, Bytes, Json, Path, json_from_bytes};
use crate::service::Wafer;
use crate::service::ingest::FeatureWriteRow;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

pub fn router() -> Router<Wafer> {
    Router::new()
        .route("/v1/sources/{name}/rows", post(write_source_rows))
        .route("/v1/features/write", post(write_features))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RowsBody {
    rows: Vec<Value>,
}

/// JSON `{"rows": [...]}` or `text/csv` with a header row.
async fn write_source_rows(
    State(w): State<Wafer>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Bytes(body): Bytes,
) -> ApiResult<Json<Value>> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let written = if content_type.starts_with("text/csv") {
        w.ingest_csv(&name, &body).await?
    } else if content_type.starts_with("application/json") {
        let parsed: RowsBody = json_from_bytes(&body)?;
        w.ingest_json(&name, &parsed.rows).await?
    } else {
        return Err(ApiError::new(
            "unsupported_media_type",
            "send rows as application/json ({\"rows\": [...]}) or text/csv with a header row",
        ));
    };
    Ok(Json(json!({"written": written})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureWriteBody {
    feature_group: String,
    rows: Vec<FeatureWriteRow>,
}

async fn write_features(State(w): State<Wafer>, Json(body): Json<FeatureWriteBody>) -> ApiResult<Json<Value>> {
    let written = w.write_features(&body.feature_group, body.rows).await?;
    Ok(Json(json!({"written": written})))
}
