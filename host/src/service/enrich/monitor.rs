//! The enrichment monitor: what enrichment does per task type, whether it
//! helps, and when to stop doing it.
//!
//! Every `POST /v1/enrich` is recorded under an enrichment id. Clients send
//! a quality score (0 to 1) for an id, or for an unenriched baseline of a
//! task type, so the monitor compares quality with and without features
//! over the last [`MonitorSettings::window`] scores of each.
//!
//! Enrichment switches itself off for a task type, and the stats say why:
//! - `store_failing`: [`MonitorSettings::store_failures`] enrichments in a
//!   row found the online store failing or too slow. Prompts pass through
//!   at once instead of waiting out their timeout. After
//!   [`MonitorSettings::retry_after_seconds`] one request tries the store
//!   again; success switches enrichment back on.
//! - `no_quality_gain`: with at least [`MonitorSettings::min_samples`]
//!   scores on each side, quality with features is not better than without
//!   by more than [`MonitorSettings::min_quality_gain`]. One request in
//!   [`MonitorSettings::probe_every`] is still enriched, so the comparison
//!   goes on and enrichment comes back by itself once it helps again.
//!
//! The state is this host's, kept in memory: several hosts each decide on
//! what they have seen, and a restart starts over.

use crate::model::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorSettings {
    /// Scores needed on each side before quality can switch a task off.
    pub min_samples: usize,
    /// How much better (in mean score) enriched answers must be.
    pub min_quality_gain: f64,
    /// Recent scores kept per side and task.
    pub window: usize,
    /// Failing enrichments in a row that switch a task off.
    pub store_failures: u32,
    /// How long a task stays off after store failures.
    pub retry_after_seconds: u64,
    /// While off for no quality gain, every n-th request is enriched.
    pub probe_every: u64,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            min_samples: 20,
            min_quality_gain: 0.0,
            window: 200,
            store_failures: 5,
            retry_after_seconds: 30,
            probe_every: 10,
        }
    }
}

impl MonitorSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.min_samples == 0 || self.window < self.min_samples {
            return Err(format!("need 1 <= min_samples <= window (got {} and {})", self.min_samples, self.window));
        }
        if !self.min_quality_gain.is_finite() || !(-1.0..=1.0).contains(&self.min_quality_gain) {
            return Err(format!("min_quality_gain must be within [-1, 1] (got {})", self.min_quality_gain));
        }
        if self.store_failures == 0 || self.probe_every == 0 {
            return Err("store_failures and probe_every must be at least 1".into());
        }
        Ok(())
    }
}

/// Why a request was not enriched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Skip {
    /// No such task type, or it is not enabled.
    TaskNotEnabled,
    /// Switched off after store failures.
    StoreFailing,
    /// Switched off: features did not improve quality.
    NoQualityGain,
    /// The features took longer than the request's timeout.
    Timeout,
    /// The online store failed or answered too late.
    StoreUnavailable,
    /// The request names no entity the task's features belong to.
    NoEntities,
    /// None of the task's features is registered as a stored group.
    NoFeatures,
    /// Every value was missing or older than the freshness threshold.
    NoFreshFeatures,
    /// Not even the most important feature fits in `max_feature_tokens`.
    BudgetTooSmall,
}

/// What the monitor lets a request do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Enrich,
    /// Enrich although quality switched the task off, to keep measuring.
    Probe,
    PassThrough(Skip),
}

/// How an enrichment attempt ended, as the monitor counts it.
pub struct Outcome<'a> {
    pub task: &'a str,
    /// Features added (0 when passed through).
    pub features_used: usize,
    pub latency_ms: f64,
    pub skipped: Option<Skip>,
}

#[derive(Default)]
struct TaskState {
    requests: u64,
    enriched: u64,
    features_used: u64,
    latency_ms: f64,
    with_features: Scores,
    without_features: Scores,
    store_failures_in_row: u32,
    /// Off for store failures until then; one trial request reopens.
    store_off_until: Option<Timestamp>,
    last_store_error: Option<String>,
    quality_off: bool,
    /// Requests seen while off for quality (for probing).
    quality_off_requests: u64,
}

