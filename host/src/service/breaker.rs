//! Per-version circuit breakers. A version whose calls keep failing (traps,
//! timeouts, memory overruns, guest errors, bad output) is switched off
//! for a cool-down instead of spending a worker's time, and up to its
//! deadline, on every call: materializing a thousand entities through a
//! version that loops forever would otherwise take a thousand deadlines.
//!
//! After `threshold` consecutive failures the breaker opens: calls are
//! refused at once with a message saying why and until when. Once the
//! cool-down has passed one trial call is let through (half-open); its
//! success closes the breaker, its failure opens it for another cool-down.
//! Activating the version again closes it at once. Only the guest's own
//! faults count: a busy pool or an unreachable store says nothing about the
//! version.
//!
//! State is per host, like call statistics: each host learns about a bad
//! version from its own calls.

use crate::model::{Timestamp, TransformVersion};
use crate::runtime::RuntimeError;
use dashmap::DashMap;
use serde::Serialize;
use std::sync::Mutex;

/// Consecutive failures that open a breaker unless the transform's limits
/// say otherwise (`breaker_failures`). Five: one bad input is not a broken
/// version, five in a row almost surely are.
pub const DEFAULT_FAILURES: u32 = 5;
/// Seconds an open breaker refuses calls before letting one through.
pub const COOL_DOWN_SECS: i64 = 30;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    #[default]
    Closed,
    Open,
    /// A trial call is under way after the cool-down.
    HalfOpen,
}

/// A version's breaker as `GET /v1/transforms/{name}` shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BreakerStatus {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub threshold: u32,
    /// How often it opened since this host started.
    pub times_opened: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<Timestamp>,
    /// When the next trial call is let through (open only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Default)]
pub(crate) struct Breakers {
    states: DashMap<(String, String), Mutex<BreakerStatus>>,
}

fn key(v: &TransformVersion) -> (String, String) {
    (v.name.clone(), v.version.clone())
}

/// Whether a failure is the version's own fault.
fn counts(e: &RuntimeError) -> bool {
    matches!(
        e,
        RuntimeError::Guest { .. }
            | RuntimeError::Trap { .. }
            | RuntimeError::Timeout { .. }
            | RuntimeError::MemoryLimit { .. }
            | RuntimeError::BadOutput { .. }
    )
}

impl Breakers {
    /// Lets a call through, or says why not.
    pub fn admit(&self, v: &TransformVersion, now: Timestamp) -> Result<(), String> {
        let Some(cell) = self.states.get(&key(v)) else { return Ok(()) };
        let mut s = cell.lock().expect("breaker lock");
        if s.state == BreakerState::Closed {
            return Ok(());
        }
        let retry_at = s.retry_at.unwrap_or(now);
        if now >= retry_at {
            // The trial. Until it reports, others wait for another cool-down
            // (so a trial whose caller gave up cannot wedge the breaker).
            s.state = BreakerState::HalfOpen;
            s.retry_at = Some(now.plus_secs(COOL_DOWN_SECS));
            return Ok(());
        }
        Err(format!(
            "{}@{} is switched off by its breaker after {} consecutive failed calls (last: {}); \
             one call is let through again at {}, or activate the version to reset it",
            v.name,
            v.version,
            s.consecutive_failures,
            s.last_error.as_deref().unwrap_or("unknown"),
            retry_at
        ))
    }

    /// Counts a call's outcome. Returns the breaker's status when this
    /// outcome opened it, so the caller can say so.
    pub fn record(
        &self,
        v: &TransformVersion,
        threshold: u32,
        now: Timestamp,
        outcome: Result<(), &RuntimeError>,
    ) -> Option<BreakerStatus> {
        match outcome {
            Ok(()) => {
                // Closed and clean is the common case: no entry, no lock.
                if let Some(cell) = self.states.get(&key(v)) {
                    let mut s = cell.lock().expect("breaker lock");
                    s.state = BreakerState::Closed;
                    s.consecutive_failures = 0;
                    s.retry_at = None;
                }
                None
            }
            Err(e) if counts(e) => {
                let cell = self.states.entry(key(v)).or_default();
                let mut s = cell.lock().expect("breaker lock");
                s.consecutive_failures += 1;
                s.threshold = threshold;
                s.last_error = Some(e.to_string());
                let trip = match s.state {
                    BreakerState::Closed => s.consecutive_failures >= threshold.max(1),
                    BreakerState::HalfOpen => true,
                    BreakerState::Open => false,
                };
                if !trip {
                    return None;
                }
                s.state = BreakerState::Open;
                s.opened_at = Some(now);
                s.retry_at = Some(now.plus_secs(COOL_DOWN_SECS));
                s.times_opened += 1;
                Some(s.clone())
            }
            Err(_) => None,
        }
    }

