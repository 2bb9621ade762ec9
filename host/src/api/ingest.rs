//! Data in: source rows (JSON or CSV) and pushed feature rows.

use super::columnar::{ARROW_STREAM, Format, PARQUET, read_batches};
use super::error::{ApiError, ApiResult, Bytes, Json, Path, Query, json_from_bytes};
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

/// JSON `{"rows": [...]}`, `text/csv` with a header row, or a Parquet /
/// Arrow IPC body.
async fn write_source_rows(
    State(w): State<Wafer>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Bytes(body): Bytes,
) -> ApiResult<Json<Value>> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let written = if let Some(format) = Format::of(&headers) {
        w.ingest_batches(&name, &read_batches(format, body).await?).await?
    } else if content_type.starts_with("text/csv") {
        w.ingest_csv(&name, &body).await?
    } else if content_type.starts_with("application/json") {
        let parsed: RowsBody = json_from_bytes(&body)?;
        w.ingest_json(&name, &parsed.rows).await?
    } else {
        return Err(ApiError::new(
            "unsupported_media_type",
            format!(
                "send rows as application/json ({{\"rows\": [...]}}), text/csv with a header row, {PARQUET} or \
                 {ARROW_STREAM}"
            ),
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

/// Where a columnar body's rows go: the body is columns only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteQuery {
    feature_group: Option<String>,
}

/// JSON `{"feature_group", "rows": [...]}`, or a Parquet / Arrow IPC body
/// with the group in the query (`?feature_group=NAME`).
async fn write_features(
    State(w): State<Wafer>,
    Query(query): Query<WriteQuery>,
    headers: HeaderMap,
    Bytes(body): Bytes,
) -> ApiResult<Json<Value>> {
    let written = if let Some(format) = Format::of(&headers) {
        let group = query.feature_group.ok_or_else(|| {
            ApiError::invalid("a columnar body names its group in the query: ?feature_group=NAME")
                .with_details(json!({"in": "query", "parameter": "feature_group"}))
        })?;
        w.write_feature_batches(&group, &read_batches(format, body).await?).await?
    } else {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !content_type.starts_with("application/json") {
            return Err(ApiError::new(
                "unsupported_media_type",
                format!("send rows as application/json, {PARQUET} or {ARROW_STREAM} (with ?feature_group=NAME)"),
            ));
        }
        let body: FeatureWriteBody = json_from_bytes(&body)?;
        if query.feature_group.as_ref().is_some_and(|g| *g != body.feature_group) {
            return Err(ApiError::invalid("?feature_group names another group than the body's feature_group"));
        }
        w.write_features(&body.feature_group, body.rows).await?
    };
    Ok(Json(json!({"written": written})))
}
