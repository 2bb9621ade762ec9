//! Feature references: `group:feature`.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FeatureRef {
    pub group: String,
    pub feature: String,
}

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a feature reference; write it as group:feature (e.g. technical:sma_20)")]
pub struct FeatureRefError(pub String);

impl FeatureRef {
    pub fn parse(text: &str) -> Result<Self, FeatureRefError> {
        match text.split_once(':') {
            Some((g, f)) if !g.is_empty() && !f.is_empty() && !f.contains(':') => {
                Ok(FeatureRef { group: g.to_string(), feature: f.to_string() })
            }
            _ => Err(FeatureRefError(text.to_string())),
        }
    }
}

impl fmt::Display for FeatureRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.group, self.feature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_group_and_feature() {
        let r = FeatureRef::parse("technical:sma_20").unwrap();
        assert_eq!((r.group.as_str(), r.feature.as_str()), ("technical", "sma_20"));
        assert_eq!(r.to_string(), "technical:sma_20");
        for bad in ["sma_20", ":x", "x:", "a:b:c"] {
            assert!(FeatureRef::parse(bad).is_err(), "{bad}");
        }
    }
}
