//! Errors of the data paths. `api::error` maps each variant to an HTTP
//! status and a stable code exactly once.

use crate::runtime::RuntimeError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is well-formed JSON but not a valid request.
    #[error("{0}")]
    Invalid(String),
    /// An event or created time the store does not accept (outside the
    /// [`crate::model::TimeWindow`], or a number where a timestamp belongs).
    /// `row` is the row's position as the caller counts it (0-based in JSON
    /// arrays, 1-based data rows in CSV), `column` the field it came from.
    #[error("{message}")]
    InvalidTimestamp { row: usize, column: String, message: String },
    /// A named object does not exist.
    #[error("{kind} '{name}' not found")]
    NotFound { kind: &'static str, name: String },
    /// Feature refs that name no feature; `available` lists what the
    /// groups involved do offer, so the caller can correct the request.
    #[error("unknown feature {}", refs.join(", "))]
    UnknownFeature { refs: Vec<String>, available: Vec<String> },
    /// The change conflicts with what exists (e.g. a version published with
    /// different bytes, or a definition still in use).
    #[error("{0}")]
    Conflict(String),
    /// A transform version's breaker is open after repeated failures: the
    /// call was refused without running it.
    #[error("{0}")]
    BreakerOpen(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        ServiceError::NotFound { kind, name: name.into() }
    }
}
