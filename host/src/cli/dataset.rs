//! `wafer dataset`: training data from a running server. The entity rows
//! of a CSV file go to `POST /v1/features/historical` in batches cut on
//! record boundaries, and the CSV answers are appended to one file.
//!
//! With `--out FILE.parquet` each batch is answered as Parquet and the
//! batches' rows are copied into one Parquet file.
//!
//! The answer is written to `<out>.partial` and renamed to `<out>` only
//! once every batch has arrived whole. The server aborts a response that
//! fails midway, which shows here as a body read error, so any such error
//! fails the command and the partial file is removed: `<out>` is never a
//! cut-off answer.

use super::DatasetArgs;
use super::client::Remote;
use crate::api::HISTORICAL_ROWS_HEADER as ROWS_HEADER;
use crate::service::historical::EVENT_TIMESTAMP;
use anyhow::{Context, anyhow, bail, ensure};
use indicatif::{HumanCount, ProgressBar, ProgressState, ProgressStyle};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub async fn dataset(args: DatasetArgs) -> anyhow::Result<()> {
    let features: Vec<&str> = args.features.iter().map(|f| f.trim()).filter(|f| !f.is_empty()).collect();
    ensure!(!features.is_empty(), "--features names no feature (e.g. --features technical:sma_20,risk:beta)");
    let partial = partial_path(&args.out);
    refuse_to_overwrite(&args.entities, &[&args.out, &partial])?;
    let batches = Batches::read(&args.entities, args.batch_rows)?;

    let started = Instant::now();
    // On Ctrl-C the download is dropped (closing the file) and the partial
    // file removed like on any other failure.
    let result = tokio::select! {
        r = download(&args, &features, &batches, &partial) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    let result = result.and_then(|()| {
        std::fs::rename(&partial, &args.out)
            .with_context(|| format!("renaming {} to {}", partial.display(), args.out.display()))
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "wrote {} rows x {} features to {} in {secs:.2} s ({} rows/s)",
        batches.rows,
        features.len(),
        args.out.display(),
        HumanCount((batches.rows as f64 / secs.max(1e-9)) as u64)
    );
    Ok(())
}

/// The Parquet answer's media type, asked for when `--out` ends in
/// `.parquet`.
const PARQUET: &str = "application/vnd.apache.parquet";
/// Where training data is asked for.
const HISTORICAL: &str = "/v1/features/historical";

/// Whether `out` names a Parquet file (by its extension, any case).
fn is_parquet(out: &Path) -> bool {
    out.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Sends every batch and streams the answers into `partial`.
async fn download(args: &DatasetArgs, features: &[&str], batches: &Batches, partial: &Path) -> anyhow::Result<()> {
    if is_parquet(&args.out) {
        return download_parquet(args, features, batches, partial).await;
    }
    let remote = Remote::streaming(&args.remote);
    let refs = features.join(",");
    let mut entities = File::open(&args.entities).with_context(|| format!("opening {}", args.entities.display()))?;
    let mut out = BufWriter::new(File::create(partial).with_context(|| format!("creating {}", partial.display()))?);
    let bar = progress_bar(batches.rows);
    let count = batches.list.len();
    let mut done = 0;
    for (i, batch) in batches.list.iter().enumerate() {
        let which = format!("batch {} of {count} (entity rows {}..{})", i + 1, done + 1, done + batch.rows);
        let body =
            batches.body(&mut entities, batch).with_context(|| format!("reading {}", args.entities.display()))?;
        // Only the first answer has a header row: the rest append to it.
        let header = i == 0;
        let query = [
            ("features", refs.clone()),
            ("created_cutoff", args.created_cutoff.to_string()),
            ("include_provenance", args.include_provenance.to_string()),
            ("header", header.to_string()),
        ];
        let mut resp = ask(&remote, &query, "text/csv", body, &which).await?;
        let reported = resp.headers().get(ROWS_HEADER).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(n) = reported {
            ensure!(n == batch.rows, "the server read {n} entity rows in {which}");
        }
        // Every answer row ends in a newline; a cell with a newline inside
        // makes the count run ahead, hence the cap.
        let mut newlines = 0;
        while let Some(chunk) =
            resp.chunk().await.with_context(|| format!("the server's answer to {which} broke off"))?
        {
            out.write_all(&chunk).with_context(|| format!("writing {}", partial.display()))?;
            newlines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
            bar.set_position(done + newlines.saturating_sub(u64::from(header)).min(batch.rows));
        }
        ensure!(newlines >= batch.rows + u64::from(header), "the server's answer to {which} is short of rows");
        done += batch.rows;
        bar.set_position(done);
    }
    let file =
        out.into_inner().map_err(|e| e.into_error()).with_context(|| format!("writing {}", partial.display()))?;
    file.sync_all().with_context(|| format!("writing {}", partial.display()))?;
    bar.finish();
    Ok(())
}

/// As [`download`], into one Parquet file: each batch is answered as a
/// Parquet file of its own, whose row groups are copied into `partial` (one
/// schema throughout: the same columns in every batch).
async fn download_parquet(
    args: &DatasetArgs,
    features: &[&str],
    batches: &Batches,
    partial: &Path,
) -> anyhow::Result<()> {
    let remote = Remote::streaming(&args.remote);
    let refs = features.join(",");
    let mut entities = File::open(&args.entities).with_context(|| format!("opening {}", args.entities.display()))?;
    let file = File::create(partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut writer: Option<parquet::arrow::ArrowWriter<File>> = None;
    let bar = progress_bar(batches.rows);
    let count = batches.list.len();
    let mut done = 0;
    let mut file = Some(file);
    for (i, batch) in batches.list.iter().enumerate() {
        let which = format!("batch {} of {count} (entity rows {}..{})", i + 1, done + 1, done + batch.rows);
        let body =
            batches.body(&mut entities, batch).with_context(|| format!("reading {}", args.entities.display()))?;
        let query = [
            ("features", refs.clone()),
            ("created_cutoff", args.created_cutoff.to_string()),
            ("include_provenance", args.include_provenance.to_string()),
        ];
        let resp = ask(&remote, &query, PARQUET, body, &which).await?;
        let answer = resp.bytes().await.with_context(|| format!("the server's answer to {which} broke off"))?;
        let unreadable = || format!("the server's answer to {which} is not a readable Parquet file");
        let builder =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(answer).with_context(unreadable)?;
        if writer.is_none() {
            let file = file.take().expect("the file is opened once");
            writer = Some(
                parquet::arrow::ArrowWriter::try_new(file, builder.schema().clone(), None)
                    .with_context(|| format!("writing {}", partial.display()))?,
            );
        }
        let w = writer.as_mut().expect("opened above");
        let mut rows = 0;
        for record_batch in builder.build().with_context(unreadable)? {
            let record_batch = record_batch.with_context(|| format!("reading the answer to {which}"))?;
            w.write(&record_batch).with_context(|| format!("writing {} ({which})", partial.display()))?;
            rows += record_batch.num_rows() as u64;
        }
        ensure!(rows == batch.rows, "the server's answer to {which} has {rows} rows, not {}", batch.rows);
        done += batch.rows;
        bar.set_position(done);
    }
    // Every entities file has at least one batch (a header alone is one).
    let writer = writer.ok_or_else(|| anyhow!("no answer arrived"))?;
    let file = writer.into_inner().with_context(|| format!("writing {}", partial.display()))?;
    file.sync_all().with_context(|| format!("writing {}", partial.display()))?;
    bar.finish();
    Ok(())
}

/// Posts one batch of entity rows for an answer in `accept`; a refusal is
/// the server's reason (with a way out when the batch was too large), and
/// an answer in another format an error.
async fn ask(
    remote: &Remote,
    query: &[(&str, String)],
    accept: &str,
    body: Vec<u8>,
    which: &str,
) -> anyhow::Result<reqwest::Response> {
    let path = HISTORICAL;
    let resp = remote
        .request(Method::POST, path)
        .query(query)
        .header(CONTENT_TYPE, "text/csv")
        .header(ACCEPT, accept)
        .body(body)
        .send()
        .await
        .with_context(|| format!("sending {which} to {}", remote.base()))?;
    if !resp.status().is_success() {
        let too_large = resp.status() == StatusCode::PAYLOAD_TOO_LARGE;
        let e = remote.failure(&Method::POST, path, resp).await;
        if too_large {
            bail!("{e} ({which}; try a smaller --batch-rows)");
        }
        return Err(e);
    }
    let content_type = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    ensure!(content_type.starts_with(accept), "the server answered {content_type}, not {accept}");
    Ok(resp)
}

/// Over all entity rows, with the rate as a whole number (indicatif's
/// `{per_sec}` shows four decimals).
fn progress_bar(rows: u64) -> ProgressBar {
    let bar = ProgressBar::new(rows);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {human_pos}/{human_len} rows ({rate} rows/s, ETA {eta})")
            .expect("template")
            .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", HumanCount(state.per_sec() as u64));
            })
            .progress_chars("=> "),
    );
    // The spinner shows life while the server plans a batch.
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `out.csv` -> `out.csv.partial`, in the same directory so the final
/// rename stays on one file system.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn refuse_to_overwrite(entities: &Path, outputs: &[&Path]) -> anyhow::Result<()> {
    let input = entities.canonicalize().with_context(|| format!("entities file {}", entities.display()))?;
    for out in outputs {
        if out.canonicalize().is_ok_and(|o| o == input) {
            bail!("writing {} would overwrite the entities file; choose another --out", out.display());
        }
    }
    Ok(())
}

/// The entities file cut into batches of whole records. Only byte ranges
/// are kept, and each batch is read back from the file when it is sent,
/// so a file larger than memory works.
struct Batches {
    /// The header row as it is in the file, sent ahead of every batch.
    header: Vec<u8>,
    list: Vec<Batch>,
    /// Data rows in all.
    rows: u64,
}

struct Batch {
    /// The batch's records in the file.
    bytes: Range<u64>,
    rows: u64,
}

impl Batches {
    /// Reads the file once, checking its header and that every record
    /// parses, and notes where each batch starts. The `csv` reader finds
    /// the boundaries, so quoted cells may hold newlines.
    fn read(path: &Path, batch_rows: u64) -> anyhow::Result<Self> {
        let name = path.display();
        let mut reader = csv::Reader::from_reader(File::open(path).with_context(|| format!("opening {name}"))?);
        let headers = reader.headers().with_context(|| format!("{name}: reading the header row"))?;
        ensure!(!headers.iter().all(|h| h.trim().is_empty()), "{name} has no header row");
        ensure!(
            headers.iter().any(|h| h.trim() == EVENT_TIMESTAMP),
            "{name}: the header row has no '{EVENT_TIMESTAMP}' column (the time each row's features must be \
             known at); columns: {}",
            headers.iter().collect::<Vec<_>>().join(", ")
        );
        let header_end = reader.position().byte();
        let mut list = Vec::new();
        let mut record = csv::ByteRecord::new();
        let mut start = header_end;
        let mut rows = 0;
        while reader.read_byte_record(&mut record).with_context(|| format!("reading {name}"))? {
            if rows > 0 && rows % batch_rows == 0 {
                let at = record.position().map_or(start, csv::Position::byte);
                list.push(Batch { bytes: start..at, rows: batch_rows });
                start = at;
            }
            rows += 1;
        }
        // The last batch, or the only one (a header without rows still
        // gets an answer: the header row, or the server's objections).
        list.push(Batch { bytes: start..reader.position().byte(), rows: rows - list.len() as u64 * batch_rows });

        let mut header = Vec::with_capacity(header_end as usize);
        File::open(path)?.take(header_end).read_to_end(&mut header).with_context(|| format!("reading {name}"))?;
        Ok(Batches { header, list, rows })
    }

    /// The request body of one batch: the header row, then its records.
    fn body(&self, file: &mut File, batch: &Batch) -> std::io::Result<Vec<u8>> {
        let len = batch.bytes.end - batch.bytes.start;
        let mut body = Vec::with_capacity(self.header.len() + len as usize);
        body.extend_from_slice(&self.header);
        file.seek(SeekFrom::Start(batch.bytes.start))?;
        file.take(len).read_to_end(&mut body)?;
        if body.len() as u64 != self.header.len() as u64 + len {
            return Err(std::io::Error::other("the file changed while it was being sent"));
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches_of(csv: &str, batch_rows: u64) -> (Vec<String>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entities.csv");
        std::fs::write(&path, csv).unwrap();
        let batches = Batches::read(&path, batch_rows).unwrap();
        let mut file = File::open(&path).unwrap();
        let bodies =
            batches.list.iter().map(|b| String::from_utf8(batches.body(&mut file, b).unwrap()).unwrap()).collect();
        (bodies, batches.rows)
    }

    #[test]
    fn batches_are_cut_between_records_and_each_has_the_header() {
        let csv = "id,event_timestamp,note\n1,2024-01-01,\"two\nlines\"\n2,2024-01-02,x\r\n3,2024-01-03,\"a,b\"\n4,t,y";
        let (bodies, rows) = batches_of(csv, 2);
        assert_eq!(rows, 4);
        // The reader ends a record at `\r`, so a CRLF's `\n` opens the next
        // batch: an empty line, which CSV readers skip.
        assert_eq!(
            bodies,
            [
                "id,event_timestamp,note\n1,2024-01-01,\"two\nlines\"\n2,2024-01-02,x\r",
                "id,event_timestamp,note\n\n3,2024-01-03,\"a,b\"\n4,t,y",
            ]
        );
        let (bodies, _) = batches_of(csv, 3);
        assert_eq!(bodies[1], "id,event_timestamp,note\n4,t,y");
        let (bodies, _) = batches_of(csv, 1_000_000);
        assert_eq!(bodies, [csv]);
    }

    #[test]
    fn a_header_without_rows_is_one_empty_batch() {
        let (bodies, rows) = batches_of("id,event_timestamp\n", 2);
        assert_eq!((bodies, rows), (vec!["id,event_timestamp\n".to_string()], 0));
    }

    #[test]
    fn entities_without_event_timestamp_or_with_ragged_rows_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entities.csv");
        std::fs::write(&path, "id,ts\n1,2\n").unwrap();
        let e = Batches::read(&path, 10).err().unwrap();
        assert!(format!("{e:#}").contains("no 'event_timestamp' column"), "{e:#}");
        assert!(format!("{e:#}").ends_with("columns: id, ts"), "{e:#}");
        std::fs::write(&path, "").unwrap();
        assert!(format!("{:#}", Batches::read(&path, 10).err().unwrap()).contains("no header row"));
        std::fs::write(&path, "id,event_timestamp\n1,2\n3\n").unwrap();
        let e = Batches::read(&path, 10).err().unwrap();
        assert!(format!("{e:#}").contains("record"), "{e:#}");
    }
}
