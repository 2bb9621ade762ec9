//! Training data: `POST /v1/features/historical`, point-in-time correct.
//!
//! Entity rows come as JSON (`{"entity_rows": [...], "features": [...]}`)
//! or as a CSV body with the refs in the query; the answer is JSON, or CSV
//! with `Accept: text/csv`. The first slice of rows is computed before the
//! status line, so bad input and an unreachable store get a proper error
//! status; the rest streams slice by slice with at most
//! [`SLICES_AHEAD`] slices encoded ahead of the client. A failure after
//! that point aborts the response (the transfer ends without its final
//! chunk), so a client never mistakes a cut-off answer for a whole one.
//!
//! Provenance (`"include_provenance": true` in a JSON body,
//! `&include_provenance=true` with a CSV body) adds one column per requested
//! group after the feature columns, `<group>:__provenance`: in JSON an
//! object `{"transform": "indicators", "version": "1.0.0", "sha256":
//! "..."}` or `null`, in CSV the flat text `indicators@1.0.0#<sha256>` or an
//! empty cell. It names the transform version that computed the row the
//! group's values came from; no row, or a row pushed by a client, has none.

use super::columnar::{PARQUET, ParquetAnswer};
use super::error::{self, ApiError, ApiResult, Query, json_from_bytes};
use crate::model::entity_frame::EntityFrame;
use crate::model::{Provenance, Value};
use crate::service::Wafer;
use crate::service::historical::{HistoricalPlan, HistoricalSlice};
use crate::store::delta::value_at;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, StringArray, TimestampMicrosecondArray};
use arrow_schema::DataType;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::post;
use futures_util::StreamExt;
use serde::Deserialize;
use std::ops::Range;
use std::sync::Arc;

pub fn router() -> Router<Wafer> {
    Router::new().route("/v1/features/historical", post(historical))
}

/// Entity rows per slice: one point-in-time query per group and slice. 500
/// to 5,000 measured within a few percent of each other on 100,000 rows.
const ROWS_PER_SLICE: usize = 2_000;
/// Encoded slices waiting for the client to read them.
const SLICES_AHEAD: usize = 2;
/// Slices being looked up and encoded at once.
const SLICES_IN_FLIGHT: usize = 2;
/// Response header with the number of entity rows, for progress.
pub const ROWS_HEADER: &str = "x-wafer-entity-rows";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    entity_rows: Vec<serde_json::Map<String, serde_json::Value>>,
    features: Vec<String>,
    #[serde(default)]
    created_cutoff: bool,
    #[serde(default)]
    include_provenance: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Comma-separated refs (CSV bodies).
    features: Option<String>,
    created_cutoff: Option<bool>,
    /// CSV bodies: add the `<group>:__provenance` columns.
    include_provenance: Option<bool>,
    /// CSV answers: `false` leaves out the header row, for a client that
    /// appends the answers of several requests to one file.
    header: Option<bool>,
}