#[derive(Default)]
struct Scores {
    recent: VecDeque<f64>,
    total: u64,
}

impl Scores {
    fn push(&mut self, score: f64, window: usize) {
        if self.recent.len() == window {
            self.recent.pop_front();
        }
        self.recent.push_back(score);
        self.total += 1;
    }

    fn mean(&self) -> Option<f64> {
        (!self.recent.is_empty()).then(|| self.recent.iter().sum::<f64>() / self.recent.len() as f64)
    }
}

/// A recorded enrichment, until its feedback arrives or it is evicted.
struct Record {
    task: String,
    enriched: bool,
    rated: bool,
}

/// Enrichment ids remembered for feedback; the oldest are forgotten first.
const MAX_RECORDS: usize = 100_000;

/// Why feedback was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeedbackError {
    #[error("enrichment id '{0}' is unknown (or so old it was forgotten)")]
    UnknownId(String),
    #[error("feedback for enrichment '{0}' was already recorded")]
    AlreadyRated(String),
    #[error("{0}")]
    Invalid(String),
}

pub struct Monitor {
    settings: MonitorSettings,
    tasks: Mutex<HashMap<String, TaskState>>,
    records: Mutex<(HashMap<String, Record>, VecDeque<String>)>,
    store: Mutex<StoreHealth>,
}

#[derive(Default, Clone, Serialize)]
pub struct StoreHealth {
    pub available: bool,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    pub last_failure_at: Option<Timestamp>,
}

impl Monitor {
    pub fn new(settings: MonitorSettings) -> Monitor {
        Monitor {
            settings,
            tasks: Mutex::default(),
            records: Mutex::default(),
            store: Mutex::new(StoreHealth { available: true, ..StoreHealth::default() }),
        }
    }

    pub fn settings(&self) -> &MonitorSettings {
        &self.settings
    }

    /// Decides whether a request of an enabled task is enriched. A task off
    /// for store failures lets one trial through once its time is up (and
    /// pushes the time on, so only one request waits on the store).
    pub fn admit(&self, task: &str, now: Timestamp) -> Admission {
        let mut tasks = self.tasks.lock().expect("monitor lock");
        let state = tasks.entry(task.to_string()).or_default();
        if let Some(until) = state.store_off_until {
            if now < until {
                return Admission::PassThrough(Skip::StoreFailing);
            }
            state.store_off_until = Some(now.plus_secs(self.settings.retry_after_seconds as i64));
            return Admission::Enrich;
        }
        if state.quality_off {
            state.quality_off_requests += 1;
            return if state.quality_off_requests.is_multiple_of(self.settings.probe_every) {
                Admission::Probe
            } else {
                Admission::PassThrough(Skip::NoQualityGain)
            };
        }
        Admission::Enrich
    }

    /// Counts a finished request and remembers it under `id` for feedback.
    /// Store failures (`StoreUnavailable`, `Timeout`) count towards
    /// switching the task off; any answer from the store resets the count.
    pub fn record(&self, id: &str, outcome: Outcome<'_>, now: Timestamp, store_error: Option<&str>) {
        {
            let mut tasks = self.tasks.lock().expect("monitor lock");
            let state = tasks.entry(outcome.task.to_string()).or_default();
            state.requests += 1;
            state.latency_ms += outcome.latency_ms;
            if outcome.skipped.is_none() {
                state.enriched += 1;
                state.features_used += outcome.features_used as u64;
            }
            match outcome.skipped {
                Some(Skip::StoreUnavailable | Skip::Timeout) => {
                    state.store_failures_in_row += 1;
                    state.last_store_error = store_error.map(str::to_string);
                    if state.store_failures_in_row >= self.settings.store_failures {
                        if state.store_off_until.is_none() {
                            tracing::warn!(
                                task = outcome.task,
                                failures = state.store_failures_in_row,
                                retry_after_seconds = self.settings.retry_after_seconds,
                                "enrichment switched off for this task: the feature store keeps failing"
                            );
                        }
                        state.store_off_until = Some(now.plus_secs(self.settings.retry_after_seconds as i64));
                    }
                }
                Some(
                    Skip::TaskNotEnabled
                    | Skip::StoreFailing
                    | Skip::NoQualityGain
                    | Skip::NoEntities
                    | Skip::NoFeatures,
                ) => {}
                Some(Skip::NoFreshFeatures | Skip::BudgetTooSmall) | None => {
                    if state.store_off_until.is_some() {
                        tracing::info!(task = outcome.task, "enrichment switched back on: the feature store answers");
                    }
                    state.store_failures_in_row = 0;
                    state.store_off_until = None;
                }
            }
        }
        self.record_store(&outcome, now, store_error);
        let mut records = self.records.lock().expect("monitor lock");
        let (by_id, order) = &mut *records;
        if order.len() == MAX_RECORDS
            && let Some(oldest) = order.pop_front()
        {
            by_id.remove(&oldest);
        }
        let record = Record { task: outcome.task.to_string(), enriched: outcome.skipped.is_none(), rated: false };
        by_id.insert(id.to_string(), record);
        order.push_back(id.to_string());
    }

