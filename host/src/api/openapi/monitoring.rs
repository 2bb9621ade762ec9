//! What admins watch: freshness, statistics (`api/monitoring.rs`,
//! `service/monitoring.rs`) and the audit trail (`api/audit.rs`).

use super::common::{Op, answer, name_param, object, query_param, schema_ref, timestamp, timestamp_or_null};
use serde_json::{Value, json};

pub(super) fn paths() -> Vec<(&'static str, Value)> {
    let freshness = Op::new(
        "freshness",
        "Per stored group: entities fresh / stale / expired by their newest row, newest and oldest event time",
    )
    .describe("On-demand groups are left out: computed per request, nothing is stored.")
    .respond("200", answer("Every stored group's freshness at as_of", "FreshnessReport"))
    .build();
    let statistics = Op::new("statistics", "Per feature over every stored row: count, nulls, mean, sample std, min, max, p50, p95 (numpy linear)")
        .describe("Numeric features get every figure; others only count and nulls. On-demand groups are refused with invalid_request: nothing is stored.")
        .respond("200", answer("The group's statistics", "GroupStatistics"))
        .build();
    let audit = Op::new("audit", "Registry and plugin changes, newest first (admin): who (token role and id, or anonymous), what, when")
        .param(query_param("limit", "Entries to answer, clamped to 1-1000 (other query parameters are refused)", json!({"type": "integer", "default": 100, "minimum": 0})))
        .respond("200", json!({"description": "Entries, newest first", "content": {"application/json": {
            "schema": {"type": "array", "items": schema_ref("AuditEntry")},
            "example": [{"at": "2026-11-21T12:00:00Z", "actor": "admin:1a2b3c4d", "action": "transform.activate", "target": "indicators",
                         "details": {"status": "active", "active_version": "1.1.0", "previous_version": "1.0.0"}}]}}}))
        .build();
    let compact = Op::new("compactOffline", "Compacts every source's and group's offline table (admin): small files rewritten into large ones, files superseded over an hour ago deleted")
        .describe("Flushes the write log first. Delta tables only; with --offline postgres the answer lists no table. The flusher also compacts a table by itself once flushes have left it 64 files.")
        .respond("200", answer("What was done to each table that has data", "CompactionReport"))
        .build();
    vec![
        ("/v1/offline/compact", json!({"post": compact})),
        ("/v1/freshness", json!({"get": freshness})),
        (
            "/v1/feature-groups/{name}/statistics",
            json!({"parameters": [name_param("feature group", "technical")], "get": statistics}),
        ),
        ("/v1/audit", json!({"get": audit})),
    ]
}

