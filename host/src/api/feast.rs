//! The Feast feature-server surface: `POST /get-online-features`,
//! `POST /write-to-online-store`, `POST /push` and `GET /health`, in
//! Feast's JSON (see `service::feast`).
//!
//! Errors take Feast's shape, not wafer's envelope: the body is a JSON
//! string holding `{"module": "feast.errors", "class": ..., "message": ...}`
//! (Feast's `FeastError.to_error_detail()`), which the Feast client's
//! `rest_error_handler` turns back into that exception class. Client errors
//! are 4xx; 5xx only for faults worth retrying (the client retries 429 and
//! 5xx, writes included) and internal ones.

use super::error::{ApiError, bytes_rejection};
use crate::service::Wafer;
use crate::service::feast::{
    FeastError, GetOnlineFeaturesRequest, GetOnlineFeaturesResponse, PushRequest, WriteToOnlineStoreRequest,
};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::Duration;

pub fn router() -> Router<Wafer> {
    Router::new()
        .route("/get-online-features", post(get_online_features))
        .route("/write-to-online-store", post(write_to_online_store))
        .route("/push", post(push))
        .route("/health", get(health))
}

/// The column-major answer Feast clients parse.
async fn get_online_features(
    State(w): State<Wafer>,
    FeastJson(req): FeastJson<GetOnlineFeaturesRequest>,
) -> Result<Json<GetOnlineFeaturesResponse>, FeastApiError> {
    Ok(Json(w.feast_online_features(req).await?))
}

/// 200 with `null`, as Feast's handler (which returns `None`) answers; the
/// remote client checks only for 200.
async fn write_to_online_store(
    State(w): State<Wafer>,
    FeastJson(req): FeastJson<WriteToOnlineStoreRequest>,
) -> Result<Json<Value>, FeastApiError> {
    w.feast_write_to_online_store(req).await?;
    Ok(Json(Value::Null))
}

/// 200 once written. Feast answers an empty 200; `null` keeps every answer
/// of this API JSON.
async fn push(State(w): State<Wafer>, FeastJson(req): FeastJson<PushRequest>) -> Result<Json<Value>, FeastApiError> {
    w.feast_push(req).await?;
    Ok(Json(Value::Null))
}

/// 200 while the registry answers, 503 otherwise: Feast's check (its
/// registry must list projects). Online reads survive an online-store
/// outage (the offline store answers), so it is not part of the check;
/// `/readyz` reports every backend.
async fn health(State(w): State<Wafer>) -> Result<Json<Value>, FeastApiError> {
    match tokio::time::timeout(Duration::from_secs(1), w.registry().ping()).await {
        Ok(Ok(())) => Ok(Json(json!({"status": "ok"}))),
        Ok(Err(e)) => Err(ApiError::from(e).into()),
        Err(_) => Err(FeastApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            class: "FeastError",
            message: "the registry did not answer within 1 s; retry shortly".into(),
        }),
    }
}

/// An error as a Feast server answers it.
#[derive(Debug)]
pub struct FeastApiError {
    status: StatusCode,
    /// A class of Feast's `feast.errors` module.
    class: &'static str,
    message: String,
}

/// The status for each Feast error: Feast's own `http_status_code()` where
/// the class has one (404 for the not-found family, 422 for an unknown push
/// source), 400 for the rest of the client's mistakes. Service errors keep
/// the status wafer's native API gives them (503 for an unavailable store).
impl From<FeastError> for FeastApiError {
    fn from(e: FeastError) -> Self {
        let status = match e {
            FeastError::Service(s) => return ApiError::from(s).into(),
            FeastError::FeatureViewNotFound(_)
            | FeastError::FeatureServiceNotFound { .. }
            | FeastError::EntityNotFound(_)
            | FeastError::FeaturesNotPresent { .. }
            | FeastError::RequestDataNotFound { .. } => StatusCode::NOT_FOUND,
            FeastError::PushSourceNotFound(_) => StatusCode::UNPROCESSABLE_ENTITY,
            FeastError::MissingColumns { .. } | FeastError::NameCollision(_) | FeastError::Invalid(_) => {
                StatusCode::BAD_REQUEST
            }
        };
        FeastApiError { status, class: e.class(), message: e.to_string() }
    }
}

