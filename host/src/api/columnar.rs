//! Columnar bodies: Parquet files and Arrow IPC streams in, decoded into
//! Arrow record batches for `service::columnar`, and training data out as
//! Parquet ([`ParquetAnswer`]).
//!
//! Decoding runs on a blocking thread (a large Parquet body is CPU work),
//! and stops once the decoded batches pass [`MAX_DECODED_BYTES`]: a body
//! within the upload limit can still decompress to far more, and the whole
//! request is validated before anything is written, so it is held at once.

use super::error::ApiError;
use crate::store::delta::array_type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use bytes::Bytes;

/// `Content-Type` of a Parquet file.
pub const PARQUET: &str = "application/vnd.apache.parquet";
/// `Content-Type` of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// Most bytes of Arrow arrays one request may decode to: 1 GiB, about four
/// times what 1M rows of a dozen float64 features take.
pub const MAX_DECODED_BYTES: usize = 1 << 30;

/// Rows per decoded batch.
const BATCH_ROWS: usize = 64 * 1024;

/// A columnar body format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Parquet,
    ArrowStream,
}

impl Format {
    /// The format a request's `Content-Type` names, if it is a columnar one.
    pub fn of(headers: &HeaderMap) -> Option<Format> {
        let text = headers.get(CONTENT_TYPE)?.to_str().ok()?;
        let mime = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match mime.as_str() {
            PARQUET => Some(Format::Parquet),
            ARROW_STREAM => Some(Format::ArrowStream),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Parquet => "Parquet",
            Format::ArrowStream => "Arrow IPC stream",
        }
    }
}

/// Decodes `body` as `format`; an unreadable body is 400 `invalid_request`
/// naming the format and the decoder's reason.
pub async fn read_batches(format: Format, body: Bytes) -> Result<Vec<RecordBatch>, ApiError> {
    let decoded = tokio::task::spawn_blocking(move || decode(format, body))
        .await
        .map_err(|e| ApiError::invalid(format!("decoding the body failed: {e}")))?;
    decoded.map_err(|e| ApiError::invalid(format!("the body is not a readable {}: {e}", format.name())))
}

fn decode(format: Format, body: Bytes) -> Result<Vec<RecordBatch>, String> {
    let batches: Box<dyn Iterator<Item = Result<RecordBatch, String>>> = match format {
        Format::Parquet => {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
                .map_err(|e| e.to_string())?
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| e.to_string())?;
            Box::new(reader.map(|b| b.map_err(|e| e.to_string())))
        }
        Format::ArrowStream => {
            let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
                .map_err(|e| e.to_string())?;
            Box::new(reader.map(|b| b.map_err(|e| e.to_string())))
        }
    };
    let mut out = Vec::new();
    let mut decoded = 0usize;
    for batch in batches {
        let batch = batch?;
        decoded += batch.get_array_memory_size();
        if decoded > MAX_DECODED_BYTES {
            return Err(format!(
                "it decodes to more than {MAX_DECODED_BYTES} bytes of columns; send it in several requests"
            ));
        }
        out.push(batch);
    }
    Ok(out)
}

/// Training data as Parquet (`Accept: application/vnd.apache.parquet`):
/// one row group per slice of the answer, streamed as each is encoded, the
/// footer at the end. Columns: `event_timestamp` as `timestamp[us, UTC]`,
/// the other input columns as text (as they came; empty or null is null),
/// each feature in its declared type, provenance as text.
pub struct ParquetAnswer {
    schema: arrow_schema::SchemaRef,
    /// The writer and what it has written since bytes were last taken.
    writer: std::sync::Mutex<Option<parquet::arrow::ArrowWriter<SharedBuffer>>>,
    buffer: SharedBuffer,
}

/// A `Write` whose bytes the encoder takes out after each row group.
#[derive(Clone, Default)]
struct SharedBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuffer {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("buffer lock"))
    }
}

impl ParquetAnswer {
    /// An answer with `input` columns (`event_timestamp` among them), then
    /// features of `types`, then provenance columns.
    pub fn new(
        input: &[String],
        features: &[(String, crate::model::ValueType)],
        provenance: &[String],
    ) -> Result<Self, String> {
        use arrow_schema::{Field, Schema};
        let mut fields: Vec<Field> = input
            .iter()
            .map(|c| {
                if c == "event_timestamp" {
                    Field::new(c, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false)
                } else {
                    Field::new(c, DataType::Utf8, true)
                }
            })
            .collect();
        fields.extend(features.iter().map(|(name, ty)| Field::new(name, array_type(*ty), true)));
        fields.extend(provenance.iter().map(|name| Field::new(name, DataType::Utf8, true)));
        let schema = std::sync::Arc::new(Schema::new(fields));
        let buffer = SharedBuffer::default();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
            .build();
        let writer = parquet::arrow::ArrowWriter::try_new(buffer.clone(), schema.clone(), Some(props))
            .map_err(|e| e.to_string())?;
        Ok(ParquetAnswer { schema, writer: std::sync::Mutex::new(Some(writer)), buffer })
    }

    /// Encodes one slice as a row group; returns the bytes to send.
    pub fn slice(&self, columns: Vec<ArrayRef>) -> Result<Vec<u8>, String> {
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())?;
        let mut guard = self.writer.lock().expect("writer lock");
        let writer = guard.as_mut().ok_or("the answer is already finished")?;
        writer.write(&batch).map_err(|e| e.to_string())?;
        writer.flush().map_err(|e| e.to_string())?;
        Ok(self.buffer.take())
    }

    /// The footer (and anything not yet taken).
    pub fn finish(&self) -> Result<Vec<u8>, String> {
        let writer = self.writer.lock().expect("writer lock").take().ok_or("the answer is already finished")?;
        writer.close().map_err(|e| e.to_string())?;
        Ok(self.buffer.take())
    }

    /// The bytes written so far (the magic number, before any slice).
    pub fn start(&self) -> Vec<u8> {
        self.buffer.take()
    }
}
