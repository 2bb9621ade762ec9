//! The one error type of the HTTP API. Every error body is
//! `{"error": {"code", "message", "details"}}`; `code` is a stable
//! snake_case string clients branch on, mapped to a status in one table
//! ([`ApiError::status`]). Internal failures are logged in full and answered
//! with a generic message, never with internals.
//!
//! Handlers take the extractors defined here ([`Json`], [`Query`],
//! [`Path`], [`Bytes`]) instead of axum's, whose rejections are plain text;
//! [`envelope_other_errors`] turns any other non-JSON error answer into the
//! envelope, so none leaves the server.

use crate::runtime::RuntimeError;
use crate::service::ServiceError;
use crate::store::StoreError;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
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
            "invalid_json" | "invalid_request" | "invalid_timestamp" | "unknown_feature" | "invalid_component" => {
                StatusCode::BAD_REQUEST
            }
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

    pub fn internal(err: &dyn std::fmt::Display) -> Self {
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
            ServiceError::InvalidTimestamp { row, column, message } => {
                ApiError::new("invalid_timestamp", message).with_details(json!({"row": row, "column": column}))
            }
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
/// content types), with the parser's position in the error and, for a
/// body of the wrong shape, the path to the part that is wrong
/// (`rows[3].entity: ...`), as the [`Json`] extractor reports them.
pub fn json_from_bytes<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: &serde_json::Error| ApiError::new("invalid_json", format!("malformed JSON: {e}"));
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let (path, inner) = (e.path().to_string(), e.inner());
        if inner.is_data() {
            ApiError::new("invalid_json", format!("invalid request body: {path}: {inner}"))
        } else {
            malformed(inner)
        }
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

/// The innermost cause, which carries serde's line/column message.
fn source_text(e: &dyn std::error::Error) -> String {
    let mut err: &dyn std::error::Error = e;
    while let Some(next) = err.source() {
        err = next;
    }
    err.to_string()
}

/// A query-string extractor whose rejections use the error envelope: 400
/// `invalid_request` naming the parameter (`details.parameter`) and what
/// was wrong with it.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri).map(|q| Query(q.0)).map_err(query_rejection)
    }
}

fn query_rejection(r: QueryRejection) -> ApiError {
    // axum parses with serde_path_to_error, so the failing key is known.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&r);
    while let Some(e) = cause {
        if let Some(e) = e.downcast_ref::<serde_path_to_error::Error<serde::de::value::Error>>() {
            let parameter = e.path().to_string();
            let problem = e.inner().to_string();
            // The root ("." or "?"): a problem of the whole query string,
            // such as a parameter given twice.
            return if parameter.is_empty() || parameter == "?" || parameter == "." {
                ApiError::invalid(format!("invalid query string: {problem}")).with_details(json!({"in": "query"}))
            } else {
                ApiError::invalid(format!("invalid query parameter '{parameter}': {problem}"))
                    .with_details(json!({"in": "query", "parameter": parameter}))
            };
        }
        cause = e.source();
    }
    ApiError::invalid(format!("invalid query string: {}", r.body_text())).with_details(json!({"in": "query"}))
}

/// A path-parameter extractor whose rejections use the error envelope: 400
/// `invalid_request` naming the parameter, or `internal` for a handler
/// that asks for parameters its route does not have.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(r: PathRejection) -> ApiError {
    let PathRejection::FailedToDeserializePathParams(e) = r else {
        return ApiError::internal(&r);
    };
    if e.status().is_server_error() {
        return ApiError::internal(&e);
    }
    let (parameter, problem) = match e.kind() {
        ErrorKind::InvalidUtf8InPathParam { key } => {
            (Some(key.as_str()), "not valid UTF-8 once percent-decoded".into())
        }
        ErrorKind::ParseErrorAtKey { key, value, expected_type } => {
            (Some(key.as_str()), format!("'{value}' is not a valid {expected_type}"))
        }
        ErrorKind::DeserializeError { key, value, message } => (Some(key.as_str()), format!("'{value}': {message}")),
        ErrorKind::ParseError { value, expected_type } => (None, format!("'{value}' is not a valid {expected_type}")),
        other => (None, other.to_string()),
    };
    let mut details = json!({"in": "path"});
    if let Some(p) = parameter {
        details["parameter"] = json!(p);
    }
    let message = match parameter {
        Some(p) => format!("invalid path parameter '{p}': {problem}"),
        None => format!("invalid path parameter: {problem}"),
    };
    ApiError::invalid(message).with_details(details)
}

/// A raw body extractor whose rejections use the error envelope
/// (`payload_too_large` over the body limit).
pub struct Bytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for Bytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::body::Bytes::from_request(req, state).await.map(Bytes).map_err(bytes_rejection)
    }
}

/// The last line of defence behind the wrapped extractors: an error answer
/// that is not JSON (the rejection of an extractor no wrapper covers, a
/// layer's own answer) becomes the envelope, with the code of its status.
/// A 4xx keeps its text as the message; a 5xx's text goes to the log only.
/// The status becomes its code's (a 422 or 408 of unknown origin is 400
/// `invalid_request`), so the answer matches the documented table.
pub async fn envelope_other_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers().get(header::CONTENT_TYPE))
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 << 10).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let code = match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_client_error() => "invalid_request",
        _ => "internal",
    };
    let err = if status.is_server_error() {
        tracing::error!(%status, body = %text, "a non-JSON error answer was replaced by the envelope");
        let message =
            if code == "unavailable" { "unavailable; retry shortly" } else { "internal error; see the server log" };
        ApiError::new(code, message)
    } else if text.is_empty() {
        ApiError::new(code, status.canonical_reason().unwrap_or("request refused").to_lowercase())
    } else {
        ApiError::new(code, text)
    };
    let mut out = err.into_response();
    // An answer's own headers (e.g. Allow on a 405) stay.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out
}

