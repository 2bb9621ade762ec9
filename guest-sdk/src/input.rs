//! What a transform receives: one entity's history (batch) or one request's
//! rows (on-demand).
//!
//! Lookups return `Result<_, String>` whose error names what was missing, so
//! a transform can use `?` and the host shows the caller a useful message.

use crate::table::{Column, NamedTable, Table};

/// A parameter as configured on the feature group. Values arrive as text; the
/// transform parses them by the type it declared in its [`Descriptor`](crate::Descriptor).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Param {
    /// Parameter name.
    pub name: String,
    /// Parameter value, as text.
    pub value: String,
}

impl Param {
    /// A parameter.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Param { name: name.into(), value: value.into() }
    }
}

fn find_param<'a>(params: &'a [Param], name: &str) -> Option<&'a str> {
    params.iter().find(|p| p.name == name).map(|p| p.value.as_str())
}

/// The input of a batch call: the history of one entity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchInput {
    /// The entity's key as text, for log lines and error messages.
    pub entity: String,
    /// One table per source the feature group reads, in the group's order;
    /// each holds at least the declared `min_history` rows when they exist.
    pub sources: Vec<NamedTable>,
    /// Other entities' series the transform declared in
    /// [`Descriptor::related`](crate::Descriptor::related), not aligned to
    /// the sources: the transform joins them.
    pub related: Vec<NamedTable>,
    /// The feature group's parameters.
    pub params: Vec<Param>,
}

impl BatchInput {
    /// The source table called `name`.
    pub fn source(&self, name: &str) -> Result<&Table, String> {
        find_table(&self.sources, name).ok_or_else(|| format!("no source named `{name}`"))
    }

    /// The first source, whatever it is called. Most transforms read one
    /// source, and the group (not the transform) chooses its name.
    pub fn first_source(&self) -> Result<&Table, String> {
        self.sources.first().map(|t| &t.table).ok_or_else(|| "the input has no source table".to_string())
    }

    /// The related series called `name` (see [`crate::RelatedSeries`]).
    pub fn related(&self, name: &str) -> Result<&Table, String> {
        find_table(&self.related, name).ok_or_else(|| format!("no related series named `{name}`"))
    }

    /// The value of parameter `name`, if the group set it.
    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }
}

fn find_table<'a>(tables: &'a [NamedTable], name: &str) -> Option<&'a Table> {
    tables.iter().find(|t| t.name == name).map(|t| &t.table)
}

/// The input of an on-demand call: one row per entity of the request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnDemandInput {
    /// The declared input features, as columns named `group:feature`.
    pub features: Vec<Column>,
    /// The request-time fields, as columns named by field.
    pub request: Vec<Column>,
    /// The feature group's parameters.
    pub params: Vec<Param>,
}

impl OnDemandInput {
    /// The number of rows: that of the first feature or request column (0
    /// when there are none). The output must have this many rows.
    pub fn rows(&self) -> usize {
        self.features.iter().chain(&self.request).next().map_or(0, Column::rows)
    }

    /// The input feature column called `name` (`group:feature`).
    pub fn feature(&self, name: &str) -> Result<&Column, String> {
        self.features.iter().find(|c| c.name() == name).ok_or_else(|| format!("no input feature named `{name}`"))
    }

    /// The request field column called `name`.
    pub fn request(&self, name: &str) -> Result<&Column, String> {
        self.request.iter().find(|c| c.name() == name).ok_or_else(|| format!("no request field named `{name}`"))
    }

    /// The value of parameter `name`, if the group set it.
    pub fn param(&self, name: &str) -> Option<&str> {
        find_param(&self.params, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_lookups_find_sources_related_series_and_params() {
        let input = BatchInput {
            entity: "AAPL".into(),
            sources: vec![
                NamedTable::new("prices", Table::new(vec![1])),
                NamedTable::new("fundamentals", Table::new(vec![])),
            ],
            related: vec![NamedTable::new("benchmark", Table::new(vec![1, 2]))],
            params: vec![Param::new("benchmark", "SPY")],
        };
        assert_eq!(input.first_source().unwrap().rows(), 1);
        assert_eq!(input.source("fundamentals").unwrap().rows(), 0);
        assert_eq!(input.related("benchmark").unwrap().rows(), 2);
        assert_eq!(input.param("benchmark"), Some("SPY"));
        assert_eq!(input.param("window"), None);
        assert_eq!(input.source("news").unwrap_err(), "no source named `news`");
        assert!(BatchInput::default().first_source().is_err());
    }

    #[test]
    fn on_demand_rows_come_from_the_first_column() {
        let input = OnDemandInput {
            features: vec![],
            request: vec![Column::float64("amount", vec![Some(1.0), None, Some(3.0)])],
            params: vec![],
        };
        assert_eq!(input.rows(), 3);
        assert!(input.request("amount").is_ok());
        assert_eq!(input.feature("risk:beta").unwrap_err(), "no input feature named `risk:beta`");
    }
}
