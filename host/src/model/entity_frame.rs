//! Entity rows of a training-data request: a table of the caller's columns
//! (join keys, `event_timestamp`, anything else, passed through) read from
//! JSON objects or CSV, so every input column comes back as it was sent.
//!
//! CSV rows stay as their text records (one buffer per row, about the size
//! of the line), not as a value per cell: a million-row request is held in
//! memory while its answer streams, so the representation is kept small.

use crate::model::EntityKey;
use crate::model::entity_key::EntityKeyError;
use crate::model::value::{TypeMismatch, Value, ValueType};
use serde_json::{Map, Value as Json};
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq)]
pub struct EntityFrame {
    /// Column names in input order (for JSON: first seen first).
    pub columns: Vec<String>,
    rows: Rows,
}

#[derive(Debug, Clone, PartialEq)]
enum Rows {
    /// Cells aligned with the columns; a row without a column has null.
    Json(Vec<Vec<Json>>),
    /// One record per row, aligned with the columns (the reader refuses
    /// ragged rows).
    Csv(Vec<csv::StringRecord>),
}

/// One cell, as it was sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Json(&'a Json),
    /// A CSV cell; empty means null.
    Text(&'a str),
}

impl EntityFrame {
    pub fn from_json_rows(objects: Vec<Map<String, Json>>) -> Self {
        let mut columns: Vec<String> = Vec::new();
        for object in &objects {
            for key in object.keys() {
                if !columns.contains(key) {
                    columns.push(key.clone());
                }
            }
        }
        let rows = objects
            .into_iter()
            .map(|mut object| columns.iter().map(|c| object.remove(c).unwrap_or(Json::Null)).collect())
            .collect();
        EntityFrame { columns, rows: Rows::Json(rows) }
    }

    /// A CSV body with a header row; cells are trimmed of surrounding spaces.
    pub fn from_csv(body: &[u8]) -> Result<Self, String> {
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(body);
        let columns: Vec<String> =
            reader.headers().map_err(|e| format!("CSV header: {e}"))?.iter().map(str::to_string).collect();
        if columns.iter().all(String::is_empty) {
            return Err("the CSV body has no header row".into());
        }
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                return Err(format!("CSV header names column '{c}' twice"));
            }
        }
        let mut rows = Vec::new();
        // Read into one buffer and keep exact-size copies.
        let mut record = csv::StringRecord::new();
        while reader.read_record(&mut record).map_err(|e| format!("CSV row {}: {e}", rows.len() + 1))? {
            rows.push(record.clone());
        }
        Ok(EntityFrame { columns, rows: Rows::Csv(rows) })
    }

    pub fn len(&self) -> usize {
        match &self.rows {
            Rows::Json(rows) => rows.len(),
            Rows::Csv(rows) => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Row `row`'s cell in column `col` (both in range).
    pub fn cell(&self, row: usize, col: usize) -> Cell<'_> {
        match &self.rows {
            Rows::Json(rows) => Cell::Json(&rows[row][col]),
            Rows::Csv(rows) => Cell::Text(&rows[row][col]),
        }
    }

    /// Row `row`'s cells in column order.
    pub fn cells(&self, row: usize) -> impl Iterator<Item = Cell<'_>> {
        (0..self.columns.len()).map(move |col| self.cell(row, col))
    }

    /// Row `i` as the caller counts it: `entity_rows[i]` in JSON, the
    /// 1-based data row (after the header) in CSV.
    pub fn row_label(&self, i: usize) -> String {
        match self.rows {
            Rows::Json(_) => format!("entity_rows[{i}]"),
            Rows::Csv(_) => format!("CSV row {}", i + 1),
        }
    }
}

