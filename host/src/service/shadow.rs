//! Shadow mode: a candidate version runs beside the active one on the same
//! inputs, on materialization and on on-demand calls, and its outputs are
//! compared per feature; what is served and stored is always the active
//! version's. The path from a validated candidate to a served one is:
//! publish, shadow, read the report, promote.
//!
//! Candidate calls are spawned after the active call has answered, so they
//! never delay a request or a job, and at most [`CONCURRENT`] run at once
//! with at most [`QUEUED`] waiting; past that a call is skipped and
//! counted. A candidate that fails [`SUSPEND_AFTER`] times in a row is
//! suspended (no more candidate calls until the shadow is restarted), so a
//! broken candidate costs a bounded amount of work.
//!
//! The comparison counters are per host and since the shadow started (or
//! this host did); the candidate and tolerance are stored with the
//! transform, so every host shadows the same.

use super::{ServiceError, ServiceResult, Wafer};
use crate::model::{
    BatchInput, OnDemandInput, ShadowSpec, Table, Timestamp, TransformSummary, TransformVersion, Value,
};
use crate::runtime::{Limits, ModuleId, RuntimeError, TransformRuntime};
use dashmap::DashMap;
use serde::Serialize;
use serde_json::{Value as J, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Semaphore;

/// Candidate calls running at once (per host).
pub const CONCURRENT: usize = 2;
/// Candidate calls waiting for a slot; past this, calls are skipped.
pub const QUEUED: usize = 256;
/// Consecutive candidate failures after which shadowing is suspended.
pub const SUSPEND_AFTER: u32 = 5;
/// Mismatch examples kept per feature.
const EXAMPLES: usize = 5;
/// Candidate error messages kept.
const RECENT_ERRORS: usize = 5;
/// Default tolerance: equal up to float noise.
pub const DEFAULT_TOLERANCE: f64 = 1e-9;

/// A production call's input: what the active version runs on, and what
/// a shadow candidate runs on again.
#[derive(Clone)]
pub(crate) enum CallInput {
    Batch(BatchInput),
    OnDemand(OnDemandInput),
}

impl CallInput {
    /// Calls the transform `id` of its kind on this input.
    pub(crate) async fn run(
        self,
        runtime: &dyn TransformRuntime,
        id: &ModuleId,
        limits: &Limits,
    ) -> Result<Table, RuntimeError> {
        match self {
            CallInput::Batch(input) => runtime.batch(id, input, limits).await,
            CallInput::OnDemand(input) => runtime.on_demand(id, input, limits).await,
        }
    }
}

pub(crate) struct Shadows {
    runs: DashMap<String, Arc<ShadowRun>>,
    permits: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
}

impl Shadows {
    pub fn new() -> Shadows {
        Shadows { runs: DashMap::new(), permits: Arc::new(Semaphore::new(CONCURRENT)), queued: Default::default() }
    }

    /// The run of `spec` for transform `name`, started afresh when the
    /// spec changed (another candidate, or the same one restarted).
    fn run(&self, name: &str, spec: &ShadowSpec) -> Arc<ShadowRun> {
        if let Some(run) = self.runs.get(name).filter(|r| r.spec == *spec) {
            return run.clone();
        }
        let run = Arc::new(ShadowRun { spec: spec.clone(), stats: Mutex::new(Stats::default()) });
        self.runs.insert(name.to_string(), run.clone());
        run
    }
}

pub(crate) struct ShadowRun {
    spec: ShadowSpec,
    stats: Mutex<Stats>,
}

#[derive(Default)]
struct Stats {
    compared: u64,
    candidate_errors: u64,
    skipped: u64,
    consecutive_errors: u32,
    active_micros: f64,
    candidate_micros: f64,
    features: BTreeMap<String, FeatureStats>,
    recent_errors: VecDeque<String>,
}

#[derive(Default)]
struct FeatureStats {
    compared: u64,
    matches: u64,
    mismatches: u64,
    max_abs_diff: f64,
    examples: Vec<J>,
}

/// `GET /v1/transforms/{name}/shadow`.
#[derive(Debug, Serialize)]
pub struct ShadowReport {
    pub transform: String,
    pub active_version: Option<String>,
    pub candidate_version: String,
    pub tolerance: f64,
    pub started_at: Timestamp,
    pub calls: CallCounts,
    pub latency: Latency,
    pub features: Vec<FeatureReport>,
    pub recent_errors: Vec<String>,
    /// True once the candidate failed [`SUSPEND_AFTER`] times in a row.
    pub suspended: bool,
    /// `no_data`, `candidate_errors`, `mismatch` or `match`.
    pub verdict: &'static str,
}

#[derive(Debug, Serialize)]
pub struct CallCounts {
    /// Active calls the candidate also ran for (compared + errors).
    pub shadowed: u64,
    pub compared: u64,
    pub candidate_errors: u64,
    /// Active calls the candidate did not run for (too many queued, or
    /// suspended).
    pub skipped: u64,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub active_mean_micros: f64,
    pub candidate_mean_micros: f64,
    /// Candidate over active mean time: 1.2 is 20% slower.
    pub candidate_relative: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct FeatureReport {
    pub name: String,
    pub compared: u64,
    pub matches: u64,
    pub mismatches: u64,
    pub max_abs_diff: f64,
    pub examples: Vec<J>,
}

impl ShadowRun {
    fn report(&self, transform: &TransformSummary) -> ShadowReport {
        let s = self.stats.lock().expect("shadow lock");
        let timed = (s.compared + s.candidate_errors).max(1) as f64;
        let (active, candidate) = (s.active_micros / timed, s.candidate_micros / timed);
        let mismatched = s.features.values().any(|f| f.mismatches > 0);
        let verdict = if s.candidate_errors > 0 {
            "candidate_errors"
        } else if mismatched {
            "mismatch"
        } else if s.compared == 0 {
            "no_data"
        } else {
            "match"
        };
        ShadowReport {
            transform: transform.name.clone(),
            active_version: transform.active_version.clone(),
            candidate_version: self.spec.version.clone(),
            tolerance: self.spec.tolerance,
            started_at: self.spec.started_at,
            calls: CallCounts {
                shadowed: s.compared + s.candidate_errors,
                compared: s.compared,
                candidate_errors: s.candidate_errors,
                skipped: s.skipped,
            },
            latency: Latency {
                active_mean_micros: active,
                candidate_mean_micros: candidate,
                candidate_relative: (s.compared > 0 && active > 0.0).then(|| candidate / active),
            },
            features: s
                .features
                .iter()
                .map(|(name, f)| FeatureReport {
                    name: name.clone(),
                    compared: f.compared,
                    matches: f.matches,
                    mismatches: f.mismatches,
                    max_abs_diff: f.max_abs_diff,
                    examples: f.examples.clone(),
                })
                .collect(),
            recent_errors: s.recent_errors.iter().cloned().collect(),
            suspended: s.consecutive_errors >= SUSPEND_AFTER,
            verdict,
        }
    }

    fn suspended(&self) -> bool {
        self.stats.lock().expect("shadow lock").consecutive_errors >= SUSPEND_AFTER
    }

    fn skip(&self) {
        self.stats.lock().expect("shadow lock").skipped += 1;
    }

    fn failed(&self, active_micros: f64, candidate_micros: f64, error: String) {
        let mut s = self.stats.lock().expect("shadow lock");
        s.candidate_errors += 1;
        s.consecutive_errors += 1;
        s.active_micros += active_micros;
        s.candidate_micros += candidate_micros;
        if s.recent_errors.len() == RECENT_ERRORS {
            s.recent_errors.pop_front();
        }
        s.recent_errors.push_back(error);
    }

    /// Compares the candidate's table with the active one's, feature by
    /// feature (the active version's columns). Batch rows are matched by
    /// timestamp, on-demand rows by position.
    fn compare(&self, active: &Table, candidate: &Table, entity: Option<&str>, active_micros: f64, micros: f64) {
        let tolerance = self.spec.tolerance;
        let by_ts: Option<HashMap<i64, usize>> =
            entity.map(|_| candidate.timestamps.iter().enumerate().map(|(i, &t)| (t, i)).collect());
        let mut s = self.stats.lock().expect("shadow lock");
        s.compared += 1;
        s.consecutive_errors = 0;
        s.active_micros += active_micros;
        s.candidate_micros += micros;
        for column in &active.columns {
            let theirs = candidate.column(&column.name);
            let f = s.features.entry(column.name.clone()).or_default();
            for row in 0..column.len() {
                let a = column.value(row);
                let their_row = match &by_ts {
                    Some(map) => active.timestamps.get(row).and_then(|t| map.get(t).copied()),
                    None => Some(row),
                };
                let b = match (theirs, their_row) {
                    (Some(c), Some(r)) if r < c.len() => Some(c.value(r)),
                    _ => None,
                };
                f.compared += 1;
                let diff = b.as_ref().and_then(|b| numeric_diff(&a, b));
                if let Some(d) = diff.filter(|d| d.is_finite()) {
                    f.max_abs_diff = f.max_abs_diff.max(d);
                }
                if b.as_ref().is_some_and(|b| values_match(&a, b, tolerance)) {
                    f.matches += 1;
                    continue;
                }
                f.mismatches += 1;
                if f.examples.len() < EXAMPLES {
                    let mut example = json!({
                        "active": a.to_json(),
                        "candidate": b.as_ref().map_or(J::String("(missing)".into()), Value::to_json),
                    });
                    match entity {
                        Some(e) => {
                            example["entity"] = json!(e);
                            if let Some(&t) = active.timestamps.get(row) {
                                example["event_timestamp"] = json!(Timestamp(t));
                            }
                        }
                        None => example["row"] = json!(row),
                    }
                    f.examples.push(example);
                }
            }
        }
    }
}

/// `|a - b|` of two numbers, `None` unless both are numbers.
fn numeric_diff(a: &Value, b: &Value) -> Option<f64> {
    Some((number(a)? - number(b)?).abs())
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Float64(x) => Some(*x),
        Value::Int64(i) => Some(*i as f64),
        _ => None,
    }
}

fn floats_match(a: f64, b: f64, tolerance: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    a == b || (a - b).abs() <= tolerance * 1f64.max(a.abs()).max(b.abs())
}

/// Equal, or for numbers within `tolerance` (see [`ShadowSpec::tolerance`]).
pub(crate) fn values_match(a: &Value, b: &Value, tolerance: f64) -> bool {
    match (a, b) {
        (Value::Float64List(x), Value::Float64List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| floats_match(*p, *q, tolerance))
        }
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => floats_match(x, y, tolerance),
            _ => a == b,
        },
    }
}

