//! The HTTP API (CONTRACT.md), one file per resource, each with a
//! `router()`. Handlers parse, call a `service` method and shape the answer;
//! they hold no logic of their own.

mod audit;
pub mod auth;
mod body_drain;
mod columnar;
mod enrich;
pub mod error;
mod feast;
mod features;
mod health;
mod historical;
mod ingest;
mod jobs;
mod monitoring;
mod offline;
mod openapi;
mod registry;
mod transforms;

use crate::service::Wafer;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use error::ApiError;

/// Response header of `POST /v1/features/historical` with its row count.
pub use historical::ROWS_HEADER as HISTORICAL_ROWS_HEADER;

/// The whole API with its state. Used by the server and by tests alike.
pub fn router(wafer: Wafer, max_body_bytes: usize, tokens: auth::Tokens) -> Router {
    Router::new()
        .merge(health::router())
        .merge(registry::router())
        .merge(ingest::router())
        .merge(features::router())
        .merge(historical::router())
        .merge(transforms::router())
        .merge(jobs::router())
        .merge(monitoring::router())
        .merge(offline::router())
        .merge(audit::router())
        .merge(enrich::router())
        .merge(feast::router())
        .merge(openapi::router())
        .fallback(|| async { ApiError::not_found("no such endpoint; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new("method_not_allowed", "method not allowed on this endpoint; see /openapi.json")
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(tokens, auth::require_token))
        .layer(axum::middleware::from_fn(body_drain::drain_unread_bodies))
        // Outside every route and the auth check: no answer leaves without
        // the envelope, whatever produced it.
        .layer(axum::middleware::from_fn(error::envelope_other_errors))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(wafer)
}
