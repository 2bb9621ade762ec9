//! The audit trail of registry and plugin changes: who changed what, when.

use super::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;

/// Who made a request: a token's role and a short id derived from the
/// token (its secret never leaves the server), or `anonymous` when the API
/// runs without tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Actor(String);

impl Actor {
    /// `admin:1a2b3c4d`: the role and the first 8 hex digits of the token's
    /// sha256, enough to tell configured tokens apart.
    pub fn token(role: &str, token: &str) -> Actor {
        let digest = Sha256::digest(token.as_bytes());
        Actor(format!("{role}:{}", &hex::encode(digest)[..8]))
    }

    pub fn anonymous() -> Actor {
        Actor("anonymous".into())
    }

    /// The server itself acting on a rule, e.g. `system:breaker`.
    pub fn system(component: &str) -> Actor {
        Actor(format!("system:{component}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One change, as `GET /v1/audit` lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEntry {
    pub at: Timestamp,
    pub actor: String,
    /// `<object>.<verb>`, e.g. `feature_group.put`, `transform.activate`.
    pub action: String,
    /// The object's name (`name@version` for a version).
    pub target: String,
    /// What changed, e.g. the new definition or the versions involved.
    pub details: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_actors_name_the_role_and_never_the_token() {
        let a = Actor::token("admin", "s3cret-token");
        assert!(a.as_str().starts_with("admin:"));
        assert_eq!(a.as_str().len(), "admin:".len() + 8);
        assert!(!a.as_str().contains("s3cret"));
        assert_eq!(a, Actor::token("admin", "s3cret-token"), "stable");
        assert_ne!(a, Actor::token("admin", "other"));
    }
}
