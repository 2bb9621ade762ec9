//! Prompt enrichment (`POST /v1/enrich`): the features relevant to a
//! task type, fresh enough, in a compact block within a token budget, put
//! before an LLM prompt, so a cheaper model can answer as well as an
//! expensive one.
//!
//! What a request gets:
//! 1. The task's features ([`tasks`]) whose entity the request names.
//! 2. Their newest values: online store first, the offline store for
//!    online misses. No transform runs; enrichment reads what is stored.
//! 3. Values older than the freshness threshold, expired or missing are
//!    left out.
//! 4. The block ([`context`]) keeps the most important features that fit in
//!    `max_feature_tokens`.
//!
//! It never fails the prompt: if the stores take longer than `timeout_ms`
//! or fail, if no value is fresh, or if the task is not enabled (or the
//! [`monitor`] switched it off), the prompt comes back untouched with
//! `features_available: false` and the reason. Only a malformed request is
//! an error.

pub mod context;
pub mod monitor;
pub mod tasks;

pub use monitor::{EnrichStats, FeedbackError, MonitorSettings, Skip};
pub use tasks::{EnrichmentConfig, TaskConfig};

use super::{ServiceError, ServiceResult, Wafer};
use crate::model::registry::FreshnessStatus;
use crate::model::{EntityKey, FeatureGroup, FeatureRef, FeatureRow, Producer, Timestamp};
use context::ContextLine;
use monitor::{Admission, Monitor, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The enrichment tasks in effect and this host's monitor.
pub struct Enrichment {
    tasks: BTreeMap<String, TaskConfig>,
    monitor: Monitor,
}

impl Enrichment {
    pub fn new(config: EnrichmentConfig) -> Self {
        Enrichment { tasks: config.effective_tasks(), monitor: Monitor::new(config.monitor) }
    }

    pub fn tasks(&self) -> &BTreeMap<String, TaskConfig> {
        &self.tasks
    }

    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }
}

pub const DEFAULT_MAX_FEATURE_TOKENS: usize = 200;
pub const DEFAULT_TIMEOUT_MS: u64 = 200;
const MAX_FEATURE_TOKENS: usize = 8192;
const MAX_TIMEOUT_MS: u64 = 10_000;

/// `POST /v1/enrich`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichRequest {
    pub prompt: String,
    pub task_type: String,
    /// Entity type -> key: a single join key's value (`"u1"`, `42`), or an
    /// object of join keys (`{"user_id": "u1"}`).
    #[serde(default)]
    pub entities: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub max_feature_tokens: Option<usize>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Overrides the task's threshold for this request.
    #[serde(default)]
    pub freshness_threshold_seconds: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct EnrichResponse {
    pub enriched_prompt: String,
    /// Refs of the features in the block, most important first.
    pub features_used: Vec<String>,
    /// Estimated tokens of the block (see [`context`]); 0 when untouched.
    pub feature_tokens_added: usize,
    pub enrichment_latency_ms: f64,
    pub features_available: bool,
    /// Names this answer in `POST /v1/enrich/feedback`.
    pub enrichment_id: String,
    pub task_type: String,
    /// Why the prompt was not enriched; `null` when it was.
    pub skipped_reason: Option<Skip>,
    /// Task features not in the block, each with why.
    pub features_dropped: Vec<DroppedFeature>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DroppedFeature {
    pub feature: String,
    pub reason: DropReason,
}

#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The group or feature is not registered.
    NotRegistered,
    /// The request names no entity of the feature's group.
    NoEntity,
    /// On-demand groups are not read for enrichment: no transform runs.
    OnDemand,
    Missing,
    /// Older than the freshness threshold, or expired.
    Stale,
    /// Did not fit in `max_feature_tokens`.
    OverBudget,
}

/// `POST /v1/enrich/feedback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    #[serde(default)]
    pub enrichment_id: Option<String>,
    #[serde(default)]
    pub task_type: Option<String>,
    pub quality: f64,
}

#[derive(Debug, Serialize)]
pub struct FeedbackResponse {
    pub task_type: String,
    /// Whether the score counts as quality with features.
    pub with_features: bool,
}