async fn historical(
    State(w): State<Wafer>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Result<error::Bytes, ApiError>,
) -> ApiResult<Response> {
    let error::Bytes(body) = body.map_err(|mut err| {
        if err.code == "payload_too_large" {
            err.message = "request body is too large; send the entity rows in several requests".into();
        }
        err
    })?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (frame, features, created_cutoff, include_provenance) = if content_type.starts_with("text/csv") {
        let frame = EntityFrame::from_csv(&body).map_err(ApiError::invalid)?;
        let features = params
            .features
            .as_deref()
            .map(|f| f.split(',').map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect())
            .unwrap_or_default();
        (frame, features, params.created_cutoff.unwrap_or(false), params.include_provenance.unwrap_or(false))
    } else if content_type.starts_with("application/json") {
        if params.features.is_some() || params.created_cutoff.is_some() || params.include_provenance.is_some() {
            return Err(ApiError::invalid(
                "with a JSON body, give \"features\", \"created_cutoff\" and \"include_provenance\" in the body, \
                 not the query",
            ));
        }
        let req: JsonRequest = json_from_bytes(&body)?;
        (EntityFrame::from_json_rows(req.entity_rows), req.features, req.created_cutoff, req.include_provenance)
    } else {
        return Err(ApiError::new(
            "unsupported_media_type",
            "send {\"entity_rows\": [...], \"features\": [...]} as application/json, or the entity rows as \
             text/csv with a header row and ?features=group:feature,...",
        ));
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = if accept.contains(PARQUET) {
        Format::Parquet
    } else if accept.contains("text/csv") {
        Format::Csv { header: params.header.unwrap_or(true) }
    } else {
        Format::Json
    };

    let plan = Arc::new(w.plan_historical(frame, &features, created_cutoff, include_provenance).await?);
    let encoder = Arc::new(Encoder::new(format, &plan).map_err(|e| ApiError::internal(&e))?);
    let total = plan.rows();
    let first = 0..total.min(ROWS_PER_SLICE);
    let slice = w.historical_slice(&plan, first.clone()).await?;
    let mut head = encoder.start();
    head.extend(encoder.slice(&plan, first.clone(), &slice).map_err(|e| ApiError::internal(&e))?);
    let response =
        Response::builder().header(header::CONTENT_TYPE, encoder.content_type()).header(ROWS_HEADER, total.to_string());
    if first.end == total {
        head.extend(encoder.end().map_err(|e| ApiError::internal(&e))?);
        return Ok(response.body(Body::from(head)).expect("static headers are valid"));
    }

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(SLICES_AHEAD);
    tokio::spawn(async move {
        if tx.send(Ok(head.into())).await.is_err() {
            return;
        }
        // Slices are looked up (and text answers encoded) a few at a time,
        // each on its own task so they share the cores, and sent in order.
        // A Parquet answer's row groups are encoded here, in order, as its
        // writer needs.
        let ranges = (first.end..total).step_by(ROWS_PER_SLICE).map(|start| start..total.min(start + ROWS_PER_SLICE));
        let mut slices = futures_util::stream::iter(ranges)
            .map(|range| {
                let (w, plan, encoder) = (w.clone(), plan.clone(), encoder.clone());
                let task = tokio::spawn(async move {
                    let slice = w.historical_slice(&plan, range.clone()).await.map_err(|e| {
                        tracing::error!(error = %e, at_row = range.start, "historical retrieval failed mid-stream");
                        std::io::Error::other(format!("historical retrieval failed at entity row {}: {e}", range.start))
                    })?;
                    if encoder.in_order() {
                        return Ok(Ready::Slice(range, slice));
                    }
                    encoder.slice(&plan, range, &slice).map(|b| Ready::Encoded(b.into())).map_err(encoding_failed)
                });
                async move { task.await.map_err(|e| std::io::Error::other(format!("historical slice task: {e}")))? }
            })
            .buffered(SLICES_IN_FLIGHT);
        while let Some(ready) = slices.next().await {
            let chunk = ready.and_then(|ready| match ready {
                Ready::Encoded(bytes) => Ok(bytes),
                Ready::Slice(range, slice) => {
                    encoder.slice(&plan, range, &slice).map(Bytes::from).map_err(encoding_failed)
                }
            });
            let failed = chunk.is_err();
            // A closed channel: the client went away; stop working for it.
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
        let _ = tx.send(encoder.end().map(Bytes::from).map_err(encoding_failed)).await;
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok(response.body(Body::from_stream(stream)).expect("static headers are valid"))
}

/// A slice done by its task: encoded, or left for the in-order encoder.
enum Ready {
    Encoded(Bytes),
    Slice(Range<usize>, HistoricalSlice),
}

fn encoding_failed(e: String) -> std::io::Error {
    tracing::error!(error = %e, "encoding the historical answer failed mid-stream");
    std::io::Error::other(format!("encoding the answer failed: {e}"))
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Json,
    Csv { header: bool },
    Parquet,
}

/// Writes the answer: every input column as given, then one column per ref,
/// then the provenance columns, if asked for.
struct Encoder {
    format: Format,
    /// Input columns, refs, provenance columns.
    columns: Vec<String>,
    /// The Parquet writer of a Parquet answer.
    parquet: Option<ParquetAnswer>,
}

impl Encoder {
    fn new(format: Format, plan: &HistoricalPlan) -> Result<Self, String> {
        let mut columns = plan.frame.columns.clone();
        columns.extend(plan.refs.iter().map(ToString::to_string));
        columns.extend(plan.provenance_columns.iter().cloned());
        let parquet = match format {
            Format::Parquet => {
                let features: Vec<_> =
                    plan.refs.iter().map(ToString::to_string).zip(plan.ref_types().iter().copied()).collect();
                Some(ParquetAnswer::new(&plan.frame.columns, &features, &plan.provenance_columns)?)
            }
            _ => None,
        };
        Ok(Encoder { format, columns, parquet })
    }

    /// Whether slices must be encoded one after the other, in order (the
    /// Parquet writer's row groups); text slices encode independently.
    fn in_order(&self) -> bool {
        matches!(self.format, Format::Parquet)
    }

    fn content_type(&self) -> &'static str {
        match self.format {
            Format::Json => "application/json",
            Format::Csv { .. } => "text/csv; charset=utf-8",
            Format::Parquet => PARQUET,
        }
    }

    fn start(&self) -> Vec<u8> {
        match self.format {
            Format::Parquet => self.parquet.as_ref().map(ParquetAnswer::start).unwrap_or_default(),
            Format::Json => b"{\"rows\":[".to_vec(),
            Format::Csv { header: false } => Vec::new(),
            Format::Csv { header: true } => {
                let mut w = csv::Writer::from_writer(Vec::new());
                // Writing to a Vec cannot fail.
                let _ = w.write_record(&self.columns);
                w.into_inner().unwrap_or_default()
            }
        }
    }

    fn slice(&self, plan: &HistoricalPlan, rows: Range<usize>, slice: &HistoricalSlice) -> Result<Vec<u8>, String> {
        match self.format {
            Format::Parquet => {
                let answer = self.parquet.as_ref().ok_or("no Parquet writer")?;
                answer.slice(parquet_columns(plan, rows, slice))
            }
            Format::Json => self.json_rows(plan, rows, slice),
            Format::Csv { .. } => csv_rows(plan, rows, slice),
        }
    }

    fn json_rows(&self, plan: &HistoricalPlan, rows: Range<usize>, slice: &HistoricalSlice) -> Result<Vec<u8>, String> {
        let frame = &plan.frame;
        let mut out = Vec::with_capacity(rows.len() * 64 * self.columns.len());
        for (n, i) in rows.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'{');
            let features = slice.columns.iter().map(|c| cell_value(c.as_ref(), n).map(|v| v.to_json()));
            let provenance = slice.provenance.iter().map(|p| provenance_json(p, n));
            let cells = frame.cells(i).map(|c| Ok(c.to_json())).chain(features).chain(provenance);
            for (c, (name, cell)) in self.columns.iter().zip(cells).enumerate() {
                if c > 0 {
                    out.push(b',');
                }
                // Serializing strings and JSON values to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut out, name);
                out.push(b':');
                let _ = serde_json::to_writer(&mut out, &cell?);
            }
            out.push(b'}');
        }
        Ok(out)
    }

    fn end(&self) -> Result<Vec<u8>, String> {
        match self.format {
            Format::Json => Ok(b"]}".to_vec()),
            Format::Csv { .. } => Ok(Vec::new()),
            Format::Parquet => self.parquet.as_ref().ok_or("no Parquet writer")?.finish(),
        }
    }
}

/// A slice's CSV records: the input cells as sent, then each feature's
/// text as [`Value::to_text`] writes it, then the provenance text.
fn csv_rows(plan: &HistoricalPlan, rows: Range<usize>, slice: &HistoricalSlice) -> Result<Vec<u8>, String> {
    let frame = &plan.frame;
    let width = frame.columns.len() + slice.columns.len() + slice.provenance.len();
    let mut w = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 12 * width));
    let mut text = Vec::with_capacity(64);
    let failed = |e: csv::Error| format!("writing CSV: {e}");
    for (n, i) in rows.enumerate() {
        for cell in frame.cells(i) {
            w.write_field(cell.text().as_bytes()).map_err(failed)?;
        }
        for column in &slice.columns {
            text.clear();
            cell_text(&mut text, column.as_ref(), n)?;
            w.write_field(&text).map_err(failed)?;
        }
        for p in &slice.provenance {
            w.write_field(if p.is_null(n) { "" } else { p.value(n) }).map_err(failed)?;
        }
        w.write_record(None::<&[u8]>).map_err(failed)?;
    }
    w.into_inner().map_err(|e| format!("writing CSV: {e}"))
}

