//! The lakehouse offline store: source rows and feature history in Delta
//! Lake tables of typed columns (one per source, one per feature group)
//! under one root, on the local filesystem or object storage.
//!
//! Writes are acknowledged once durable in the registry database's write
//! log ([`WriteLog`]); a flusher moves them into the tables in batches
//! (`flush.rs`). Large feature writes (materialization, bulk loads) skip
//! the log and commit to their table directly. Every read merges the log
//! and the table (`merge.rs`), reading the log first: a flush that lands
//! in between shows the same rows twice, which the merge folds, and never
//! none.
//!
//! - `layout.rs`: the columns of a table and of a log payload.
//! - `batch.rs`: feature rows as payload columns, for columnar writes.
//! - `answer.rs`: point-in-time values as columns, for training data.
//! - `table.rs`: Delta tables (open, append, scan, delete).
//! - `merge.rs`: table and log rows as one sorted, deduplicated batch.
//! - `cache.rs`: merges kept in memory and caught up as writes arrive.
//! - `flush.rs`: the leased flusher.
//! - `reads.rs`: the answers each read computes from merged rows.
//! - `stats.rs`: feature statistics accumulated a month of rows at a time.
//! - `import.rs`: offline rows of earlier versions' SQLite file, moved in.

mod answer;
mod batch;
mod cache;
mod flush;
mod import;
mod layout;
mod merge;
mod reads;
mod stats;
mod table;
#[cfg(test)]
mod tests;

pub use answer::{AsOfColumns, array_type, feature_array, table_column, value_at};
pub use batch::FeatureBatch;
pub use flush::FlushPolicy;
pub use import::Imported;

use self::cache::{KeptTables, Lookup, View};
use self::layout::{EVENT_TIMESTAMP, Kind};
use self::merge::Merged;
use self::stats::Statistics;
use self::table::Tables;
use super::{
    AsOfPoints, AsOfRules, Compaction, OfflineStore, SourceRange, StoreError, StoreResult, TableDef, WriteLog,
};
use crate::model::{EntityKey, FeatureRow, FeatureStatistics, FreshnessCounts, SourceRow, Table, Timestamp};
use arrow_array::RecordBatch;
use async_trait::async_trait;
use deltalake::datafusion::prelude::{Expr, col, lit};
use deltalake::datafusion::scalar::ScalarValue;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use tokio::sync::Notify;

/// Feature writes of at least this many rows commit to their table
/// directly: one Parquet file per month touched is cheap at this size, and
/// the log would only copy them.
const DIRECT_ROWS: usize = 5_000;

/// Reads of at most this many entities (or points) load only those
/// entities' rows when the table's merge is not kept in memory.
const SMALL_READ: usize = 100;

pub struct DeltaOffline {
    tables: Tables,
    log: Arc<dyn WriteLog>,
    /// Lease owner of this host's flusher.
    host: String,
    policy: FlushPolicy,
    /// Woken when a write leaves enough rows waiting to be worth a flush.
    wake: Notify,
    /// Tables merged once and kept exact as writes arrive: the
    /// per-entity reads of materialization and compute-on-miss, and the
    /// slices of a point-in-time join, each one lookup instead of a scan.
    kept: KeptTables,
    /// This store, for the background reads.
    me: Weak<DeltaOffline>,
    /// Set when this process is its tables' and log's only writer: then
    /// `local` says when a kept merge is current without asking the log
    /// and the table on every read.
    exclusive: std::sync::atomic::AtomicBool,
    local: cache::LocalChanges,
}

/// Which rows a read needs; the bounds only narrow the scan, so a read
/// still checks what it finds.
#[derive(Default)]
struct Wanted<'a> {
    entities: Option<&'a [EntityKey]>,
    event_max: Option<i64>,
    event_min: Option<i64>,
}

fn micros_lit(v: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(Some(v), Some("UTC".into())))
}

/// The scan predicate for `wanted`: time bounds, and the entities when they
/// have one join key (composite keys are matched after the
/// scan, by the reads).
fn filter(wanted: &Wanted<'_>, join_keys: &[String]) -> Option<Expr> {
    let mut terms = Vec::new();
    if let Some(max) = wanted.event_max {
        terms.push(col(EVENT_TIMESTAMP).lt_eq(micros_lit(max)));
    }
    if let Some(min) = wanted.event_min.filter(|&m| m > i64::MIN) {
        terms.push(col(EVENT_TIMESTAMP).gt_eq(micros_lit(min)));
    }
    if let (Some(entities), [key]) = (wanted.entities, join_keys) {
        let mut names: Vec<&str> = entities.iter().map(EntityKey::as_str).collect();
        names.sort_unstable();
        names.dedup();
        terms.push(col(key.as_str()).in_list(names.into_iter().map(lit).collect(), false));
    }
    terms.into_iter().reduce(Expr::and)
}

