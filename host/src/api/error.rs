//! The one error type of the HTTP API. Every error body is
//! `{"error": {"code", "message", "details"}}`; `code` is a stable
//! snake_case string clients branch on, mapped to a status in one table
//! ([`ApiError::status`]). Internal failures are logged in full and answered
//! with a generic message, never with internals.

use crate::runtime::RuntimeError;
use crate::service::ServiceError;
use crate::store::StoreError;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
    pub details: serde_json::Value,
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), details: json!({}) }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// The status for each stable code.
    pub fn status(&self) -> StatusCode {
        match self.code {
            "invalid_json" | "invalid_request" | "unknown_feature" | "invalid_component" => StatusCode::BAD_REQUEST,
            "unauthorized" => StatusCode::UNAUTHORIZED,
            "forbidden" => StatusCode::FORBIDDEN,
            "not_found" => StatusCode::NOT_FOUND,
            "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
            "conflict" => StatusCode::CONFLICT,
            "payload_too_large" | "module_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "transform_failed" | "transform_bad_output" => StatusCode::UNPROCESSABLE_ENTITY,
            "transform_trapped" | "transform_memory_limit" => StatusCode::INTERNAL_SERVER_ERROR,
            "transform_timeout" => StatusCode::GATEWAY_TIMEOUT,
            "unavailable" | "busy" | "transform_disabled" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new("not_found", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new("invalid_request", message)
    }

    fn internal(err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        ApiError::new("internal", "internal error; see the server log")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({"error": {"code": self.code, "message": self.message, "details": self.details}});
        (status, axum::Json(body)).into_response()
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(m) => ApiError::invalid(m),
            ServiceError::NotFound { .. } => ApiError::not_found(e.to_string()),
            ServiceError::UnknownFeature { ref refs, ref available } => {
                let details = json!({"unknown": refs, "available": available});
                ApiError::new("unknown_feature", e.to_string()).with_details(details)
            }
            ServiceError::Conflict(m) => ApiError::new("conflict", m),
            ServiceError::BreakerOpen(m) => ApiError::new("transform_disabled", m),
            ServiceError::Store(s) => s.into(),
            ServiceError::Runtime(r) => r.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable { backend, .. } => {
                tracing::warn!(error = %e, "backend unavailable");
                ApiError::new("unavailable", format!("{backend} is unavailable; retry shortly"))
                    .with_details(json!({"backend": backend}))
            }
            StoreError::Conflict(m) => ApiError::new("conflict", m),
            StoreError::Corrupt(_) => ApiError::internal(&e),
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        let code = match &e {
            RuntimeError::InvalidComponent(_) => "invalid_component",
            RuntimeError::ModuleTooLarge { .. } => "module_too_large",
            RuntimeError::Guest { .. } => "transform_failed",
            RuntimeError::Trap { .. } => "transform_trapped",
            RuntimeError::Timeout { .. } => "transform_timeout",
            RuntimeError::MemoryLimit { .. } => "transform_memory_limit",
            RuntimeError::BadOutput { .. } => "transform_bad_output",
            RuntimeError::Busy => "busy",
            RuntimeError::NotLoaded(_) | RuntimeError::Internal(_) => {
                return ApiError::internal(&e);
            }
        };
        ApiError::new(code, e.to_string())
    }
}

/// A JSON body extractor whose rejections use the error envelope, with the
/// parser's position so malformed bodies are easy to fix.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::new("unsupported_media_type", "expected a JSON body with content-type: application/json")
        }
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::new("invalid_json", format!("malformed JSON: {}", source_text(&e)))
        }
        JsonRejection::JsonDataError(e) => {
            ApiError::new("invalid_json", format!("invalid request body: {}", source_text(&e)))
        }
        JsonRejection::BytesRejection(e) => bytes_rejection(e),
        other => ApiError::new("invalid_json", other.body_text()),
    }
}

/// A body that could not be read: over the size limit, or broken off.
pub fn bytes_rejection(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new("payload_too_large", "request body is too large")
    } else {
        ApiError::invalid(e.body_text())
    }
}

/// Reads a JSON body taken as bytes (by handlers that also accept other
/// content types), with the parser's position in the error.
pub fn json_from_bytes<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::new("invalid_json", format!("malformed JSON: {e}")))
}

/// The innermost cause, which carries serde's line/column message.
fn source_text(e: &dyn std::error::Error) -> String {
    let mut err: &dyn std::error::Error = e;
    while let Some(next) = err.source() {
        err = next;
    }
    err.to_string()
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