/// wafer's native mapping (statuses, and internals kept out of 5xx bodies)
/// in Feast's shape, under Feast's base class.
impl From<ApiError> for FeastApiError {
    fn from(e: ApiError) -> Self {
        FeastApiError { status: e.status(), class: "FeastError", message: e.message }
    }
}

impl IntoResponse for FeastApiError {
    fn into_response(self) -> Response {
        let detail = error_detail(self.class, &self.message);
        let body = serde_json::to_string(&detail).expect("a string serializes");
        (self.status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
    }
}

/// What Feast's `to_error_detail()` returns: `json.dumps` of module, class
/// and message, with Python's default separators.
fn error_detail(class: &str, message: &str) -> String {
    let quoted = |s: &str| serde_json::to_string(s).expect("a string serializes");
    format!("{{\"module\": \"feast.errors\", \"class\": {}, \"message\": {}}}", quoted(class), quoted(message))
}

/// A JSON body read as Feast's server (FastAPI) reads one: with a JSON
/// content type or none at all (`requests.post(url, data=json.dumps(...))`
/// sends none). Other types are refused, as FastAPI refuses them, so a
/// browser form cannot post to a server running without tokens.
pub struct FeastJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for FeastJson<T> {
    type Rejection = FeastApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(content_type) = req.headers().get(header::CONTENT_TYPE)
            && !is_json(content_type)
        {
            return Err(FeastApiError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                class: "FeastError",
                message: format!(
                    "expected a JSON body with content-type: application/json (or none), not {}",
                    content_type.to_str().unwrap_or("a non-text content type")
                ),
            });
        }
        let body = Bytes::from_request(req, state).await.map_err(|e| FeastApiError::from(bytes_rejection(e)))?;
        // 422, as FastAPI answers a body it cannot validate.
        serde_json::from_slice(&body).map(FeastJson).map_err(|e| FeastApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            class: "FeastError",
            message: if e.is_data() { format!("invalid request body: {e}") } else { format!("malformed JSON: {e}") },
        })
    }
}

/// `application/json` or `application/*+json`, parameters aside.
fn is_json(content_type: &HeaderValue) -> bool {
    let Ok(text) = content_type.to_str() else { return false };
    let mime = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_body_is_a_json_string_holding_feasts_error_detail() {
        let e = FeastApiError::from(FeastError::FeatureViewNotFound("driver_stats".into()));
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let detail = error_detail(e.class, &e.message);
        // Byte for byte what Python's json.dumps gives for Feast's dict.
        assert_eq!(
            detail,
            r#"{"module": "feast.errors", "class": "FeatureViewNotFoundException", "message": "Feature view driver_stats does not exist"}"#
        );
        let quoted = error_detail("FeastError", "a \"quoted\" word");
        let parsed: Value = serde_json::from_str(&quoted).unwrap();
        assert_eq!(parsed["message"], json!("a \"quoted\" word"));
    }

    #[test]
    fn statuses_follow_feasts_classes_and_transient_faults_are_503() {
        let push = FeastApiError::from(FeastError::PushSourceNotFound("p".into()));
        assert_eq!((push.status, push.class), (StatusCode::UNPROCESSABLE_ENTITY, "PushSourceNotFoundException"));
        let invalid = FeastApiError::from(FeastError::Invalid("bad".into()));
        assert_eq!((invalid.status, invalid.class), (StatusCode::BAD_REQUEST, "FeastError"));
        let down = crate::store::StoreError::Unavailable { backend: "postgres", message: "connection refused".into() };
        let e = FeastApiError::from(FeastError::Service(down.into()));
        assert_eq!((e.status, e.class), (StatusCode::SERVICE_UNAVAILABLE, "FeastError"));
        assert!(e.message.contains("retry"), "{}", e.message);
    }

    #[test]
    fn json_content_types_are_accepted_and_forms_are_not() {
        for ok in ["application/json", "application/json; charset=utf-8", "application/vnd.feast+json"] {
            assert!(is_json(&HeaderValue::from_static(ok)), "{ok}");
        }
        for refused in ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"] {
            assert!(!is_json(&HeaderValue::from_static(refused)), "{refused}");
        }
    }
}