    /// Closes the version's breaker (an admin activated it again).
    pub fn reset(&self, name: &str, version: &str) {
        self.states.remove(&(name.to_string(), version.to_string()));
    }

    pub fn status(&self, v: &TransformVersion, threshold: u32) -> BreakerStatus {
        let mut s = match self.states.get(&key(v)) {
            Some(cell) => cell.lock().expect("breaker lock").clone(),
            None => BreakerStatus::default(),
        };
        s.threshold = threshold;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Descriptor, TransformKind};
    use std::time::Duration;

    fn version() -> TransformVersion {
        TransformVersion {
            name: "t".into(),
            version: "1.0.0".into(),
            sha256: "00".into(),
            size_bytes: 1,
            descriptor: Descriptor {
                kind: TransformKind::Batch,
                inputs: vec![],
                request_fields: vec![],
                outputs: vec![],
                params: vec![],
                min_history: 0,
                related: vec![],
                description: String::new(),
            },
            created_at: Timestamp(0),
        }
    }

    fn trap() -> RuntimeError {
        RuntimeError::Trap { module: "t@1.0.0".into(), message: "unreachable".into() }
    }

    #[test]
    fn opens_after_consecutive_failures_and_lets_one_trial_through_after_the_cool_down() {
        let b = Breakers::default();
        let v = version();
        let t0 = Timestamp(1_000_000);
        for i in 1..3 {
            assert!(b.record(&v, 3, t0, Err(&trap())).is_none(), "failure {i} of 3 keeps it closed");
        }
        // A success in between starts the count again.
        b.record(&v, 3, t0, Ok(()));
        assert_eq!(b.status(&v, 3).consecutive_failures, 0);
        for _ in 0..2 {
            assert!(b.record(&v, 3, t0, Err(&trap())).is_none());
        }
        let opened = b.record(&v, 3, t0, Err(&trap())).expect("the third failure in a row opens it");
        assert_eq!(opened.state, BreakerState::Open);
        assert_eq!(opened.retry_at, Some(t0.plus_secs(COOL_DOWN_SECS)));

        let refused = b.admit(&v, t0.plus_secs(1)).unwrap_err();
        assert!(
            refused.contains("t@1.0.0 is switched off by its breaker after 3 consecutive failed calls"),
            "{refused}"
        );
        assert!(refused.contains("unreachable"), "names the last error: {refused}");

        let later = t0.plus_secs(COOL_DOWN_SECS);
        b.admit(&v, later).expect("one trial after the cool-down");
        assert!(b.admit(&v, later).is_err(), "only one trial at a time");
        assert!(b.record(&v, 3, later, Err(&trap())).is_some(), "a failed trial opens it again at once");
        assert!(b.admit(&v, later).is_err());

        let again = later.plus_secs(COOL_DOWN_SECS);
        b.admit(&v, again).unwrap();
        assert!(b.record(&v, 3, again, Ok(())).is_none());
        assert_eq!(b.status(&v, 3).state, BreakerState::Closed);
        b.admit(&v, again).unwrap();
        assert_eq!(b.status(&v, 3).times_opened, 2);
    }

    #[test]
    fn only_the_guests_own_faults_count_and_reset_closes_it() {
        let b = Breakers::default();
        let v = version();
        for _ in 0..10 {
            b.record(&v, 2, Timestamp(0), Err(&RuntimeError::Busy));
        }
        assert_eq!(b.status(&v, 2).consecutive_failures, 0, "a full pool is not the version's fault");
        let timeout = RuntimeError::Timeout { module: "t@1.0.0".into(), limit: Duration::from_secs(2) };
        b.record(&v, 2, Timestamp(0), Err(&timeout));
        assert!(b.record(&v, 2, Timestamp(0), Err(&timeout)).is_some());
        assert!(b.admit(&v, Timestamp(1)).is_err());
        b.reset("t", "1.0.0");
        b.admit(&v, Timestamp(1)).unwrap();
        assert_eq!(b.status(&v, 2).state, BreakerState::Closed);
    }
}