/// `GET /v1/enrich/tasks`: the mapping in effect and the monitor settings.
#[derive(Debug, Serialize)]
pub struct TasksView<'a> {
    pub tasks: BTreeMap<&'a str, TaskView<'a>>,
    pub monitor: &'a MonitorSettings,
}

#[derive(Debug, Serialize)]
pub struct TaskView<'a> {
    pub enabled: bool,
    pub freshness_threshold_seconds: u64,
    pub description: &'a str,
    pub features: Vec<TaskFeatureView<'a>>,
}

/// A task's feature: its group's entity type, or why it cannot be used now.
#[derive(Debug, Serialize)]
pub struct TaskFeatureView<'a> {
    pub feature: &'a str,
    pub entity: Option<String>,
    pub usable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<DropReason>,
}

/// The task's features that apply to one request, by group.
struct Plan {
    /// (ref, group) in importance order.
    features: Vec<(FeatureRef, Arc<FeatureGroup>)>,
    /// The request's key of each group's entity.
    keys: BTreeMap<String, EntityKey>,
    dropped: Vec<DroppedFeature>,
}

impl Wafer {
    pub async fn enrich(&self, req: EnrichRequest) -> ServiceResult<EnrichResponse> {
        let started = Instant::now();
        let max_tokens = req.max_feature_tokens.unwrap_or(DEFAULT_MAX_FEATURE_TOKENS);
        if !(1..=MAX_FEATURE_TOKENS).contains(&max_tokens) {
            return Err(ServiceError::Invalid(format!(
                "max_feature_tokens must be from 1 to {MAX_FEATURE_TOKENS} (got {max_tokens})"
            )));
        }
        let timeout_ms = req.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(ServiceError::Invalid(format!(
                "timeout_ms must be from 1 to {MAX_TIMEOUT_MS} (got {timeout_ms})"
            )));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        let now = self.clock().now();
        let id = new_enrichment_id();
        let enrichment = self.enrichment();
        let mut answer = EnrichResponse {
            enriched_prompt: String::new(),
            features_used: Vec::new(),
            feature_tokens_added: 0,
            enrichment_latency_ms: 0.0,
            features_available: false,
            enrichment_id: id.clone(),
            task_type: req.task_type.clone(),
            skipped_reason: None,
            features_dropped: Vec::new(),
        };
        let task = enrichment.tasks().get(&req.task_type).filter(|t| t.enabled);
        let admission = match task {
            None => Admission::PassThrough(Skip::TaskNotEnabled),
            Some(_) => enrichment.monitor().admit(&req.task_type, now),
        };
        let mut store_error = None;
        if let (Some(task), Admission::Enrich | Admission::Probe) = (task, admission) {
            let plan = self.plan_enrichment(task, &req.entities)?;
            answer.features_dropped = plan.dropped.clone();
            if plan.features.is_empty() {
                let named_no_entity = plan.dropped.iter().any(|d| d.reason == DropReason::NoEntity);
                answer.skipped_reason = Some(if named_no_entity { Skip::NoEntities } else { Skip::NoFeatures });
            } else {
                let threshold = req.freshness_threshold_seconds.unwrap_or(task.freshness_threshold_seconds);
                match tokio::time::timeout_at(deadline, self.enrichment_rows(&plan, deadline)).await {
                    Err(_) => {
                        answer.skipped_reason = Some(Skip::Timeout);
                        store_error = Some(format!("no answer within {timeout_ms} ms"));
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(task = %req.task_type, error = %e, "enrichment could not read features");
                        answer.skipped_reason = Some(Skip::StoreUnavailable);
                        store_error = Some(e);
                    }
                    Ok(Ok(rows)) => {
                        let lines = self.select_lines(&plan, &rows, threshold, now, &mut answer.features_dropped);
                        let (block, kept) = context::fit_block(&lines, max_tokens);
                        answer.features_dropped.extend(
                            lines[kept..]
                                .iter()
                                .map(|l| DroppedFeature { feature: l.feature.clone(), reason: DropReason::OverBudget }),
                        );
                        if lines.is_empty() {
                            answer.skipped_reason = Some(Skip::NoFreshFeatures);
                        } else if kept == 0 {
                            answer.skipped_reason = Some(Skip::BudgetTooSmall);
                        } else {
                            answer.features_used = lines[..kept].iter().map(|l| l.feature.clone()).collect();
                            answer.feature_tokens_added = context::estimate_tokens(&block);
                            answer.features_available = true;
                            answer.enriched_prompt = block;
                        }
                    }
                }
            }
        } else if let Admission::PassThrough(skip) = admission {
            answer.skipped_reason = Some(skip);
        }
        answer.enriched_prompt.push_str(&req.prompt);
        answer.enrichment_latency_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        let outcome = Outcome {
            task: &req.task_type,
            features_used: answer.features_used.len(),
            latency_ms: answer.enrichment_latency_ms,
            skipped: answer.skipped_reason,
        };
        enrichment.monitor().record(&id, outcome, now, store_error.as_deref());
        Ok(answer)
    }