/// `application/json` or `application/*+json`, parameters aside.
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(text) = content_type.and_then(|v| v.to_str().ok()) else { return false };
    let mime = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // only parsed
    struct Params {
        limit: Option<u32>,
        wait: Option<bool>,
    }

    fn query(uri: &str) -> ApiError {
        let uri: axum::http::Uri = uri.parse().expect("a URI");
        match axum::extract::Query::<Params>::try_from_uri(&uri) {
            Ok(_) => panic!("{uri} parsed"),
            Err(r) => query_rejection(r),
        }
    }

    #[test]
    fn query_rejections_name_the_parameter_and_the_problem() {
        // Fails if axum stops parsing with serde_path_to_error (or uses
        // another version of it than ours): the key would be lost.
        let e = query("/x?limit=-1");
        assert_eq!((e.code, e.status()), ("invalid_request", StatusCode::BAD_REQUEST));
        assert_eq!(e.details, json!({"in": "query", "parameter": "limit"}));
        assert!(e.message.contains("'limit'") && e.message.contains("invalid digit"), "{}", e.message);
        let e = query("/x?wait=maybe");
        assert_eq!(e.details["parameter"], json!("wait"), "{}", e.message);
        let e = query("/x?limit=1&limit=2");
        assert_eq!(e.details, json!({"in": "query"}), "{}", e.message);
        assert_eq!(e.message, "invalid query string: duplicate field `limit`");
        let e = query("/x?color=red");
        assert_eq!(e.details, json!({"in": "query", "parameter": "color"}));
        assert!(e.message.contains("unknown field `color`"), "{}", e.message);
    }

    async fn answer(router: Router, method: &str, uri: &str) -> (StatusCode, String, serde_json::Value) {
        let req = Request::builder().method(method).uri(uri).body(Body::empty()).expect("a request");
        let resp = router.layer(axum::middleware::from_fn(envelope_other_errors)).oneshot(req).await.expect("served");
        let status = resp.status();
        let content_type =
            resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("a body");
        (status, content_type, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn the_wrapped_extractors_and_the_safety_net_answer_the_envelope() {
        // Added in a fold: the OpenAPI tests take `.route("...")` calls
        // under src/api for routes the server serves.
        let routes: [(&str, axum::routing::MethodRouter); 4] = [
            ("/p/{name}", get(|Path(name): Path<String>| async move { name })),
            ("/q", get(|Query(_): Query<Params>| async { "ok" })),
            // An extractor without a wrapper: its plain-text 500 is replaced.
            ("/e", get(|_: axum::Extension<u8>| async { "ok" })),
            ("/t", get(|| async { (StatusCode::CONFLICT, "taken") })),
        ];
        let router = routes.into_iter().fold(Router::new(), |router, (path, method)| router.route(path, method));

        let (status, content_type, body) = answer(router.clone(), "GET", "/p/%FF").await;
        assert_eq!((status, content_type.as_str()), (StatusCode::BAD_REQUEST, "application/json"));
        assert_eq!(body["error"]["details"], json!({"in": "path", "parameter": "name"}), "{body}");

        let (status, _, body) = answer(router.clone(), "GET", "/q?limit=x").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["details"]["parameter"], json!("limit"), "{body}");

        let (status, content_type, body) = answer(router.clone(), "GET", "/e").await;
        assert_eq!((status, content_type.as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "application/json"));
        assert_eq!(body["error"]["code"], json!("internal"), "{body}");
        assert!(!body.to_string().contains("Extension"), "internals leaked: {body}");

        let (status, _, body) = answer(router.clone(), "GET", "/t").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"], json!({"code": "conflict", "message": "taken", "details": {}}));

        // axum's own 405 (no fallback here) keeps its Allow header.
        let req = Request::builder().method("POST").uri("/t").body(Body::empty()).expect("a request");
        let resp = router.layer(axum::middleware::from_fn(envelope_other_errors)).oneshot(req).await.expect("served");
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()), Some("application/json"));
        assert!(resp.headers().get(header::ALLOW).is_some(), "{:?}", resp.headers());
    }

    /// The handlers take the wrapped extractors; axum's own answer
    /// rejections in plain text.
    #[test]
    fn no_handler_imports_axums_rejecting_extractors() {
        let api = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join("api");
        let mut offenders = Vec::new();
        for entry in std::fs::read_dir(&api).expect("reading src/api") {
            let path = entry.expect("an entry").path();
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("error.rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("reading a source file");
            for line in source.lines().filter(|l| l.trim_start().starts_with("use axum::extract")) {
                for name in ["Query", "Path", "Form", "RawForm", "MatchedPath", "RawPathParams", "Multipart"] {
                    if line.split(|c: char| !c.is_alphanumeric()).any(|word| word == name) {
                        offenders.push(format!("{}: {}", path.display(), line.trim()));
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "use the wrappers of api/error.rs instead:\n{}", offenders.join("\n"));
    }
}
