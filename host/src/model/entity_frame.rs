//! Entity rows of a training-data request: a table of the caller's columns
//! (join keys, `event_timestamp`, anything else, passed through) read from
//! JSON objects or CSV. Cells stay JSON values so every input column comes
//! back exactly as it was sent.

use serde_json::{Map, Value as Json};

/// Where the rows came from, so errors name a row the way the caller
/// counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameOrigin {
    Json,
    Csv,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EntityFrame {
    /// Column names in input order (for JSON: first seen first).
    pub columns: Vec<String>,
    /// Cells aligned with `columns`; a JSON row without a column has null.
    pub rows: Vec<Vec<Json>>,
    pub origin: FrameOrigin,
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
        EntityFrame { columns, rows, origin: FrameOrigin::Json }
    }

    /// A CSV body with a header row; every cell is read as a string
    /// (surrounding spaces trimmed), an empty cell as null.
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
        for (i, record) in reader.records().enumerate() {
            let record = record.map_err(|e| format!("CSV row {}: {e}", i + 1))?;
            rows.push(
                record
                    .iter()
                    .map(|cell| if cell.is_empty() { Json::Null } else { Json::String(cell.to_string()) })
                    .collect(),
            );
        }
        Ok(EntityFrame { columns, rows, origin: FrameOrigin::Csv })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Row `i` as the caller counts it: `entity_rows[i]` in JSON, the
    /// 1-based data row (after the header) in CSV.
    pub fn row_label(&self, i: usize) -> String {
        match self.origin {
            FrameOrigin::Json => format!("entity_rows[{i}]"),
            FrameOrigin::Csv => format!("CSV row {}", i + 1),
        }
    }
}

/// A cell as CSV text: strings as they are, null as empty, anything else as
/// its JSON text.
pub fn cell_text(cell: &Json) -> std::borrow::Cow<'_, str> {
    match cell {
        Json::Null => "".into(),
        Json::String(s) => s.as_str().into(),
        other => other.to_string().into(),
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
        assert_eq!(frame.rows[0], vec![json!("AAPL"), json!("2024-01-02"), Json::Null]);
        assert_eq!(frame.rows[1][2], json!(1));
        assert_eq!(frame.row_label(1), "entity_rows[1]");
    }

    #[test]
    fn csv_cells_are_strings_and_empty_cells_null() {
        let frame =
            EntityFrame::from_csv(b"ticker, event_timestamp,note\nAAPL,2024-01-02,\"a, b\"\nMSFT,2024-01-03,\n")
                .unwrap();
        assert_eq!(frame.columns, ["ticker", "event_timestamp", "note"]);
        assert_eq!(frame.rows[0], vec![json!("AAPL"), json!("2024-01-02"), json!("a, b")]);
        assert_eq!(frame.rows[1][2], Json::Null);
        assert_eq!(frame.row_label(0), "CSV row 1");
        assert!(EntityFrame::from_csv(b"a,b\n1,2,3\n").unwrap_err().contains("CSV row 1"));
        assert!(EntityFrame::from_csv(b"a,a\n1,2\n").unwrap_err().contains("twice"));
        assert_eq!(cell_text(&json!(1.5)), "1.5");
    }
}