    fn record_store(&self, outcome: &Outcome<'_>, now: Timestamp, error: Option<&str>) {
        let mut store = self.store.lock().expect("monitor lock");
        match outcome.skipped {
            Some(Skip::StoreUnavailable | Skip::Timeout) => {
                store.available = false;
                store.consecutive_failures += 1;
                store.last_error = error.map(str::to_string);
                store.last_failure_at = Some(now);
            }
            Some(Skip::NoFreshFeatures | Skip::BudgetTooSmall) | None => {
                store.available = true;
                store.consecutive_failures = 0;
            }
            Some(_) => {}
        }
    }

    /// Records a quality score: for an enrichment id (with or without
    /// features, as that request was answered), or with `task` alone for a
    /// baseline the client ran without enrichment. Answers the task and
    /// whether the score counted as enriched.
    pub fn feedback(
        &self,
        id: Option<&str>,
        task: Option<&str>,
        quality: f64,
    ) -> Result<(String, bool), FeedbackError> {
        if !quality.is_finite() || !(0.0..=1.0).contains(&quality) {
            return Err(FeedbackError::Invalid(format!("quality must be a number from 0 to 1 (got {quality})")));
        }
        let (task, enriched) = match (id, task) {
            (Some(id), given) => {
                let mut records = self.records.lock().expect("monitor lock");
                let record = records.0.get_mut(id).ok_or_else(|| FeedbackError::UnknownId(id.to_string()))?;
                if given.is_some_and(|t| t != record.task) {
                    return Err(FeedbackError::Invalid(format!(
                        "enrichment '{id}' was for task type '{}', not '{}'",
                        record.task,
                        given.unwrap_or_default()
                    )));
                }
                if record.rated {
                    return Err(FeedbackError::AlreadyRated(id.to_string()));
                }
                record.rated = true;
                (record.task.clone(), record.enriched)
            }
            (None, Some(task)) => (task.to_string(), false),
            (None, None) => {
                return Err(FeedbackError::Invalid(
                    "give an enrichment_id, or a task_type for a baseline answered without enrichment".into(),
                ));
            }
        };
        let mut tasks = self.tasks.lock().expect("monitor lock");
        let state = tasks.entry(task.clone()).or_default();
        let window = self.settings.window;
        if enriched {
            state.with_features.push(quality, window);
        } else {
            state.without_features.push(quality, window);
        }
        self.review_quality(&task, state);
        Ok((task, enriched))
    }

    /// Switches a task off (or back on) by the quality comparison.
    fn review_quality(&self, task: &str, state: &mut TaskState) {
        let Some(gain) = quality_gain(state, self.settings.min_samples) else { return };
        let off = gain <= self.settings.min_quality_gain;
        if off != state.quality_off {
            if off {
                tracing::warn!(task, gain, "enrichment switched off for this task: features do not improve quality");
            } else {
                tracing::info!(task, gain, "enrichment switched back on: features improve quality");
            }
            state.quality_off = off;
            state.quality_off_requests = 0;
        }
    }