impl Wafer {
    /// The shadow to run beside a call of `version`: only calls of the
    /// active version are shadowed, by a candidate other than itself.
    pub(crate) fn shadow_for(&self, t: &TransformSummary, version: &TransformVersion) -> Option<Arc<ShadowRun>> {
        let spec = t.settings.shadow.as_ref()?;
        if t.active_version.as_deref() != Some(version.version.as_str()) || spec.version == version.version {
            return None;
        }
        Some(self.inner.shadows.run(&t.name, spec))
    }

    /// Runs the candidate on `input` in the background and compares its
    /// output with the active one's. Never fails the caller.
    pub(crate) fn spawn_shadow(
        &self,
        run: Arc<ShadowRun>,
        name: &str,
        input: CallInput,
        active: Table,
        active_micros: f64,
        limits: Limits,
    ) {
        let shadows = &self.inner.shadows;
        if run.suspended() {
            return run.skip();
        }
        if shadows.queued.fetch_add(1, Ordering::SeqCst) >= QUEUED {
            shadows.queued.fetch_sub(1, Ordering::SeqCst);
            return run.skip();
        }
        let (wafer, name) = (self.clone(), name.to_string());
        let (permits, queued) = (shadows.permits.clone(), shadows.queued.clone());
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            queued.fetch_sub(1, Ordering::SeqCst);
            let candidate = match wafer.version_cached(&name, &run.spec.version).await {
                Ok(v) => v,
                Err(e) => return run.failed(active_micros, 0.0, e.to_string()),
            };
            let id = match wafer.ensure_loaded(&candidate).await {
                Ok(id) => id,
                Err(e) => return run.failed(active_micros, 0.0, e.to_string()),
            };
            let started = Instant::now();
            let entity = match &input {
                CallInput::Batch(input) => Some(input.entity.clone()),
                CallInput::OnDemand(_) => None,
            };
            let result = input.run(wafer.runtime().as_ref(), &id, &limits).await;
            let micros = started.elapsed().as_secs_f64() * 1e6;
            match result {
                Ok(table) => run.compare(&active, &table, entity.as_deref(), active_micros, micros),
                Err(e) => {
                    tracing::debug!(transform = %id, error = %e, "shadow candidate call failed");
                    run.failed(active_micros, micros, e.to_string());
                }
            }
        });
    }

    /// Starts shadowing `name` with `version` (afresh if one was running).
    pub async fn start_shadow(&self, name: &str, version: &str, tolerance: Option<f64>) -> ServiceResult<ShadowReport> {
        let t = self.transform(name).await?;
        let candidate = t
            .versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| ServiceError::not_found("transform version", format!("{name}@{version}")))?;
        let tolerance = tolerance.unwrap_or(DEFAULT_TOLERANCE);
        if !(tolerance.is_finite() && tolerance >= 0.0) {
            return Err(ServiceError::Invalid(format!("tolerance must be a number >= 0 (got {tolerance})")));
        }
        let active_version = t.active_version.as_deref().ok_or_else(|| {
            ServiceError::Conflict(format!(
                "transform '{name}' has no active version ({}); a candidate is compared with the active one, \
                 so activate one first",
                t.status
            ))
        })?;
        if active_version == version {
            return Err(ServiceError::Conflict(format!("{name}@{version} is the active version; shadow another one")));
        }
        let active = t.versions.iter().find(|v| v.version == active_version);
        if let Some(active) = active.filter(|a| a.descriptor.kind != candidate.descriptor.kind) {
            return Err(ServiceError::Invalid(format!(
                "{name}@{version} is a {:?} transform and the active {name}@{} is {:?}; they cannot shadow each other",
                candidate.descriptor.kind, active.version, active.descriptor.kind
            )));
        }
        let spec = ShadowSpec { version: version.to_string(), tolerance, started_at: self.clock().now() };
        let stored = spec.clone();
        self.registry()
            .update_transform_settings(name, &move |s| s.shadow = Some(stored.clone()))
            .await?
            .ok_or_else(|| ServiceError::not_found("transform", name))?;
        self.forget_transform(name);
        tracing::info!(transform = name, candidate = version, tolerance, "shadow started");
        self.shadow_report(name).await
    }

    pub async fn shadow_report(&self, name: &str) -> ServiceResult<ShadowReport> {
        let t = self.transform(name).await?;
        let spec = t.settings.shadow.as_ref().ok_or_else(|| ServiceError::not_found("shadow of transform", name))?;
        Ok(self.inner.shadows.run(name, spec).report(&t))
    }

    /// Stops shadowing; returns the final report.
    pub async fn stop_shadow(&self, name: &str) -> ServiceResult<ShadowReport> {
        let report = self.shadow_report(name).await?;
        self.registry().update_transform_settings(name, &|s| s.shadow = None).await?;
        self.forget_transform(name);
        self.inner.shadows.runs.remove(name);
        tracing::info!(transform = name, "shadow stopped");
        Ok(report)
    }

    /// Activates the shadow candidate and stops shadowing. Returns the
    /// final report (as it was before the switch) and the new lifecycle.
    pub async fn promote_shadow(&self, name: &str) -> ServiceResult<(ShadowReport, TransformSummary)> {
        let report = self.shadow_report(name).await.map_err(|e| match e {
            ServiceError::NotFound { kind: "shadow of transform", .. } => ServiceError::Conflict(format!(
                "transform '{name}' has no shadow candidate to promote; start one with POST /v1/transforms/{name}/shadow"
            )),
            e => e,
        })?;
        self.activate_transform(name, &report.candidate_version).await?;
        self.registry().update_transform_settings(name, &|s| s.shadow = None).await?;
        self.forget_transform(name);
        self.inner.shadows.runs.remove(name);
        tracing::info!(transform = name, version = %report.candidate_version, "shadow candidate promoted");
        Ok((report, self.transform(name).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, ValueType};

    fn table(ts: &[i64], name: &str, xs: &[Value]) -> Table {
        Table { timestamps: ts.to_vec(), columns: vec![Column::from_values(name, ValueType::Float64, xs.iter())] }
    }

    /// Transform `t` with 1.0.0 active, as the report names it.
    fn summary() -> TransformSummary {
        TransformSummary {
            name: "t".into(),
            active_version: Some("1.0.0".into()),
            previous_version: None,
            status: "active".into(),
            versions: vec![],
            settings: Default::default(),
        }
    }

    fn run(tolerance: f64) -> ShadowRun {
        let spec = ShadowSpec { version: "2.0.0".into(), tolerance, started_at: Timestamp(0) };
        ShadowRun { spec, stats: Mutex::new(Stats::default()) }
    }

    #[test]
    fn tolerance_is_absolute_near_zero_and_relative_for_large_values() {
        assert!(values_match(&Value::Float64(0.0), &Value::Float64(1e-7), 1e-6));
        assert!(!values_match(&Value::Float64(0.0), &Value::Float64(2e-6), 1e-6));
        assert!(values_match(&Value::Float64(1e6), &Value::Float64(1e6 + 0.5), 1e-6));
        assert!(!values_match(&Value::Float64(1e6), &Value::Float64(1e6 + 2.0), 1e-6));
        assert!(values_match(&Value::Null, &Value::Null, 0.0));
        assert!(!values_match(&Value::Null, &Value::Float64(0.0), 1.0));
        assert!(values_match(&Value::Float64(f64::NAN), &Value::Float64(f64::NAN), 0.0));
        assert!(values_match(&Value::Int64(3), &Value::Float64(3.0), 0.0));
        assert!(!values_match(&Value::String("a".into()), &Value::String("b".into()), 1.0));
    }

    #[test]
    fn batch_rows_are_matched_by_timestamp_and_mismatches_keep_examples() {
        let r = run(1e-9);
        let active = table(&[1, 2, 3], "x", &[Value::Float64(1.0), Value::Float64(2.0), Value::Null]);
        // The candidate answers one row fewer and in another order.
        let candidate = table(&[3, 1], "x", &[Value::Null, Value::Float64(1.5)]);
        r.compare(&active, &candidate, Some("AAPL"), 10.0, 30.0);
        let report = r.report(&summary());
        let f = &report.features[0];
        assert_eq!((f.compared, f.matches, f.mismatches), (3, 1, 2));
        assert_eq!(f.max_abs_diff, 0.5);
        assert_eq!(f.examples[0]["entity"], "AAPL");
        assert_eq!(f.examples[0]["active"], 1.0);
        assert_eq!(f.examples[0]["candidate"], 1.5);
        assert_eq!(f.examples[1]["candidate"], "(missing)", "timestamp 2 is missing from the candidate");
        assert_eq!(report.verdict, "mismatch");
        assert_eq!(report.latency.candidate_relative, Some(3.0));
    }

    #[test]
    fn a_failing_candidate_is_suspended_after_repeated_errors() {
        let r = run(0.0);
        for i in 0..SUSPEND_AFTER {
            assert!(!r.suspended(), "after {i} errors");
            r.failed(1.0, 1.0, format!("trap {i}"));
        }
        assert!(r.suspended());
        let report = r.report(&summary());
        assert_eq!(report.verdict, "candidate_errors");
        assert_eq!(report.recent_errors.len(), RECENT_ERRORS);
        assert_eq!(report.recent_errors.last().unwrap(), "trap 4");
    }
}