pub(super) fn schemas() -> Vec<(&'static str, Value)> {
    let count = |d: &str| json!({"type": "integer", "minimum": 0, "description": d});
    let figure = |d: &str| json!({"type": ["number", "null"], "description": d});
    let group_freshness = json!({"feature_group": "technical", "expected_interval_seconds": 3600, "max_age_seconds": 7200,
        "entities": 3, "fresh": 2, "stale": 1, "expired": 0,
        "newest_event_timestamp": "2024-05-01T12:00:00Z", "oldest_event_timestamp": "2024-05-01T10:30:00Z"});
    let compaction = json!({"table": "features/technical", "files_before": 40, "files_removed": 40, "files_added": 1, "files_deleted": 0});
    vec![
        (
            "CompactionReport",
            object(
                &["tables"],
                json!({"tables": {"type": "array", "items": schema_ref("Compaction")}}),
                Some(json!({"tables": [compaction.clone()]})),
            ),
        ),
        (
            "Compaction",
            object(
                &["table", "files_before", "files_removed", "files_added", "files_deleted"],
                json!({
                    "table": {"type": "string", "description": "sources/<name> or features/<name>, under --offline-url"},
                    "files_before": count("Data files before"),
                    "files_removed": count("Small files rewritten"),
                    "files_added": count("Files they were rewritten into"),
                    "files_deleted": count("Superseded files deleted from storage (those older than the retention)")}),
                Some(compaction),
            ),
        ),
        (
            "FreshnessReport",
            object(
                &["as_of", "groups"],
                json!({
            "as_of": timestamp("The server's now, which the statuses are judged at"),
            "groups": {"type": "array", "items": schema_ref("GroupFreshness")}}),
                Some(json!({"as_of": "2024-05-01T12:30:00Z", "groups": [group_freshness.clone()]})),
            ),
        ),
        (
            "GroupFreshness",
            object(
                &[
                    "feature_group",
                    "expected_interval_seconds",
                    "max_age_seconds",
                    "entities",
                    "fresh",
                    "stale",
                    "expired",
                    "newest_event_timestamp",
                    "oldest_event_timestamp",
                ],
                json!({
            "feature_group": {"type": "string"},
            "expected_interval_seconds": {"type": ["integer", "null"]},
            "max_age_seconds": {"type": ["integer", "null"]},
            "entities": count("Entities with at least one row"),
            "fresh": count("Entities whose newest row is at most expected_interval_seconds old"),
            "stale": count("Entities whose newest row is older than that, up to max_age_seconds"),
            "expired": count("Entities whose newest row is older than max_age_seconds"),
            "newest_event_timestamp": timestamp_or_null("The newest of the entities' newest event times"),
            "oldest_event_timestamp": timestamp_or_null("The oldest of the entities' newest event times: the entity most behind")}),
                Some(group_freshness),
            ),
        ),
        (
            "GroupStatistics",
            object(
                &["feature_group", "rows", "features"],
                json!({
            "feature_group": {"type": "string"},
            "rows": count("Stored rows (every version of every entity's history)"),
            "features": {"type": "object", "additionalProperties": schema_ref("FeatureStatistics"), "description": "Per feature, in the group's order"}}),
                Some(json!({"feature_group": "technical", "rows": 504, "features": {
                "sma_20": {"count": 466, "nulls": 38, "mean": 181.2, "std": 9.8, "min": 160.1, "max": 199.7, "p50": 180.9, "p95": 196.3}}})),
            ),
        ),
        (
            "FeatureStatistics",
            object(
                &["count", "nulls", "mean", "std", "min", "max", "p50", "p95"],
                json!({
            "count": count("Rows with a value"), "nulls": count("Rows without one (null, or the feature absent from the row)"),
            "mean": figure("null for non-numeric features or no values"),
            "std": figure("Sample standard deviation (n - 1)"),
            "min": figure("Smallest value"), "max": figure("Largest value"),
            "p50": figure("Percentile with linear interpolation (numpy's default); on the Delta tables exact up to 262,144 values of the feature, a t-digest estimate above"), "p95": figure("As p50")}),
                Some(
                    json!({"count": 466, "nulls": 38, "mean": 181.2, "std": 9.8, "min": 160.1, "max": 199.7, "p50": 180.9, "p95": 196.3}),
                ),
            ),
        ),
        (
            "AuditEntry",
            object(
                &["at", "actor", "action", "target", "details"],
                json!({
            "at": timestamp("When the change was made"),
            "actor": {"type": "string", "description": "role:<first 8 hex of the token's sha256>, anonymous without tokens, or system:<component> for the server's own rules"},
            "action": {"type": "string", "description": "<object>.<verb>, e.g. feature_group.put, transform.activate"},
            "target": {"type": "string", "description": "The object's name (name@version for a version)"},
            "details": {"description": "What changed, e.g. the new definition or the versions involved"}}),
                Some(
                    json!({"at": "2026-11-21T12:00:00Z", "actor": "admin:1a2b3c4d", "action": "entity.put", "target": "ticker",
                        "details": {"definition": {"name": "ticker", "join_keys": ["ticker"], "description": ""}}}),
                ),
            ),
        ),
    ]
}