    /// The stats of `GET /v1/enrich/stats`, over `tasks` (the configured
    /// task types and whether each is enabled) plus any task type seen.
    pub fn stats(&self, configured: &[(String, bool)], now: Timestamp) -> EnrichStats {
        let tasks = self.tasks.lock().expect("monitor lock");
        let mut names: Vec<&str> = configured.iter().map(|(n, _)| n.as_str()).collect();
        names.extend(tasks.keys().map(String::as_str).filter(|n| !configured.iter().any(|(c, _)| c == n)));
        names.sort();
        let empty = TaskState::default();
        let mut total = TaskTotals::default();
        let per_task = names
            .into_iter()
            .map(|name| {
                let state = tasks.get(name).unwrap_or(&empty);
                total.add(state);
                let enabled = configured.iter().find(|(n, _)| n == name).map(|(_, e)| *e);
                self.task_stats(name, enabled, state, now)
            })
            .collect();
        let store = self.store.lock().expect("monitor lock").clone();
        EnrichStats {
            total_enrichments: total.requests,
            successful_enrichments: total.enriched,
            avg_features_used: ratio(total.features_used as f64, total.enriched),
            avg_latency_ms: ratio(total.latency_ms, total.requests),
            store,
            tasks: per_task,
        }
    }

    fn task_stats(&self, name: &str, enabled: Option<bool>, state: &TaskState, now: Timestamp) -> TaskStats {
        let off_for_store = state.store_off_until.filter(|until| now < *until);
        let (active, reason, detail) = if enabled != Some(true) {
            let why =
                if enabled.is_none() { "no such task type is configured" } else { "disabled in the serving config" };
            (false, Some(Skip::TaskNotEnabled), why.to_string())
        } else if let Some(until) = off_for_store {
            let detail = format!(
                "{} enrichments in a row found the feature store failing (last: {}); retrying at {}",
                state.store_failures_in_row,
                state.last_store_error.as_deref().unwrap_or("no detail"),
                until.to_rfc3339()
            );
            (false, Some(Skip::StoreFailing), detail)
        } else if state.quality_off {
            let gain = quality_gain(state, self.settings.min_samples).unwrap_or(0.0);
            let detail = format!(
                "mean quality with features exceeds without by {gain:.4}, not more than {}; 1 request in {} is \
                 still enriched to keep measuring",
                self.settings.min_quality_gain, self.settings.probe_every
            );
            (false, Some(Skip::NoQualityGain), detail)
        } else {
            (true, None, String::new())
        };
        TaskStats {
            task_type: name.to_string(),
            enabled: enabled == Some(true),
            active,
            disabled_reason: reason,
            disabled_detail: (!detail.is_empty()).then_some(detail),
            retry_at: off_for_store,
            requests: state.requests,
            enriched: state.enriched,
            avg_features_used: ratio(state.features_used as f64, state.enriched),
            avg_latency_ms: ratio(state.latency_ms, state.requests),
            quality: QualityStats {
                with_features: side(&state.with_features),
                without_features: side(&state.without_features),
                delta: match (state.with_features.mean(), state.without_features.mean()) {
                    (Some(a), Some(b)) => Some(a - b),
                    _ => None,
                },
            },
        }
    }
}

/// Mean with features minus mean without, once both have `min` scores.
fn quality_gain(state: &TaskState, min: usize) -> Option<f64> {
    if state.with_features.recent.len() < min || state.without_features.recent.len() < min {
        return None;
    }
    Some(state.with_features.mean()? - state.without_features.mean()?)
}

fn side(scores: &Scores) -> QualitySide {
    QualitySide { samples: scores.recent.len(), total: scores.total, mean: scores.mean() }
}

fn ratio(sum: f64, count: u64) -> Option<f64> {
    (count > 0).then(|| sum / count as f64)
}

#[derive(Default)]
struct TaskTotals {
    requests: u64,
    enriched: u64,
    features_used: u64,
    latency_ms: f64,
}