impl<'a> Cell<'a> {
    /// The cell's text, when it is a non-empty string.
    pub fn as_str(self) -> Option<&'a str> {
        match self {
            Cell::Json(j) => j.as_str(),
            Cell::Text(t) => Some(t).filter(|t| !t.is_empty()),
        }
    }

    /// As CSV text: strings as they are, null as empty, other JSON as its
    /// JSON text.
    pub fn text(self) -> Cow<'a, str> {
        match self {
            Cell::Json(Json::Null) => "".into(),
            Cell::Json(Json::String(s)) => s.as_str().into(),
            Cell::Json(other) => other.to_string().into(),
            Cell::Text(t) => t.into(),
        }
    }

    /// As JSON: CSV text is a string (empty: null).
    pub fn to_json(self) -> Json {
        match self {
            Cell::Json(j) => j.clone(),
            Cell::Text("") => Json::Null,
            Cell::Text(t) => Json::String(t.to_string()),
        }
    }

    /// The cell as one join-key value of `key`.
    pub fn key_part(self, key: &str) -> Result<String, EntityKeyError> {
        match self {
            Cell::Json(j) => EntityKey::part_from_json(key, j),
            Cell::Text("") => Err(EntityKeyError::Empty(key.to_string())),
            Cell::Text(t) => Ok(t.to_string()),
        }
    }

    /// The cell as a value of `ty`: CSV cells are text, JSON cells typed (a
    /// JSON string is read as text too, so `"1.5"` is a float).
    pub fn value(self, ty: ValueType) -> Result<Value, TypeMismatch> {
        match self {
            Cell::Json(Json::String(text)) if ty != ValueType::String => Value::from_text(text, ty),
            Cell::Json(j) => Value::from_json(j, ty),
            Cell::Text(t) => Value::from_text(t, ty),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_rows_become_columns_in_first_seen_order() {
        let rows = vec![
            json!({"ticker": "AAPL", "event_timestamp": "2024-01-02"}),
            json!({"label": 1, "ticker": "MSFT", "event_timestamp": "2024-01-03"}),
        ];
        let frame = EntityFrame::from_json_rows(rows.into_iter().map(|r| r.as_object().unwrap().clone()).collect());
        assert_eq!(frame.columns, ["ticker", "event_timestamp", "label"]);
        let first: Vec<Json> = frame.cells(0).map(Cell::to_json).collect();
        assert_eq!(first, vec![json!("AAPL"), json!("2024-01-02"), Json::Null]);
        assert_eq!(frame.cell(1, 2), Cell::Json(&json!(1)));
        assert_eq!(frame.cell(1, 2).text(), "1");
        assert_eq!(frame.cell(1, 2).key_part("label").unwrap(), "1");
        assert_eq!(frame.row_label(1), "entity_rows[1]");
    }

    #[test]
    fn csv_cells_are_text_and_empty_cells_null() {
        let frame =
            EntityFrame::from_csv(b"ticker, event_timestamp,note\nAAPL,2024-01-02,\"a, b\"\nMSFT,2024-01-03,\n")
                .unwrap();
        assert_eq!(frame.columns, ["ticker", "event_timestamp", "note"]);
        assert_eq!(frame.len(), 2);
        assert_eq!(frame.cells(0).map(Cell::text).collect::<Vec<_>>(), ["AAPL", "2024-01-02", "a, b"]);
        assert_eq!(frame.cell(1, 2).to_json(), Json::Null);
        assert_eq!(frame.cell(1, 2).as_str(), None);
        assert!(frame.cell(1, 2).key_part("note").is_err());
        assert_eq!(frame.cell(0, 2).value(ValueType::String).unwrap(), Value::String("a, b".into()));
        assert_eq!(frame.row_label(0), "CSV row 1");
        assert!(EntityFrame::from_csv(b"a,b\n1,2,3\n").unwrap_err().contains("CSV row 1"));
        assert!(EntityFrame::from_csv(b"a,a\n1,2\n").unwrap_err().contains("twice"));
    }

    #[test]
    fn request_field_cells_are_read_against_their_type() {
        assert_eq!(Cell::Text("1.5").value(ValueType::Float64).unwrap(), Value::Float64(1.5));
        assert_eq!(Cell::Json(&json!("1.5")).value(ValueType::Float64).unwrap(), Value::Float64(1.5));
        assert_eq!(Cell::Json(&json!(2)).value(ValueType::Float64).unwrap(), Value::Float64(2.0));
        assert_eq!(Cell::Text("").value(ValueType::Int64).unwrap(), Value::Null);
        assert!(Cell::Text("x").value(ValueType::Bool).is_err());
    }
}
