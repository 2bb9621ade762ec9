//! The audit trail: every registry and plugin change made through the API,
//! with who made it (`GET /v1/audit`, admins only when tokens are set).

use super::{ServiceResult, Wafer};
use crate::model::{Actor, AuditEntry};

/// Entries one `GET /v1/audit` returns at most.
pub const MAX_AUDIT_LIMIT: u32 = 1_000;

impl Wafer {
    /// Records a change that has been made. The change stands whether or not
    /// this succeeds (telling the caller it failed would invite a retry of
    /// something already done), so a failure is logged as an error, with
    /// the entry, for the operator.
    pub async fn record_change(&self, actor: &Actor, action: &str, target: &str, details: serde_json::Value) {
        let entry = AuditEntry {
            at: self.clock().now(),
            actor: actor.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            details,
        };
        if let Err(e) = self.registry().append_audit(&entry).await {
            tracing::error!(error = %e, actor = %entry.actor, action, target, details = %entry.details,
                "could not record a change in the audit trail");
        }
    }

    /// The newest `limit` entries (at most [`MAX_AUDIT_LIMIT`]), newest first.
    pub async fn audit_trail(&self, limit: u32) -> ServiceResult<Vec<AuditEntry>> {
        Ok(self.registry().list_audit(limit.clamp(1, MAX_AUDIT_LIMIT)).await?)
    }
}
