//! Registry objects: entities, sources and feature groups, with the JSON
//! shapes of CONTRACT.md. Validation that needs other objects (does the
//! entity exist, does the transform produce these features) lives in
//! `service::registry`; what one object can check about itself lives here.

use super::Timestamp;
use super::value::ValueType;
use serde::{Deserialize, Serialize};

/// Names of registry objects: 1-64 characters of `[A-Za-z0-9_-]`, starting
/// with a letter, so they are safe in URLs, SQL identifiers and Redis keys.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("{kind} name '{name}' is invalid: use 1-64 letters, digits, '_' or '-', starting with a letter"))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    #[serde(default, skip_deserializing)]
    pub name: String,
    pub join_keys: Vec<String>,
    #[serde(default)]
    pub description: String,
}

impl Entity {
    pub fn validate(&self) -> Result<(), String> {
        validate_name("entity", &self.name)?;
        if self.join_keys.is_empty() {
            return Err("join_keys must name at least one key".into());
        }
        for k in &self.join_keys {
            validate_name("join key", k)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceField {
    pub name: String,
    #[serde(rename = "type")]
    pub value_type: ValueType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    #[serde(default, skip_deserializing)]
    pub name: String,
    pub entity: String,
    pub timestamp_field: String,
    pub fields: Vec<SourceField>,
    #[serde(default)]
    pub description: String,
}

impl Source {
    pub fn validate(&self) -> Result<(), String> {
        validate_name("source", &self.name)?;
        validate_name("timestamp field", &self.timestamp_field)?;
        if self.fields.is_empty() {
            return Err("a source needs at least one field".into());
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.fields {
            validate_name("field", &f.name)?;
            if f.name == self.timestamp_field {
                return Err(format!("field '{}' is the timestamp field; do not list it in fields", f.name));
            }
            if !seen.insert(&f.name) {
                return Err(format!("field '{}' is listed twice", f.name));
            }
        }
        Ok(())
    }

    pub fn field(&self, name: &str) -> Option<&SourceField> {
        self.fields.iter().find(|f| f.name == name)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub value_type: ValueType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// How old a value may get. Age is measured from the value's event time.
/// `fresh` while age <= expected interval; `stale` until max age; `expired`
/// after. The online store keeps values for `online_ttl_seconds` (default:
/// twice max age) so expired values can still be reported as expired.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Freshness {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_interval_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online_ttl_seconds: Option<u64>,
}

/// The freshness status of a served value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FreshnessStatus {
    Fresh,
    Stale,
    Expired,
    Missing,
}

impl Freshness {
    pub fn status(&self, event_ts: Timestamp, now: Timestamp) -> FreshnessStatus {
        let age = event_ts.seconds_until(now).max(0.0);
        if let Some(max) = self.max_age_seconds
            && age > max as f64
        {
            return FreshnessStatus::Expired;
        }
        match self.expected_interval_seconds {
            Some(expected) if age > expected as f64 => FreshnessStatus::Stale,
            _ => FreshnessStatus::Fresh,
        }
    }

    /// How long the online store keeps a value, if at all bounded.
    pub fn online_ttl_seconds(&self) -> Option<u64> {
        self.online_ttl_seconds.or(self.max_age_seconds.map(|m| m.saturating_mul(2)))
    }

    pub fn validate(&self) -> Result<(), String> {
        // 0 would mean "only a row at exactly the read's time" here, where
        // other feature stores read a TTL of 0 as "no limit": refuse it
        // rather than let one definition mean two things.
        if self.max_age_seconds == Some(0) {
            return Err("freshness.max_age_seconds must be at least 1; leave it out for no limit".into());
        }
        if let (Some(e), Some(m)) = (self.expected_interval_seconds, self.max_age_seconds)
            && e > m
        {
            return Err(format!("freshness.expected_interval_seconds ({e}) must not exceed max_age_seconds ({m})"));
        }
        Ok(())
    }
}

/// Who produces a feature group's values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Producer {
    /// Clients write rows with `POST /v1/features/write`.
    Push,
    /// A batch transform over one or more sources of the group's entity.
    Batch {
        transform: String,
        /// Pinned version; `None` follows the transform's active version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sources: Vec<String>,
        /// Source rows of history the group needs per entity. The transform
        /// is given the entity's whole history (never less than this when it
        /// exists); rows with less history than a feature needs are null.
        #[serde(default = "default_lookback")]
        lookback: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schedule_seconds: Option<u64>,
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        params: serde_json::Map<String, serde_json::Value>,
    },
    /// An on-demand transform over other features and request data.
    OnDemand {
        transform: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<String>,
        #[serde(default)]
        inputs: Vec<String>,
        #[serde(default)]
        request_fields: Vec<SourceField>,
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        params: serde_json::Map<String, serde_json::Value>,
    },
}

fn default_lookback() -> u32 {
    252
}

impl Producer {
    /// The transform name and pinned version, for transform-backed producers.
    pub fn transform(&self) -> Option<(&str, Option<&str>)> {
        match self {
            Producer::Push => None,
            Producer::Batch { transform, version, .. } | Producer::OnDemand { transform, version, .. } => {
                Some((transform.as_str(), version.as_deref()))
            }
        }
    }

    /// Sources a batch producer reads, `source` first, then `sources`.
    pub fn source_names(&self) -> Vec<String> {
        match self {
            Producer::Batch { source, sources, .. } => source.iter().chain(sources.iter()).cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Params rendered as the text the WIT contract passes to transforms.
    pub fn params_as_text(&self) -> Vec<(String, String)> {
        let params = match self {
            Producer::Batch { params, .. } | Producer::OnDemand { params, .. } => params,
            Producer::Push => return Vec::new(),
        };
        params
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureGroup {
    #[serde(default, skip_deserializing)]
    pub name: String,
    pub entity: String,
    pub features: Vec<FeatureSpec>,
    #[serde(default)]
    pub freshness: Freshness,
    pub producer: Producer,
    #[serde(default)]
    pub description: String,
}

impl FeatureGroup {
    pub fn validate(&self) -> Result<(), String> {
        validate_name("feature group", &self.name)?;
        if self.features.is_empty() {
            return Err("a feature group needs at least one feature".into());
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.features {
            validate_name("feature", &f.name)?;
            if !seen.insert(&f.name) {
                return Err(format!("feature '{}' is listed twice", f.name));
            }
        }
        self.freshness.validate()?;
        if let Producer::Batch { lookback, .. } = &self.producer {
            if *lookback == 0 {
                return Err("producer.lookback must be at least 1".into());
            }
            if self.producer.source_names().is_empty() {
                return Err("a batch producer needs \"source\" or \"sources\"".into());
            }
        }
        Ok(())
    }

    pub fn feature(&self, name: &str) -> Option<&FeatureSpec> {
        self.features.iter().find(|f| f.name == name)
    }

    pub fn feature_names(&self) -> Vec<String> {
        self.features.iter().map(|f| f.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contract_feature_group_json_parses() {
        let g: FeatureGroup = serde_json::from_value(json!({
            "entity": "ticker",
            "features": [{"name": "sma_20", "type": "float64", "description": "20-day SMA"}],
            "freshness": {"expected_interval_seconds": 3600, "max_age_seconds": 7200},
            "producer": {"kind": "batch", "transform": "indicators", "version": "1.0.0", "source": "prices",
                          "lookback": 252, "schedule_seconds": 3600, "params": {}}
        }))
        .unwrap();
        assert_eq!(g.producer.source_names(), vec!["prices"]);
        assert_eq!(g.producer.transform(), Some(("indicators", Some("1.0.0"))));
    }

    #[test]
    fn freshness_status_follows_expected_interval_and_max_age() {
        let f =
            Freshness { expected_interval_seconds: Some(3600), max_age_seconds: Some(7200), online_ttl_seconds: None };
        let t = Timestamp::from_secs(1_000_000);
        assert_eq!(f.status(t, t.plus_secs(3600)), FreshnessStatus::Fresh);
        assert_eq!(f.status(t, t.plus_secs(3601)), FreshnessStatus::Stale);
        assert_eq!(f.status(t, t.plus_secs(7201)), FreshnessStatus::Expired);
        assert_eq!(f.online_ttl_seconds(), Some(14_400));
        assert!(f.validate().is_ok());
        let zero = Freshness { max_age_seconds: Some(0), ..f.clone() };
        assert!(zero.validate().unwrap_err().contains("leave it out for no limit"));
        let inverted = Freshness { expected_interval_seconds: Some(7201), ..f };
        assert!(inverted.validate().is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("x", "sma_20").is_ok());
        assert!(validate_name("x", "20sma").is_err());
        assert!(validate_name("x", "a b").is_err());
    }
}