impl TaskTotals {
    fn add(&mut self, state: &TaskState) {
        self.requests += state.requests;
        self.enriched += state.enriched;
        self.features_used += state.features_used;
        self.latency_ms += state.latency_ms;
    }
}

/// `GET /v1/enrich/stats`.
#[derive(Serialize)]
pub struct EnrichStats {
    /// Requests to `/v1/enrich`, enriched or not.
    pub total_enrichments: u64,
    /// Requests answered with at least one feature.
    pub successful_enrichments: u64,
    pub avg_features_used: Option<f64>,
    pub avg_latency_ms: Option<f64>,
    /// The online store as enrichment last found it.
    pub store: StoreHealth,
    pub tasks: Vec<TaskStats>,
}

#[derive(Serialize)]
pub struct TaskStats {
    pub task_type: String,
    /// Configured and enabled in the serving config.
    pub enabled: bool,
    /// Enriching now: enabled and not switched off by the monitor.
    pub active: bool,
    pub disabled_reason: Option<Skip>,
    pub disabled_detail: Option<String>,
    /// When a task off for store failures tries the store again.
    pub retry_at: Option<Timestamp>,
    pub requests: u64,
    pub enriched: u64,
    pub avg_features_used: Option<f64>,
    pub avg_latency_ms: Option<f64>,
    pub quality: QualityStats,
}

#[derive(Serialize)]
pub struct QualityStats {
    pub with_features: QualitySide,
    pub without_features: QualitySide,
    /// Mean with features minus mean without, over the recent windows.
    pub delta: Option<f64>,
}

#[derive(Serialize)]
pub struct QualitySide {
    /// Scores in the recent window (the mean's basis).
    pub samples: usize,
    /// Scores ever received.
    pub total: u64,
    pub mean: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> MonitorSettings {
        MonitorSettings {
            min_samples: 3,
            window: 4,
            store_failures: 2,
            retry_after_seconds: 30,
            probe_every: 3,
            ..Default::default()
        }
    }