/// Appends the text of `column[row]` as [`Value::to_text`] writes the
/// value: nothing for null or a non-finite float.
fn cell_text(out: &mut Vec<u8>, column: &dyn Array, row: usize) -> Result<(), String> {
    use std::io::Write;
    if column.is_null(row) {
        return Ok(());
    }
    // Writing to a Vec cannot fail.
    match column.data_type() {
        DataType::Float64 => {
            let x = column.as_primitive::<Float64Type>().value(row);
            if x.is_finite() {
                let _ = write!(out, "{x}");
            }
        }
        DataType::Int64 => {
            let _ = write!(out, "{}", column.as_primitive::<Int64Type>().value(row));
        }
        DataType::Boolean => out.extend_from_slice(if column.as_boolean().value(row) { b"true" } else { b"false" }),
        DataType::Utf8 => out.extend_from_slice(column.as_string::<i32>().value(row).as_bytes()),
        _ => out.extend_from_slice(cell_value(column, row)?.to_text().as_bytes()),
    }
    Ok(())
}

/// `column[row]` as a value (null for null).
fn cell_value(column: &dyn Array, row: usize) -> Result<Value, String> {
    Ok(value_at(column, row).map_err(|e| e.to_string())?.unwrap_or(Value::Null))
}

/// A provenance cell in JSON: the object, or null.
fn provenance_json(column: &StringArray, row: usize) -> Result<serde_json::Value, String> {
    if column.is_null(row) {
        return Ok(serde_json::Value::Null);
    }
    let provenance = Provenance::parse(column.value(row)).map_err(|e| format!("stored provenance: {e}"))?;
    serde_json::to_value(provenance).map_err(|e| e.to_string())
}

/// One slice of the answer as Arrow columns, in the order of
/// [`ParquetAnswer::new`]'s schema.
fn parquet_columns(plan: &HistoricalPlan, rows: Range<usize>, slice: &HistoricalSlice) -> Vec<ArrayRef> {
    let frame = &plan.frame;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(frame.columns.len() + plan.refs.len());
    for (c, name) in frame.columns.iter().enumerate() {
        columns.push(if name == "event_timestamp" {
            let micros: Vec<i64> = rows.clone().map(|i| plan.time(i).micros()).collect();
            Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC"))
        } else {
            let text = rows.clone().map(|i| Some(frame.cell(i, c).text()).filter(|t| !t.is_empty()));
            Arc::new(text.collect::<StringArray>())
        });
    }
    columns.extend(slice.columns.iter().cloned());
    columns.extend(slice.provenance.iter().map(|p| Arc::new(p.clone()) as ArrayRef));
    columns
}
