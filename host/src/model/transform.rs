//! Transforms as the registry knows them: immutable versions, each a Wasm
//! component addressed by its sha256 and described by its own `describe`.

use super::value::ValueType;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransformKind {
    Batch,
    OnDemand,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub value_type: ValueType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub value_type: ValueType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelatedSeries {
    pub name: String,
    pub source: String,
    pub entity_param: String,
}

/// What a component says about itself (the WIT `descriptor`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Descriptor {
    pub kind: TransformKind,
    pub inputs: Vec<FieldSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_fields: Vec<FieldSpec>,
    pub outputs: Vec<FieldSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<ParamSpec>,
    #[serde(default)]
    pub min_history: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<RelatedSeries>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl Descriptor {
    pub fn output(&self, name: &str) -> Option<&FieldSpec> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

/// One published version of a transform.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransformVersion {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub descriptor: Descriptor,
    pub created_at: super::Timestamp,
}

/// A transform's lifecycle state: which version serves, if any.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransformSummary {
    pub name: String,
    pub active_version: Option<String>,
    pub previous_version: Option<String>,
    /// `active`, `disabled` or `inactive` (published, never activated).
    pub status: String,
    pub versions: Vec<TransformVersion>,
    /// Shadow candidate and limit overrides, set by admins.
    #[serde(default)]
    pub settings: TransformSettings,
}

/// What admins set on a transform beside its lifecycle. Stored with it, so
/// every host sharing the registry applies the same.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TransformSettings {
    /// The candidate version running beside the active one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowSpec>,
    #[serde(default)]
    pub limits: LimitOverrides,
}

/// A candidate version shadowing the active one: it runs on the same inputs
/// (materialization and on-demand calls), its outputs are compared and never
/// served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShadowSpec {
    pub version: String,
    /// Two numbers match when `|a - b| <= tolerance * max(1, |a|, |b|)`:
    /// absolute near zero, relative for large values.
    pub tolerance: f64,
    /// When this comparison started; restarting a shadow starts it afresh.
    pub started_at: super::Timestamp,
}

/// Per-transform limits; `None` keeps the server's default (see
/// `runtime::Limits` for the defaults and why).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
    /// Consecutive failed calls after which a version's breaker opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_failures: Option<u32>,
}

/// Versions are `MAJOR.MINOR.PATCH` with optional pre-release/build suffix.
pub fn validate_version(v: &str) -> Result<(), String> {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let ok = parts.len() == 3
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && v.len() <= 64
        && v.chars().all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c));
    if ok { Ok(()) } else { Err(format!("version '{v}' is not semantic (X.Y.Z)")) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_are_semantic() {
        assert!(super::validate_version("1.2.0").is_ok());
        assert!(super::validate_version("1.2.0-rc.1").is_ok());
        assert!(super::validate_version("1.2").is_err());
        assert!(super::validate_version("v1.2.0").is_err());
    }
}
