//! Moving logged writes into their tables: the flusher.
//!
//! A table is flushed when enough rows or bytes wait for it, or when its
//! oldest waiting entry is old enough, and at shutdown. One host flushes a
//! table at a time: the flusher holds the table's lease in the registry
//! database while it commits, so hosts sharing a registry and a table root
//! never race to append the same entries. An entry leaves the log only
//! after the commit that holds its rows; a crash in between flushes it
//! again, and the merge keeps one of the two copies (same key, same
//! `write_seq`).

use super::DeltaOffline;
use super::layout::{self, Kind};
use crate::model::Timestamp;
use crate::store::{LogEntry, PendingTable, StoreError, StoreResult, WriteLog};
use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// When waiting writes are flushed.
#[derive(Debug, Clone)]
pub struct FlushPolicy {
    /// Flush a table once this many rows wait for it.
    pub rows: u64,
    /// ... or this many payload bytes.
    pub bytes: u64,
    /// ... or its oldest waiting entry is this old.
    pub age: Duration,
    /// How often the flusher looks.
    pub interval: Duration,
    /// How long a flusher's lease on a table lasts; a host that dies
    /// mid-flush holds the table this long at most.
    pub lease: Duration,
    /// Compact a table after a flush once it has this many data files.
    pub compact_files: u64,
    /// Files superseded by a compaction are deleted this long after, so
    /// reads that started on an older version can still finish.
    pub retention: Duration,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            rows: 100_000,
            bytes: 32 << 20,
            age: Duration::from_secs(5),
            interval: Duration::from_millis(500),
            lease: Duration::from_secs(60),
            compact_files: 64,
            retention: Duration::from_secs(3600),
        }
    }
}

impl FlushPolicy {
    fn due(&self, table: &PendingTable, now: Timestamp) -> bool {
        let age = i64::try_from(self.age.as_micros()).unwrap_or(i64::MAX);
        table.rows >= self.rows || table.bytes >= self.bytes || now.0.saturating_sub(table.oldest.0) >= age
    }
}

/// Rows moved per commit at most.
const ROWS_PER_COMMIT: u64 = 1_000_000;

pub(super) fn encode_payload(batch: &RecordBatch) -> StoreResult<Vec<u8>> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 2 + 1024);
    let mut writer = StreamWriter::try_new(&mut out, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

fn decode_payload(payload: &[u8]) -> StoreResult<Vec<RecordBatch>> {
    let reader = StreamReader::try_new(payload, None)
        .map_err(|e| StoreError::Corrupt(format!("unreadable write log entry: {e}")))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| StoreError::Corrupt(format!("unreadable write log entry: {e}")))
}

/// One log entry's rows as table rows, stamped with its seq.
pub(super) fn entry_rows(kind: Kind, entry: &LogEntry) -> StoreResult<Vec<RecordBatch>> {
    decode_payload(&entry.payload)?
        .iter()
        .map(|payload| layout::complete(kind, payload, entry.seq, entry.written_at.0))
        .collect()
}

/// Every waiting entry of `path` as table rows, with their sequence numbers.
async fn entries_as_rows(
    kind: Kind,
    log: &dyn WriteLog,
    path: &str,
    max_rows: u64,
) -> StoreResult<(Vec<RecordBatch>, Vec<i64>)> {
    let entries = log.entries(path, max_rows).await?;
    let mut batches = Vec::with_capacity(entries.len());
    let mut seqs = Vec::with_capacity(entries.len());
    for entry in entries {
        batches.extend(entry_rows(kind, &entry)?);
        seqs.push(entry.seq);
    }
    Ok((batches, seqs))
}

/// The table's waiting rows, for a read to merge with the table's, and the
/// entries they came from.
pub(super) async fn logged_batches(
    kind: Kind,
    log: &dyn WriteLog,
    path: &str,
) -> StoreResult<(Vec<RecordBatch>, Vec<i64>)> {
    entries_as_rows(kind, log, path, u64::MAX).await
}

impl DeltaOffline {
    /// Moves the table's waiting rows into it, if this host gets its lease.
    /// Returns the rows moved.
    pub(super) async fn flush_table(&self, path: &str) -> StoreResult<u64> {
        let Some((kind, _)) = Kind::of_path(path) else {
            return Err(StoreError::Corrupt(format!("write log entries for unknown table '{path}'")));
        };
        let lease = format!("flush:{path}");
        if !self.log.lease(&lease, &self.host, self.policy.lease).await? {
            return Ok(0);
        }
        let mut moved = self.move_entries(kind, path, &lease).await;
        if moved.as_ref().is_ok_and(|&rows| rows > 0) {
            // Flushes add small files; past a few dozen, scans pay for them.
            let compacted = async {
                if self.tables.file_count(path).await? >= self.policy.compact_files {
                    let compacted = self.tables.compact(path, self.policy.retention).await;
                    self.local.changed(path);
                    if let Some((_, commit)) = compacted? {
                        self.kept.compacted(path, commit);
                    }
                }
                StoreResult::Ok(())
            };
            if let Err(e) = compacted.await {
                moved = Err(e);
            }
        }
        if let Err(e) = self.log.release(&lease, &self.host).await {
            tracing::warn!(table = path, error = %e, "could not release a flush lease");
        }
        moved
    }

    async fn move_entries(&self, kind: Kind, path: &str, lease: &str) -> StoreResult<u64> {
        let mut moved = 0;
        loop {
            let (batches, seqs) = entries_as_rows(kind, &*self.log, path, ROWS_PER_COMMIT).await?;
            if seqs.is_empty() {
                return Ok(moved);
            }
            let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
            let appended = self.tables.append(path, batches.clone()).await;
            self.local.changed(path);
            if let Some(commit) = appended? {
                self.kept.committed(kind, path, commit, &batches)?;
            }
            let removed = self.log.remove(path, &seqs).await;
            self.local.changed(path);
            removed?;
            moved += rows;
            tracing::debug!(table = path, rows, entries = seqs.len(), "flushed the write log");
            // Still ours? Another host may take over once it lapses.
            if !self.log.lease(lease, &self.host, self.policy.lease).await? {
                return Ok(moved);
            }
        }
    }

    /// Starts the background flusher; it stops when the store is dropped.
    pub fn spawn_flusher(self: &Arc<Self>) {
        let store = Arc::downgrade(self);
        tokio::spawn(async move { flusher(store).await });
    }
}

async fn flusher(store: Weak<DeltaOffline>) {
    loop {
        let Some(this) = store.upgrade() else { return };
        let interval = this.policy.interval;
        match this.log.pending().await {
            Ok(pending) => {
                let now = crate::clock::Clock::now(&crate::clock::SystemClock);
                for table in pending.iter().filter(|t| this.policy.due(t, now)) {
                    if let Err(e) = this.flush_table(&table.table).await {
                        tracing::warn!(table = %table.table, error = %e, "flushing the write log failed; will retry");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the write log"),
        }
        let wake = async { this.wake.notified().await };
        let _ = tokio::time::timeout(interval, wake).await;
        drop(this);
    }
}
