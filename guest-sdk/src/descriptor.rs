//! How a transform describes itself.
//!
//! The host calls `describe` once when a version is published, stores the
//! answer, and validates feature groups against it (inputs exist, outputs
//! match, enough history is passed), so a mismatch is caught at registration
//! rather than in a materialization job at 3 a.m.

use crate::table::ValueType;

/// Whether a transform computes from history or per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// History in, feature rows out; run by materialization jobs.
    Batch,
    /// Stored features plus request data in, one row per request entity out.
    OnDemand,
}

/// A typed, documented field: a source field read, an input feature, a
/// request field or an output.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// Field name (`group:feature` for on-demand input features).
    pub name: String,
    /// Its type.
    pub value_type: ValueType,
    /// What it means, shown to users of the registry.
    pub description: String,
}

impl Field {
    /// A field.
    pub fn new(name: impl Into<String>, value_type: ValueType, description: impl Into<String>) -> Self {
        Field { name: name.into(), value_type, description: description.into() }
    }
}

/// A parameter the transform accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Parameter name.
    pub name: String,
    /// The type its text value parses as.
    pub value_type: ValueType,
    /// The value used when the feature group does not set one.
    pub default_value: Option<String>,
    /// What it controls.
    pub description: String,
}

/// Another entity's series a batch transform needs, e.g. a benchmark ticker's
/// prices for beta.
#[derive(Debug, Clone, PartialEq)]
pub struct RelatedSeries {
    /// The name the series arrives under in [`BatchInput::related`](crate::BatchInput).
    pub name: String,
    /// The source to read it from.
    pub source: String,
    /// The parameter holding the other entity's key.
    pub entity_param: String,
}

/// A transform's self-description. Build it with [`Descriptor::batch`] or
/// [`Descriptor::on_demand`] and the chained methods.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    /// Batch or on-demand.
    pub kind: Kind,
    /// Batch: source fields read. On-demand: input features (`group:feature`).
    pub inputs: Vec<Field>,
    /// On-demand only: fields the caller supplies with the request.
    pub request_fields: Vec<Field>,
    /// The features produced, one output column each.
    pub outputs: Vec<Field>,
    /// Accepted parameters.
    pub params: Vec<ParamSpec>,
    /// Batch only: the fewest source rows that give a complete latest row.
    /// The host never passes fewer when more exist.
    pub min_history: u32,
    /// Other entities' series needed (batch only).
    pub related: Vec<RelatedSeries>,
    /// What the transform computes.
    pub description: String,
}

impl Descriptor {
    fn new(kind: Kind, description: impl Into<String>) -> Self {
        Descriptor {
            kind,
            inputs: Vec::new(),
            request_fields: Vec::new(),
            outputs: Vec::new(),
            params: Vec::new(),
            min_history: 0,
            related: Vec::new(),
            description: description.into(),
        }
    }

    /// A batch transform's descriptor.
    pub fn batch(description: impl Into<String>) -> Self {
        Self::new(Kind::Batch, description)
    }

    /// An on-demand transform's descriptor.
    pub fn on_demand(description: impl Into<String>) -> Self {
        Self::new(Kind::OnDemand, description)
    }

    /// Adds an input: a source field (batch) or a `group:feature` (on-demand).
    #[must_use]
    pub fn input(mut self, name: impl Into<String>, value_type: ValueType, description: impl Into<String>) -> Self {
        self.inputs.push(Field::new(name, value_type, description));
        self
    }

    /// Adds a request-time field (on-demand).
    #[must_use]
    pub fn request_field(
        mut self,
        name: impl Into<String>,
        value_type: ValueType,
        description: impl Into<String>,
    ) -> Self {
        self.request_fields.push(Field::new(name, value_type, description));
        self
    }

    /// Adds an output feature.
    #[must_use]
    pub fn output(mut self, name: impl Into<String>, value_type: ValueType, description: impl Into<String>) -> Self {
        self.outputs.push(Field::new(name, value_type, description));
        self
    }

    /// Adds a parameter with an optional default.
    #[must_use]
    pub fn param(
        mut self,
        name: impl Into<String>,
        value_type: ValueType,
        default_value: Option<&str>,
        description: impl Into<String>,
    ) -> Self {
        self.params.push(ParamSpec {
            name: name.into(),
            value_type,
            default_value: default_value.map(str::to_string),
            description: description.into(),
        });
        self
    }

    /// Sets the fewest source rows that give a complete latest row.
    #[must_use]
    pub fn min_history(mut self, rows: u32) -> Self {
        self.min_history = rows;
        self
    }

    /// Declares another entity's series, read from `source` for the entity
    /// whose key is in parameter `entity_param`, arriving as `name`.
    #[must_use]
    pub fn related(
        mut self,
        name: impl Into<String>,
        source: impl Into<String>,
        entity_param: impl Into<String>,
    ) -> Self {
        self.related.push(RelatedSeries {
            name: name.into(),
            source: source.into(),
            entity_param: entity_param.into(),
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_collects_every_part() {
        let d = Descriptor::batch("beta")
            .input("close", ValueType::Float64, "close")
            .output("beta", ValueType::Float64, "beta")
            .param("benchmark", ValueType::Text, Some("SPY"), "benchmark ticker")
            .related("benchmark", "prices", "benchmark")
            .min_history(253);
        assert_eq!(d.kind, Kind::Batch);
        assert_eq!((d.inputs.len(), d.outputs.len(), d.min_history), (1, 1, 253));
        assert_eq!(d.params[0].default_value.as_deref(), Some("SPY"));
        assert_eq!(d.related[0].entity_param, "benchmark");
        let d = Descriptor::on_demand("x").request_field("amount", ValueType::Float64, "amount");
        assert_eq!((d.kind, d.request_fields.len()), (Kind::OnDemand, 1));
    }
}
