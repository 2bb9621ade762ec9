//! What the offline store reports about a feature group: how fresh its
//! entities are and how its features' values are distributed. Both are
//! computed by the store (SQL aggregates), never by loading the rows.

use super::Timestamp;
use serde::Serialize;

/// The freshness of a group's entities, judged by each entity's newest row.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FreshnessCounts {
    /// Entities with at least one row.
    pub entities: u64,
    pub fresh: u64,
    pub stale: u64,
    pub expired: u64,
    /// The newest and oldest of the entities' newest event times: the
    /// oldest one is the entity most behind.
    pub newest_event_timestamp: Option<Timestamp>,
    pub oldest_event_timestamp: Option<Timestamp>,
}

/// The distribution of one feature over every stored row of its group.
/// Numeric features get every field; others only `count` and `nulls`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FeatureStatistics {
    /// Rows with a value.
    pub count: u64,
    /// Rows without one (null, or the feature absent from the row).
    pub nulls: u64,
    pub mean: Option<f64>,
    /// Sample standard deviation (divisor n - 1), as pandas' `describe`.
    pub std: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Percentiles with linear interpolation between the closest ranks
    /// (numpy's default): rank `q * (n - 1)` of the sorted values.
    pub p50: Option<f64>,
    pub p95: Option<f64>,
}