    fn outcome(task: &str, skipped: Option<Skip>) -> Outcome<'_> {
        Outcome { task, features_used: if skipped.is_none() { 2 } else { 0 }, latency_ms: 1.0, skipped }
    }

    #[test]
    fn store_failures_in_a_row_switch_a_task_off_until_a_trial_succeeds() {
        let m = Monitor::new(settings());
        let t0 = Timestamp::from_secs(1_000);
        assert_eq!(m.admit("t", t0), Admission::Enrich);
        m.record("a", outcome("t", Some(Skip::Timeout)), t0, Some("no answer in 200 ms"));
        assert_eq!(m.admit("t", t0), Admission::Enrich, "one failure is not persistent");
        m.record("b", outcome("t", Some(Skip::StoreUnavailable)), t0, Some("redis down"));
        assert_eq!(m.admit("t", t0), Admission::PassThrough(Skip::StoreFailing));
        assert_eq!(m.admit("other", t0), Admission::Enrich, "per task type");
        let stats = m.stats(&[("t".into(), true)], t0);
        assert!(!stats.store.available);
        let t = stats.tasks.iter().find(|t| t.task_type == "t").unwrap();
        assert_eq!(t.disabled_reason, Some(Skip::StoreFailing));
        assert!(t.disabled_detail.as_ref().unwrap().contains("redis down"));
        assert_eq!(t.retry_at, Some(t0.plus_secs(30)));
        // After 30 s exactly one trial goes through.
        let t1 = t0.plus_secs(30);
        assert_eq!(m.admit("t", t1), Admission::Enrich);
        assert_eq!(m.admit("t", t1), Admission::PassThrough(Skip::StoreFailing));
        m.record("c", outcome("t", None), t1, None);
        assert_eq!(m.admit("t", t1), Admission::Enrich);
        let stats = m.stats(&[("t".into(), true)], t1);
        assert!(stats.store.available && stats.tasks.iter().find(|t| t.task_type == "t").unwrap().active);
    }

    #[test]
    fn quality_without_gain_switches_off_probes_and_comes_back() {
        let m = Monitor::new(settings());
        let now = Timestamp::from_secs(0);
        for i in 0..3 {
            m.record(&format!("e{i}"), outcome("t", None), now, None);
            m.feedback(Some(&format!("e{i}")), None, 0.5).unwrap();
            m.feedback(None, Some("t"), 0.6).unwrap();
        }
        let stats = m.stats(&[("t".into(), true)], now);
        let t = &stats.tasks[0];
        assert_eq!(t.disabled_reason, Some(Skip::NoQualityGain));
        assert!((t.quality.delta.unwrap() - -0.1).abs() < 1e-12);
        assert_eq!((t.quality.with_features.samples, t.quality.without_features.samples), (3, 3));
        // One request in three is still enriched.
        let admitted: Vec<Admission> = (0..6).map(|_| m.admit("t", now)).collect();
        let pass = Admission::PassThrough(Skip::NoQualityGain);
        assert_eq!(admitted, [pass, pass, Admission::Probe, pass, pass, Admission::Probe]);
        // Probes score well: the window of 4 now means (0.5 + 3 x 0.9) / 4 = 0.8 > 0.6.
        for i in 0..3 {
            m.record(&format!("p{i}"), outcome("t", None), now, None);
            m.feedback(Some(&format!("p{i}")), None, 0.9).unwrap();
        }
        let stats = m.stats(&[("t".into(), true)], now);
        assert!(stats.tasks[0].active, "back on once features help");
        assert!((stats.tasks[0].quality.with_features.mean.unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(stats.tasks[0].quality.with_features.total, 6);
    }

    #[test]
    fn feedback_is_counted_once_per_id_on_the_side_the_request_was_answered() {
        let m = Monitor::new(settings());
        let now = Timestamp::from_secs(0);
        m.record("plain", outcome("t", Some(Skip::NoFreshFeatures)), now, None);
        assert_eq!(m.feedback(Some("plain"), None, 0.4).unwrap(), ("t".to_string(), false));
        assert_eq!(m.feedback(Some("plain"), None, 0.4).unwrap_err(), FeedbackError::AlreadyRated("plain".into()));
        assert_eq!(m.feedback(Some("nope"), None, 0.4).unwrap_err(), FeedbackError::UnknownId("nope".into()));
        assert!(matches!(m.feedback(None, Some("t"), 1.5), Err(FeedbackError::Invalid(_))));
        assert!(matches!(m.feedback(None, None, 0.5), Err(FeedbackError::Invalid(_))));
        m.record("x", outcome("t", None), now, None);
        assert!(
            matches!(m.feedback(Some("x"), Some("u"), 0.5), Err(FeedbackError::Invalid(m)) if m.contains("'t', not 'u'"))
        );
    }

    #[test]
    fn stats_average_over_requests_and_enrichments() {
        let m = Monitor::new(settings());
        let now = Timestamp::from_secs(0);
        m.record("a", Outcome { task: "t", features_used: 3, latency_ms: 2.0, skipped: None }, now, None);
        m.record("b", Outcome { task: "t", features_used: 1, latency_ms: 4.0, skipped: None }, now, None);
        m.record(
            "c",
            Outcome { task: "u", features_used: 0, latency_ms: 0.0, skipped: Some(Skip::TaskNotEnabled) },
            now,
            None,
        );
        let stats = m.stats(&[("t".into(), true), ("v".into(), false)], now);
        assert_eq!((stats.total_enrichments, stats.successful_enrichments), (3, 2));
        assert_eq!(stats.avg_features_used, Some(2.0));
        assert_eq!(stats.avg_latency_ms, Some(2.0));
        let names: Vec<&str> = stats.tasks.iter().map(|t| t.task_type.as_str()).collect();
        assert_eq!(names, ["t", "u", "v"]);
        assert_eq!(stats.tasks[1].disabled_detail.as_deref(), Some("no such task type is configured"));
        assert_eq!(stats.tasks[2].disabled_detail.as_deref(), Some("disabled in the serving config"));
    }
}