impl DeltaOffline {
    /// Opens the tables under `root` (a directory or a `file://` / `s3://`
    /// URL), logging writes to `log`. Call [`DeltaOffline::spawn_flusher`]
    /// to start moving logged writes into the tables.
    pub fn open(
        root: &str,
        options: HashMap<String, String>,
        log: Arc<dyn WriteLog>,
        host: &str,
        policy: FlushPolicy,
    ) -> StoreResult<Arc<Self>> {
        let tables = Tables::new(root, options)?;
        Ok(Arc::new_cyclic(|me| DeltaOffline {
            tables,
            log,
            host: host.to_string(),
            policy,
            wake: Notify::new(),
            kept: KeptTables::default(),
            me: me.clone(),
            exclusive: std::sync::atomic::AtomicBool::new(false),
            local: cache::LocalChanges::default(),
        }))
    }

    /// Declares this process the only writer of the tables and their log
    /// (the registry is a SQLite file, which one process serves). A read
    /// then trusts a kept merge it found current until this process
    /// changes that table, instead of asking the log and the table again:
    /// a read of a few entities becomes a lookup in memory.
    pub fn set_exclusive(&self, exclusive: bool) {
        self.exclusive.store(exclusive, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_exclusive(&self) -> bool {
        self.exclusive.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// One line for the startup log.
    pub fn summary(&self) -> String {
        format!("Delta tables at {}", self.tables.root())
    }

    /// Appends logged rows: durable when the log commits. A sole writer
    /// whose kept merge of the table was current puts the rows into it as
    /// well, so it stays current and the next read asks nothing of the log.
    async fn log_batch(&self, path: &str, batch: &RecordBatch) -> StoreResult<()> {
        let payload = flush::encode_payload(batch)?;
        let was_current = self.is_exclusive() && self.local.unchanged(path);
        let appended = self.log.append(path, &payload, batch.num_rows() as u64).await;
        let kept = match &appended {
            Ok((seq, written_at)) if was_current => {
                self.keep_logged(path, batch, *seq, *written_at).unwrap_or_else(|e| {
                    tracing::debug!(table = path, error = %e, "a kept merge could not take a logged write");
                    false
                })
            }
            _ => false,
        };
        if !kept {
            // Even after a failure: the append may have committed.
            self.local.changed(path);
        }
        appended?;
        if batch.num_rows() as u64 >= self.policy.rows / 4 {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Adds a log entry just appended to the table's kept merge, as the
    /// rows a read of the log would make of it; whether the merge now
    /// holds them (not when none is kept or it is too layered).
    fn keep_logged(&self, path: &str, batch: &RecordBatch, seq: i64, written_at: Timestamp) -> StoreResult<bool> {
        let (Some((kind, _)), Some((version, _))) = (Kind::of_path(path), self.kept.kept(path)) else {
            return Ok(false);
        };
        let rows = layout::complete(kind, batch, seq, written_at.0)?;
        let merged = Merged::new(kind, &[rows], true)?;
        Ok(self.kept.add(kind, path, version, vec![(seq, merged)])?.is_some())
    }

    /// The table's rows `wanted` asks for, log and table merged, with the
    /// log entries they hold.
    async fn load(
        &self,
        kind: Kind,
        name: &str,
        wanted: Wanted<'_>,
        dedup: bool,
    ) -> StoreResult<(Merged, HashSet<i64>)> {
        let path = kind.path(name);
        // The log first: see the module docs.
        let (mut batches, seqs) = flush::logged_batches(kind, &*self.log, &path).await?;
        batches.extend(self.tables.scan(&path, |keys| filter(&wanted, keys)).await?);
        Ok((Merged::new(kind, &batches, dedup)?, seqs.into_iter().collect()))
    }

    /// A table's merged rows, from the kept merge when it is exact for
    /// the table's state or can be caught up from the log (`cache.rs`).
    /// Otherwise a `small` read (a few entities, named in `wanted`) loads
    /// only what `wanted` names and has the whole table read in the
    /// background; any other read merges the whole table and keeps it.
    async fn merged(&self, kind: Kind, name: &str, wanted: Wanted<'_>, small: bool) -> StoreResult<Arc<Merged>> {
        let path = kind.path(name);
        let (version, view) = self.kept_view(kind, &path).await?;
        if let Some(view) = view {
            return match wanted.entities {
                Some(entities) if small && !view.layers.is_empty() => Ok(Arc::new(view.select(kind, entities)?)),
                _ => self.whole(kind, &path, version, view),
            };
        }
        if small && wanted.entities.is_some() {
            self.refill(kind, name);
            return Ok(Arc::new(self.load(kind, name, wanted, true).await?.0));
        }
        self.load_and_keep(kind, name, version).await
    }

    /// The table's newest version and, when a kept merge can be brought to
    /// that state, its view. The log is read before the version: an entry
    /// flushed in between is in the version read.
    async fn kept_view(&self, kind: Kind, path: &str) -> StoreResult<(Option<u64>, Option<View>)> {
        let changes = self.local.count(path);
        if self.is_exclusive()
            && self.local.unchanged(path)
            && let Some((version, view)) = self.kept.kept(path)
        {
            return Ok((version, Some(view)));
        }
        let seqs = self.log.seqs(path).await?;
        let version = self.tables.latest(path).await?.and_then(|t| t.version());
        let view = self.caught_up(kind, path, version, &seqs).await?;
        if view.is_some() {
            self.local.verified(path, changes);
        }
        Ok((version, view))
    }

    /// A view's rows as one merge (its layers folded in and kept).
    fn whole(&self, kind: Kind, path: &str, version: Option<u64>, view: View) -> StoreResult<Arc<Merged>> {
        if view.layers.is_empty() { Ok(view.base) } else { self.kept.fold(kind, path, version, &view) }
    }

    /// The whole table merged, kept as exact for `version` (read before
    /// the rows: see [`DeltaOffline::merged`]).
    async fn load_and_keep(&self, kind: Kind, name: &str, version: Option<u64>) -> StoreResult<Arc<Merged>> {
        let (merged, logged) = self.load(kind, name, Wanted::default(), true).await?;
        let merged = Arc::new(merged);
        let path = kind.path(name);
        self.kept.keep(&path, version, logged, merged.clone());
        // A merge read before a write of this process may replace one that
        // held it: the next read checks the new merge against the log.
        self.local.changed(&path);
        Ok(merged)
    }

    /// The kept merge, caught up with the log entries it lacks; `None`
    /// when there is none for this state.
    async fn caught_up(&self, kind: Kind, path: &str, version: Option<u64>, seqs: &[i64]) -> StoreResult<Option<View>> {
        let missing = match self.kept.lookup(path, version, seqs) {
            Lookup::Current(view) => return Ok(Some(view)),
            Lookup::Stale => return Ok(None),
            Lookup::Behind(missing) => missing,
        };
        let entries = self.log.entries_in(path, &missing).await?;
        if entries.len() != missing.len() {
            // Flushed meanwhile: the table has moved on.
            return Ok(None);
        }
        let mut layers = Vec::with_capacity(entries.len());
        for entry in &entries {
            let batches = flush::entry_rows(kind, entry)?;
            layers.push((entry.seq, Merged::new(kind, &batches, true)?));
        }
        self.kept.add(kind, path, version, layers)
    }

    /// Reads the whole table in the background and keeps it, unless a
    /// read is already under way or the table is too large to keep.
    fn refill(&self, kind: Kind, name: &str) {
        let path = kind.path(name);
        if !self.kept.start_refill(&path) {
            return;
        }
        let (me, name) = (self.me.clone(), name.to_string());
        tokio::spawn(async move {
            let Some(this) = me.upgrade() else { return };
            let read = async {
                let seqs = this.log.seqs(&path).await?;
                let version = this.tables.latest(&path).await?.and_then(|t| t.version());
                if matches!(this.kept.lookup(&path, version, &seqs), Lookup::Stale) {
                    this.load_and_keep(kind, &name, version).await?;
                }
                StoreResult::Ok(())
            };
            if let Err(e) = read.await {
                tracing::debug!(table = %path, error = %e, "reading a table to keep in memory failed");
            }
            this.kept.end_refill(&path);
        });
    }

    /// Deletes a table and what waits for it in the log.
    async fn delete_table(&self, path: &str) -> StoreResult<()> {
        let deleted = async {
            self.log.clear(path).await?;
            self.tables.delete(path).await
        }
        .await;
        self.kept.forget(path);
        self.local.changed(path);
        deleted
    }

    /// Moves every waiting write into its table (at shutdown).
    pub async fn flush_all(&self) -> StoreResult<u64> {
        let mut moved = 0;
        for pending in self.log.pending().await? {
            moved += self.flush_table(&pending.table).await?;
        }
        Ok(moved)
    }
}

#[async_trait]
impl OfflineStore for DeltaOffline {
    async fn write_source_rows(&self, table: &TableDef, rows: &[SourceRow]) -> StoreResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        // Always through the log, even when large: its append stamps
        // `ingested_at` in commit order, which the ingest watermark needs.
        let batch = layout::encode_sources(table, rows)?;
        self.log_batch(&Kind::Source.path(&table.name), &batch).await?;
        Ok(rows.len() as u64)
    }

    async fn read_source(&self, source: &str, entity: &EntityKey, range: SourceRange) -> StoreResult<Vec<SourceRow>> {
        let entities = std::slice::from_ref(entity);
        let wanted = Wanted { entities: Some(entities), ..Wanted::default() };
        let merged = self.merged(Kind::Source, source, wanted, true).await?;
        reads::source_rows(&merged, entity, range)
    }

    async fn read_source_tables(
        &self,
        source: &TableDef,
        entities: &[EntityKey],
        range: SourceRange,
    ) -> StoreResult<Vec<Table>> {
        let wanted = Wanted { entities: Some(entities), ..Wanted::default() };
        let merged = self.merged(Kind::Source, &source.name, wanted, entities.len() <= SMALL_READ).await?;
        entities.iter().map(|entity| reads::source_table(&merged, entity, range, &source.columns)).collect()
    }

    async fn source_entities(&self, source: &str) -> StoreResult<Vec<(EntityKey, Timestamp)>> {
        let merged = self.merged(Kind::Source, source, Wanted::default(), false).await?;
        Ok(reads::newest_per_entity(&merged))
    }

    async fn delete_source_rows(&self, source: &str) -> StoreResult<()> {
        let path = Kind::Source.path(source);
        self.delete_table(&path).await?;
        Ok(())
    }

    async fn source_ingest_watermark(&self, source: &str) -> StoreResult<Option<Timestamp>> {
        let path = Kind::Source.path(source);
        // The log first: an entry flushed meanwhile is then in the table.
        let logged = self.log.newest_written(&path).await?;
        // The newest write of each key is the last ingested, so the merge
        // (kept in memory, as every source read uses it) has the newest time.
        let merged = self.merged(Kind::Source, source, Wanted::default(), false).await?;
        let stored = (0..merged.len()).map(|i| merged.ingested(i)).max().map(Timestamp);
        Ok(logged.max(stored))
    }

    async fn source_changes(&self, source: &str, after: Timestamp) -> StoreResult<Vec<(EntityKey, Timestamp)>> {
        let (merged, _) = self.load(Kind::Source, source, Wanted::default(), false).await?;
        reads::changes_after(&merged, after)
    }

    async fn write_feature_rows(&self, table: &TableDef, rows: &[FeatureRow]) -> StoreResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.write_feature_batch(table, &FeatureBatch::from_rows(table, rows)?).await
    }

    async fn write_feature_batch(&self, table: &TableDef, batch: &FeatureBatch) -> StoreResult<u64> {
        if batch.is_empty() {
            return Ok(0);
        }
        let (path, batch) = (Kind::Features.path(&table.name), batch.record_batch());
        if batch.num_rows() >= DIRECT_ROWS {
            let seq = self.log.next_seq().await?;
            let complete = layout::complete(Kind::Features, batch, seq, 0)?;
            let appended = self.tables.append(&path, vec![complete.clone()]).await;
            self.local.changed(&path);
            if let Some(commit) = appended? {
                self.kept.committed(Kind::Features, &path, commit, &[complete])?;
            }
        } else {
            self.log_batch(&path, batch).await?;
        }
        Ok(batch.num_rows() as u64)
    }

    async fn latest_feature_rows(&self, group: &str, entities: &[EntityKey]) -> StoreResult<Vec<Option<FeatureRow>>> {
        if entities.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = Wanted { entities: Some(entities), ..Wanted::default() };
        let merged = self.merged(Kind::Features, group, wanted, entities.len() <= SMALL_READ).await?;
        reads::latest(&merged, entities)
    }

    async fn delete_feature_rows(&self, group: &str) -> StoreResult<()> {
        let path = Kind::Features.path(group);
        self.delete_table(&path).await?;
        Ok(())
    }

    async fn feature_rows_as_of(
        &self,
        group: &str,
        points: &[(EntityKey, Timestamp)],
        rules: AsOfRules,
    ) -> StoreResult<Vec<Option<FeatureRow>>> {
        if points.is_empty() {
            return Ok(Vec::new());
        }
        let event_max = points.iter().map(|(_, at)| at.0).max();
        let event_min = points.iter().map(|(_, at)| rules.bounds(*at).0).min();
        // The bounds narrow only a small read's scan; others use the whole merge.
        let small = points.len() <= SMALL_READ;
        let keys: Vec<EntityKey> = if small { points.iter().map(|(k, _)| k.clone()).collect() } else { Vec::new() };
        let wanted = Wanted { entities: small.then_some(keys.as_slice()), event_max, event_min };
        let merged = self.merged(Kind::Features, group, wanted, small).await?;
        reads::as_of(&merged, points, rules)
    }

    async fn feature_columns_as_of(&self, group: &str, points: AsOfPoints<'_>) -> StoreResult<AsOfColumns> {
        let rules = points.rules;
        let event_max = points.times.iter().map(|at| at.0).max();
        let event_min = points.times.iter().map(|at| rules.bounds(*at).0).min();
        let small = points.keys.len() <= SMALL_READ;
        let wanted = Wanted { entities: small.then_some(points.keys), event_max, event_min };
        let merged = self.merged(Kind::Features, group, wanted, small).await?;
        reads::as_of_columns(&merged, points)
    }

    async fn freshness(
        &self,
        group: &str,
        stale_before: Option<Timestamp>,
        expired_before: Option<Timestamp>,
    ) -> StoreResult<FreshnessCounts> {
        let merged = self.merged(Kind::Features, group, Wanted::default(), false).await?;
        Ok(reads::freshness(&merged, stale_before, expired_before))
    }

    async fn feature_statistics(
        &self,
        group: &str,
        features: &[(String, bool)],
    ) -> StoreResult<Vec<FeatureStatistics>> {
        if features.is_empty() {
            return Ok(Vec::new());
        }
        let path = Kind::Features.path(group);
        let mut statistics = Statistics::new(features);
        // A merge in memory for the table's state answers at once.
        if let (version, Some(view)) = self.kept_view(Kind::Features, &path).await? {
            statistics.add(&*self.whole(Kind::Features, &path, version, view)?);
            return Ok(statistics.finish());
        }
        // Otherwise a month at a time, none of it kept: the writes of one
        // key share its event time, so its month, and the merge of a month
        // folds them as the whole table's would. The log first, as
        // `merged` reads it (see the module docs).
        let (logged, _) = flush::logged_batches(Kind::Features, &*self.log, &path).await?;
        let mut months: std::collections::BTreeSet<i32> = self.tables.months(&path).await?.into_iter().collect();
        for batch in &logged {
            months.extend(layout::months_of(batch)?);
        }
        for month in months {
            let mut batches =
                logged.iter().map(|b| layout::rows_in_month(b, month)).collect::<StoreResult<Vec<_>>>()?;
            let in_month = col(layout::EVENT_MONTH).eq(lit(ScalarValue::Date32(Some(month))));
            batches.extend(self.tables.scan(&path, |_| Some(in_month)).await?);
            statistics.add(&Merged::new(Kind::Features, &batches, true)?);
        }
        Ok(statistics.finish())
    }

    async fn compact(
        &self,
        sources: &[String],
        groups: &[String],
        retention: std::time::Duration,
    ) -> StoreResult<Vec<Compaction>> {
        self.flush_all().await?;
        let paths = sources.iter().map(|s| Kind::Source.path(s)).chain(groups.iter().map(|g| Kind::Features.path(g)));
        let mut done = Vec::new();
        for path in paths {
            let compacted = self.tables.compact(&path, retention).await;
            self.local.changed(&path);
            if let Some((compaction, commit)) = compacted? {
                self.kept.compacted(&path, commit);
                done.push(compaction);
            }
        }
        Ok(done)
    }

    async fn close(&self) -> StoreResult<()> {
        self.flush_all().await.map(|_| ())
    }

    async fn ping(&self) -> StoreResult<()> {
        self.log.pending().await.map(|_| ())
    }
}

impl From<arrow_schema::ArrowError> for StoreError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        StoreError::Corrupt(format!("offline rows: {e}"))
    }
}
