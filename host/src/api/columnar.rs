//! Columnar request bodies: Parquet files and Arrow IPC streams, decoded
//! into Arrow record batches for `service::columnar`.
//!
//! Decoding runs on a blocking thread (a large Parquet body is CPU work),
//! and stops once the decoded batches pass [`MAX_DECODED_BYTES`]: a body
//! within the upload limit can still decompress to far more, and the whole
//! request is validated before anything is written, so it is held at once.

use super::error::ApiError;
use arrow_array::RecordBatch;
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
