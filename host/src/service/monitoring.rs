//! What admins watch: how fresh each group's entities are, and how its
//! features' values are distributed. Both are computed by the offline
//! store, which holds every entity's history.

use super::{ServiceError, ServiceResult, Wafer};
use crate::model::{FeatureStatistics, FreshnessCounts, Producer};
use serde::Serialize;

/// `GET /v1/freshness`: one entry per stored (batch or push) group.
#[derive(Debug, Serialize)]
pub struct GroupFreshness {
    pub feature_group: String,
    pub expected_interval_seconds: Option<u64>,
    pub max_age_seconds: Option<u64>,
    #[serde(flatten)]
    pub counts: FreshnessCounts,
}

/// `GET /v1/feature-groups/{name}/statistics`.
#[derive(Debug, Serialize)]
pub struct GroupStatistics {
    pub feature_group: String,
    /// Stored rows (every version of every entity's history).
    pub rows: u64,
    /// Per feature, in the group's order.
    #[serde(serialize_with = "super::serving::ordered_pairs")]
    pub features: Vec<(String, FeatureStatistics)>,
}

impl Wafer {
    /// Freshness of every stored group, judged by each entity's newest row
    /// against the group's `expected_interval_seconds` (stale past it) and
    /// `max_age_seconds` (expired past it), at the clock's now.
    pub async fn freshness(&self) -> ServiceResult<Vec<GroupFreshness>> {
        let now = self.clock().now();
        let mut out = Vec::new();
        for group in self.list_feature_groups() {
            if matches!(group.producer, Producer::OnDemand { .. }) {
                continue; // computed per request: always fresh, nothing stored
            }
            let f = &group.freshness;
            let before = |secs: Option<u64>| secs.map(|s| now.plus_secs(-(s.min(i64::MAX as u64) as i64)));
            let counts = self
                .offline()
                .freshness(&group.name, before(f.expected_interval_seconds), before(f.max_age_seconds))
                .await?;
            out.push(GroupFreshness {
                feature_group: group.name.clone(),
                expected_interval_seconds: f.expected_interval_seconds,
                max_age_seconds: f.max_age_seconds,
                counts,
            });
        }
        Ok(out)
    }

    pub async fn statistics(&self, name: &str) -> ServiceResult<GroupStatistics> {
        let group = self.feature_group(name)?;
        if matches!(group.producer, Producer::OnDemand { .. }) {
            return Err(ServiceError::Invalid(format!(
                "feature group '{name}' is on-demand: its values are computed per request and never stored"
            )));
        }
        let features: Vec<(String, bool)> =
            group.features.iter().map(|f| (f.name.clone(), f.value_type.is_numeric())).collect();
        let stats = self.offline().feature_statistics(&group.name, &features).await?;
        let rows = stats.first().map_or(0, |s| s.count + s.nulls);
        Ok(GroupStatistics {
            feature_group: group.name.clone(),
            rows,
            features: features.into_iter().map(|(name, _)| name).zip(stats).collect(),
        })
    }
}
