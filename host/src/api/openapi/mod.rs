//! `GET /openapi.json`: the OpenAPI 3.1 document of this API, written by
//! hand next to the handlers it describes.
//!
//! ## Layout
//! One file per concern, each with `paths()` and `schemas()` that
//! [`document`] merges: `health` (probes, metrics, this document),
//! `registry` (entities, sources, feature groups), `ingest` (data in),
//! `serving` (online reads, training data), `transforms` (versions,
//! lifecycle, limits, dry runs), `shadow` (shadow mode, promotion), `jobs`
//! (materialization), `monitoring` (freshness, statistics, audit),
//! `enrich` (prompt enrichment and its monitor) and `feast` (the Feast
//! feature-server endpoints). `common`
//! holds the operation builder and the shared shapes (error envelope,
//! values, fields, provenance).
//!
//! The unit tests (`tests.rs`) hold every part to the same rules: every
//! route the routers serve is documented, every operation has a summary
//! and responses, every body and 2xx answer a schema and an example that
//! conforms to it (`check.rs`), every `$ref` resolves, every path
//! parameter is declared. The end-to-end tests send the request examples
//! to a real server and check its answers against the schemas.

mod common;
mod enrich;
mod feast;
mod health;
mod ingest;
mod jobs;
mod monitoring;
mod registry;
mod serving;
mod shadow;
mod transforms;

#[cfg(test)]
mod check;
#[cfg(test)]
mod tests;

use crate::service::Wafer;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub fn router() -> Router<Wafer> {
    Router::new().route("/openapi.json", get(|| async { Json(document()) }))
}

/// `(path, path item)` or `(name, schema)` pairs, as each part answers them.
type Parts = Vec<(&'static str, Value)>;

/// (paths, schemas) per concern.
fn parts() -> Vec<(Parts, Parts)> {
    vec![
        (health::paths(), health::schemas()),
        (Vec::new(), common::schemas()),
        (registry::paths(), registry::schemas()),
        (ingest::paths(), ingest::schemas()),
        (serving::paths(), serving::schemas()),
        (transforms::paths(), transforms::schemas()),
        (shadow::paths(), shadow::schemas()),
        (jobs::paths(), jobs::schemas()),
        (monitoring::paths(), monitoring::schemas()),
        (enrich::paths(), enrich::schemas()),
        (feast::paths(), feast::schemas()),
    ]
}

/// The document. Paths use OpenAPI's `{param}` syntax, the same as the router.
pub fn document() -> Value {
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "wafer", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Feature store with WebAssembly transforms. Errors are {\"error\": {\"code\", \"message\", \"details\"}} (application/json) with a fitting 4xx/5xx status, malformed path and query parameters, unknown paths and unsupported methods included; timestamps are RFC 3339 strings in UTC; entity keys are JSON strings or integers."},
        "paths": {},
        "components": {"schemas": {}}
    });
    // Built part by part: one `json!` of everything exceeds the macro's
    // recursion limit.
    for (paths, schemas) in parts() {
        for (path, item) in paths {
            doc["paths"][path] = item;
        }
        for (name, schema) in schemas {
            doc["components"]["schemas"][name] = schema;
        }
    }
    common::add_security(&mut doc);
    common::add_parameter_errors(&mut doc);
    doc
}