    pub fn enrichment_feedback(&self, req: FeedbackRequest) -> ServiceResult<FeedbackResponse> {
        let result =
            self.enrichment().monitor().feedback(req.enrichment_id.as_deref(), req.task_type.as_deref(), req.quality);
        match result {
            Ok((task_type, with_features)) => Ok(FeedbackResponse { task_type, with_features }),
            // Unknown, or evicted after the newest 100,000 enrichments.
            Err(FeedbackError::UnknownId(id)) => Err(ServiceError::not_found("enrichment id", id)),
            Err(e @ FeedbackError::AlreadyRated(_)) => Err(ServiceError::Conflict(e.to_string())),
            Err(FeedbackError::Invalid(m)) => Err(ServiceError::Invalid(m)),
        }
    }

    pub fn enrichment_stats(&self) -> EnrichStats {
        let enrichment = self.enrichment();
        let configured: Vec<(String, bool)> =
            enrichment.tasks().iter().map(|(name, task)| (name.clone(), task.enabled)).collect();
        enrichment.monitor().stats(&configured, self.clock().now())
    }

    /// The task mapping in effect, each feature with its group's entity
    /// type, or why it cannot be used now.
    pub fn enrichment_tasks(&self) -> TasksView<'_> {
        let enrichment = self.enrichment();
        let tasks = enrichment
            .tasks()
            .iter()
            .map(|(name, task)| {
                let features = task
                    .features
                    .iter()
                    .map(|text| match self.enrichment_group(text) {
                        Ok((_, group)) => TaskFeatureView {
                            feature: text,
                            entity: Some(group.entity.clone()),
                            usable: true,
                            reason: None,
                        },
                        Err(reason) => {
                            TaskFeatureView { feature: text, entity: None, usable: false, reason: Some(reason) }
                        }
                    })
                    .collect();
                let view = TaskView {
                    enabled: task.enabled,
                    freshness_threshold_seconds: task.freshness_threshold_seconds,
                    description: &task.description,
                    features,
                };
                (name.as_str(), view)
            })
            .collect();
        TasksView { tasks, monitor: enrichment.monitor().settings() }
    }

    /// A task ref's group, if it is a stored group with that feature.
    fn enrichment_group(&self, text: &str) -> Result<(FeatureRef, Arc<FeatureGroup>), DropReason> {
        let r = FeatureRef::parse(text).map_err(|_| DropReason::NotRegistered)?;
        let group = self.feature_group(&r.group).map_err(|_| DropReason::NotRegistered)?;
        if group.feature(&r.feature).is_none() {
            return Err(DropReason::NotRegistered);
        }
        if matches!(group.producer, Producer::OnDemand { .. }) {
            return Err(DropReason::OnDemand);
        }
        Ok((r, group))
    }

    /// Which of the task's features the request's entities select.
    fn plan_enrichment(
        &self,
        task: &TaskConfig,
        entities: &serde_json::Map<String, serde_json::Value>,
    ) -> ServiceResult<Plan> {
        let mut plan = Plan { features: Vec::new(), keys: BTreeMap::new(), dropped: Vec::new() };
        for text in &task.features {
            let (r, group) = match self.enrichment_group(text) {
                Ok(found) => found,
                Err(reason) => {
                    plan.dropped.push(DroppedFeature { feature: text.clone(), reason });
                    continue;
                }
            };
            let Some(json) = entities.get(&group.entity) else {
                plan.dropped.push(DroppedFeature { feature: text.clone(), reason: DropReason::NoEntity });
                continue;
            };
            if !plan.keys.contains_key(&group.entity) {
                let key = self.enrichment_key(&group.entity, json)?;
                plan.keys.insert(group.entity.clone(), key);
            }
            plan.features.push((r, group));
        }
        Ok(plan)
    }

    /// An entity's key from the request: one join key's value, or an
    /// object of every join key.
    fn enrichment_key(&self, entity: &str, json: &serde_json::Value) -> ServiceResult<EntityKey> {
        let join_keys = &self.entity(entity)?.join_keys;
        let object = match json {
            serde_json::Value::Object(o) => o.clone(),
            single if join_keys.len() == 1 => serde_json::Map::from_iter([(join_keys[0].clone(), single.clone())]),
            _ => {
                return Err(ServiceError::Invalid(format!(
                    "entities.{entity}: entity '{entity}' has join keys {}; give an object of them",
                    join_keys.join(", ")
                )));
            }
        };
        EntityKey::from_json(&object, join_keys).map_err(|e| ServiceError::Invalid(format!("entities.{entity}: {e}")))
    }

    /// The newest row of each planned group for the request's entity:
    /// online first, then the offline store for online misses. Online store
    /// errors are failures (the monitor counts them); an offline store that
    /// fails or is late only costs the misses.
    async fn enrichment_rows(
        &self,
        plan: &Plan,
        deadline: tokio::time::Instant,
    ) -> Result<BTreeMap<String, FeatureRow>, String> {
        let mut groups: Vec<&Arc<FeatureGroup>> = Vec::new();
        for (_, group) in &plan.features {
            if !groups.iter().any(|g| g.name == group.name) {
                groups.push(group);
            }
        }
        let reads = groups.iter().map(|group| async move {
            let key = std::slice::from_ref(&plan.keys[&group.entity]);
            let online = self.online().read(&group.name, key).await.map_err(|e| e.to_string())?;
            if let Some(row) = online.into_iter().next().flatten() {
                return Ok::<_, String>(Some(row));
            }
            match tokio::time::timeout_at(deadline, self.offline().latest_feature_rows(&group.name, key)).await {
                Ok(Ok(rows)) => Ok(rows.into_iter().next().flatten()),
                Ok(Err(e)) => {
                    tracing::warn!(group = %group.name, error = %e, "enrichment: offline store failed; a miss stays a miss");
                    Ok(None)
                }
                Err(_) => Ok(None),
            }
        });
        let mut rows = BTreeMap::new();
        for (group, row) in groups.iter().zip(futures_util::future::join_all(reads).await) {
            if let Some(row) = row? {
                rows.insert(group.name.clone(), row);
            }
        }
        Ok(rows)
    }

    /// The block's candidate lines, most important first: each planned
    /// feature with a value no older than `threshold` seconds and not
    /// expired. Left-out features are added to `dropped`.
    fn select_lines(
        &self,
        plan: &Plan,
        rows: &BTreeMap<String, FeatureRow>,
        threshold: u64,
        now: Timestamp,
        dropped: &mut Vec<DroppedFeature>,
    ) -> Vec<ContextLine> {
        // A feature name used by two selected groups is shown qualified.
        let ambiguous = |name: &str| plan.features.iter().filter(|(r, _)| r.feature == name).count() > 1;
        let mut lines = Vec::new();
        for (r, group) in &plan.features {
            let feature = r.to_string();
            let Some(row) = rows.get(&group.name) else {
                dropped.push(DroppedFeature { feature, reason: DropReason::Missing });
                continue;
            };
            let value = row.values.get(&r.feature).filter(|v| !v.is_null());
            let Some(value) = value else {
                dropped.push(DroppedFeature { feature, reason: DropReason::Missing });
                continue;
            };
            let age = row.event_ts.seconds_until(now);
            if age > threshold as f64 || group.freshness.status(row.event_ts, now) == FreshnessStatus::Expired {
                dropped.push(DroppedFeature { feature, reason: DropReason::Stale });
                continue;
            }
            let name = if ambiguous(&r.feature) { format!("{}.{}", r.group, r.feature) } else { r.feature.clone() };
            lines.push(ContextLine::new(&feature, &name, value));
        }
        lines
    }
}

/// A random id, `enr_` and 24 hex digits.
fn new_enrichment_id() -> String {
    let bytes: [u8; 12] = rand::random();
    format!("enr_{}", hex::encode(bytes))
}
