//! Provenance: which transform version produced a feature row, so training
//! data and served values can be traced to the exact same code.
//!
//! Rows computed by a transform (materialized, computed on a miss, computed
//! on demand) carry the version's name, version and the sha256 of its
//! component bytes; rows pushed by clients carry none.
//!
//! Besides its JSON shape (`{"transform", "version", "sha256"}`) a
//! provenance has one compact text form, `indicators@1.0.0#<sha256>`: what
//! the offline and online stores keep and what a CSV training-data cell
//! holds.

use super::TransformVersion;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The transform version that produced a row.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Provenance {
    pub transform: String,
    pub version: String,
    /// Hex sha256 of the component bytes: two versions publishing the same
    /// bytes run the same code.
    pub sha256: String,
}

/// Text that is not `name@version#sha256`.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is not a provenance (transform@version#sha256)")]
pub struct ProvenanceError(pub String);

impl Provenance {
    /// The provenance of rows `version` computes.
    pub fn of(version: &TransformVersion) -> Self {
        Provenance { transform: version.name.clone(), version: version.version.clone(), sha256: version.sha256.clone() }
    }

    /// Reads the text form. The sha256 is split off at the last `#` and the
    /// version at the last `@`, neither of which a version or a hex digest
    /// can contain.
    pub fn parse(text: &str) -> Result<Self, ProvenanceError> {
        let bad = || ProvenanceError(text.to_string());
        let (rest, sha256) = text.rsplit_once('#').ok_or_else(bad)?;
        let (transform, version) = rest.rsplit_once('@').ok_or_else(bad)?;
        if transform.is_empty() || version.is_empty() || sha256.is_empty() {
            return Err(bad());
        }
        Ok(Provenance { transform: transform.to_string(), version: version.to_string(), sha256: sha256.to_string() })
    }
}

/// The text form, `name@version#sha256`.
impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.transform, self.version, self.sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indicators() -> Provenance {
        Provenance { transform: "indicators".into(), version: "1.2.0-rc.1+b7".into(), sha256: "ab".repeat(32) }
    }

    #[test]
    fn the_text_form_round_trips() {
        let p = indicators();
        let text = p.to_string();
        assert_eq!(text, format!("indicators@1.2.0-rc.1+b7#{}", "ab".repeat(32)));
        assert_eq!(Provenance::parse(&text).unwrap(), p);
        for bad in ["", "indicators", "indicators@1.0.0", "indicators#abc", "@1.0.0#abc", "x@#abc", "x@1.0.0#"] {
            assert!(Provenance::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_json_shape_names_transform_version_and_sha256() {
        let json = serde_json::to_value(indicators()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"transform": "indicators", "version": "1.2.0-rc.1+b7", "sha256": "ab".repeat(32)})
        );
    }
}
