//! The merges kept in memory, one per table, kept exact as writes arrive
//! without reading the table again.
//!
//! A kept merge is exact for a state: a table version and the set of log
//! entries whose rows it holds. A read compares that with the state it
//! finds, the log's seqs first and then the table version, so that an entry
//! flushed in between is in the newer version the read then sees.
//! - Only new log entries: they are read from the log alone and kept as
//!   layers beside the merge, each merged on its own. A read of a few
//!   entities merges their rows from the merge and the layers; any other
//!   read folds the layers into the merge once.
//! - The version moved on by this host's own commit and by nothing else
//!   (a flush, a direct write, a compaction): the merge stays, with the
//!   commit's rows it did not hold yet as a layer.
//! - Anything else (another host's commit, a table deleted): the table is
//!   read again.

use super::layout::{Kind, WRITE_SEQ};
use super::merge::Merged;
use super::table::Commit;
use crate::model::EntityKey;
use crate::store::StoreResult;
use arrow_array::{Array, Int64Array, RecordBatch};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Tables of up to this many rows are kept merged in memory.
pub(super) const CACHED_ROWS: usize = 4_000_000;

/// All kept merges together hold at most this many bytes of Arrow arrays;
/// past it, the least recently read are dropped.
pub(super) const KEPT_BYTES: usize = 2 << 30;

/// Past this many layers, they are merged into one.
const MAX_LAYERS: usize = 32;

/// Layers may hold this many rows beyond half the merge's before the
/// merge is dropped instead: reading the table again is then cheaper.
const LAYER_SLACK: usize = 50_000;

/// A kept merge and the state it is exact for.
struct Kept {
    version: Option<u64>,
    /// The log entries (by seq) whose rows `base` and `layers` hold.
    logged: HashSet<i64>,
    base: Arc<Merged>,
    /// Rows newer than `base`, oldest first.
    layers: Vec<Arc<Merged>>,
    /// When it was last read, on the cache's own clock.
    used: u64,
}

impl Kept {
    fn layer_rows(&self) -> usize {
        self.layers.iter().map(|l| l.len()).sum()
    }

    fn too_layered(&self, adding: usize) -> bool {
        self.layer_rows() + adding > self.base.len() / 2 + LAYER_SLACK
    }

    fn bytes(&self) -> usize {
        std::iter::once(&self.base).chain(&self.layers).map(|m| m.bytes()).sum()
    }

    fn view(&self) -> View {
        View { base: self.base.clone(), layers: self.layers.clone() }
    }

    fn push(&mut self, layers: impl IntoIterator<Item = Arc<Merged>>) {
        self.layers.extend(layers.into_iter().filter(|l| l.len() > 0));
    }
}

/// A kept merge as one read sees it.
pub(super) struct View {
    pub base: Arc<Merged>,
    pub layers: Vec<Arc<Merged>>,
}

impl View {
    /// The rows of `entities` alone, from the merge and the layers.
    pub(super) fn select(&self, kind: Kind, entities: &[EntityKey]) -> StoreResult<Merged> {
        let mut names: Vec<&str> = entities.iter().map(EntityKey::as_str).collect();
        names.sort_unstable();
        names.dedup();
        let parts = std::iter::once(&self.base).chain(&self.layers);
        let batches: Vec<RecordBatch> = parts.flat_map(|m| names.iter().filter_map(|e| m.batch_of(e))).collect();
        Merged::new(kind, &batches, true)
    }
}

/// What a read finds kept for the state it read.
pub(super) enum Lookup {
    /// Exact for that state.
    Current(View),
    /// Exact once these log entries are added.
    Behind(Vec<i64>),
    /// Nothing usable: read the table.
    Stale,
}

pub(super) struct KeptTables {
    tables: Mutex<HashMap<String, Kept>>,
    /// Tables found too large to keep: not read whole in the background.
    too_big: Mutex<HashSet<String>>,
    /// Tables being read whole in the background, to be kept.
    refilling: Mutex<HashSet<String>>,
    /// Bytes all kept merges may hold.
    budget: std::sync::atomic::AtomicUsize,
    /// Ticks at every read, for dropping the least recently read.
    clock: std::sync::atomic::AtomicU64,
}

impl Default for KeptTables {
    fn default() -> Self {
        KeptTables::with_budget(KEPT_BYTES)
    }
}

/// The seqs of the log entries behind `batches` (each batch holds one
/// entry's rows, stamped with its seq).
fn seq_of(batch: &RecordBatch) -> Option<i64> {
    let seqs = batch.column_by_name(WRITE_SEQ)?.as_any().downcast_ref::<Int64Array>()?;
    (!seqs.is_empty() && !seqs.is_null(0)).then(|| seqs.value(0))
}

impl KeptTables {
    pub(super) fn with_budget(budget: usize) -> Self {
        KeptTables {
            tables: Mutex::default(),
            too_big: Mutex::default(),
            refilling: Mutex::default(),
            budget: std::sync::atomic::AtomicUsize::new(budget),
            clock: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn budget(&self) -> usize {
        self.budget.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(super) fn set_budget(&self, bytes: usize) {
        self.budget.store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops the least recently read merges, other than `path`'s, until
    /// all fit the budget.
    fn evict(&self, tables: &mut HashMap<String, Kept>, path: &str) {
        let mut total: usize = tables.values().map(Kept::bytes).sum();
        while total > self.budget() {
            let oldest = tables.iter().filter(|(p, _)| p.as_str() != path).min_by_key(|(_, k)| k.used);
            let Some(victim) = oldest.map(|(p, _)| p.clone()) else { break };
            if let Some(dropped) = tables.remove(&victim) {
                total -= dropped.bytes();
                tracing::debug!(table = %victim, bytes = dropped.bytes(), "dropped a kept merge to stay within memory");
            }
        }
    }

    /// Whether a merge of the table is kept (for tests of the budget).
    #[cfg(test)]
    pub(super) fn holds(&self, path: &str) -> bool {
        self.tables().contains_key(path)
    }

    /// The bytes a table's kept merge holds (for tests of the budget).
    #[cfg(test)]
    pub(super) fn bytes_of(&self, path: &str) -> Option<usize> {
        self.tables().get(path).map(Kept::bytes)
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept merge's view and the version it is at, if one is kept:
    /// for a reader that knows nothing changed since it last checked it.
    pub(super) fn kept(&self, path: &str) -> Option<(Option<u64>, View)> {
        let used = self.tick();
        let mut tables = self.tables();
        let kept = tables.get_mut(path)?;
        kept.used = used;
        Some((kept.version, kept.view()))
    }

    pub(super) fn lookup(&self, path: &str, version: Option<u64>, seqs: &[i64]) -> Lookup {
        let used = self.tick();
        let mut tables = self.tables();
        let Some(kept) = tables.get_mut(path).filter(|k| k.version == version) else {
            return Lookup::Stale;
        };
        kept.used = used;
        let missing: Vec<i64> = seqs.iter().copied().filter(|s| !kept.logged.contains(s)).collect();
        if missing.is_empty() { Lookup::Current(kept.view()) } else { Lookup::Behind(missing) }
    }

    /// Adds log entries read for [`Lookup::Behind`], each `(seq, rows)`,
    /// and returns the view, if the kept merge is still at `version`.
    pub(super) fn add(
        &self,
        kind: Kind,
        path: &str,
        version: Option<u64>,
        entries: Vec<(i64, Merged)>,
    ) -> StoreResult<Option<View>> {
        let mut tables = self.tables();
        let Some(kept) = tables.get_mut(path).filter(|k| k.version == version) else {
            return Ok(None);
        };
        let fresh: Vec<(i64, Merged)> = entries.into_iter().filter(|(seq, _)| !kept.logged.contains(seq)).collect();
        let rows = fresh.iter().map(|(_, m)| m.len()).sum();
        if kept.too_layered(rows) {
            tables.remove(path);
            return Ok(None);
        }
        kept.logged.extend(fresh.iter().map(|(seq, _)| *seq));
        kept.push(fresh.into_iter().map(|(_, m)| Arc::new(m)));
        let view = kept.view();
        self.evict(&mut tables, path);
        drop(tables);
        self.settle(kind, path, version, &view)?;
        Ok(Some(view))
    }

    /// Past [`MAX_LAYERS`], merges the layers into one (outside the lock;
    /// kept only when nothing changed meanwhile).
    fn settle(&self, kind: Kind, path: &str, version: Option<u64>, view: &View) -> StoreResult<()> {
        if view.layers.len() <= MAX_LAYERS {
            return Ok(());
        }
        let batches: Vec<RecordBatch> = view.layers.iter().filter_map(|l| l.batch().cloned()).collect();
        let merged = Arc::new(Merged::new(kind, &batches, true)?);
        let mut tables = self.tables();
        if let Some(kept) = tables.get_mut(path)
            && kept.version == version
            && kept.layers.len() >= view.layers.len()
            && kept.layers.iter().zip(&view.layers).all(|(a, b)| Arc::ptr_eq(a, b))
        {
            kept.layers.splice(..view.layers.len(), [merged]);
        }
        Ok(())
    }

    /// Keeps a merge read whole at `version` with the entries `logged`;
    /// false when it is too large to keep.
    pub(super) fn keep(&self, path: &str, version: Option<u64>, logged: HashSet<i64>, merged: Arc<Merged>) -> bool {
        if merged.len() > CACHED_ROWS || merged.bytes() > self.budget() {
            self.tables().remove(path);
            self.too_big.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_string());
            return false;
        }
        let used = self.tick();
        let mut tables = self.tables();
        tables.insert(path.to_string(), Kept { version, logged, base: merged, layers: Vec::new(), used });
        self.evict(&mut tables, path);
        true
    }

    /// Claims the background read of a whole table: false while one is
    /// under way, or when the table is too large to keep anyway.
    pub(super) fn start_refill(&self, path: &str) -> bool {
        !self.too_big.lock().unwrap_or_else(|p| p.into_inner()).contains(path)
            && self.refilling.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_string())
    }

    pub(super) fn end_refill(&self, path: &str) {
        self.refilling.lock().unwrap_or_else(|p| p.into_inner()).remove(path);
    }

    /// The view's layers folded into its merge, kept in its place when
    /// nothing changed meanwhile.
    pub(super) fn fold(&self, kind: Kind, path: &str, version: Option<u64>, view: &View) -> StoreResult<Arc<Merged>> {
        let batches: Vec<RecordBatch> =
            std::iter::once(&view.base).chain(&view.layers).filter_map(|m| m.batch().cloned()).collect();
        let folded = Arc::new(Merged::new(kind, &batches, true)?);
        let mut tables = self.tables();
        if let Some(kept) = tables.get_mut(path)
            && kept.version == version
            && Arc::ptr_eq(&kept.base, &view.base)
            && kept.layers.len() == view.layers.len()
        {
            kept.base = folded.clone();
            kept.layers.clear();
        }
        Ok(folded)
    }

    /// This host committed `batches` (each one log entry's rows, or a
    /// direct write's) to the table: the kept merge moves to the new
    /// version when the commit was the only change since its own.
    pub(super) fn committed(&self, kind: Kind, path: &str, commit: Commit, batches: &[RecordBatch]) -> StoreResult<()> {
        let unseen: Vec<RecordBatch> = {
            let mut tables = self.tables();
            let Some(kept) = tables.get_mut(path) else { return Ok(()) };
            if !(commit.only_change && kept.version == commit.read) {
                tables.remove(path);
                return Ok(());
            }
            let unseen: Vec<RecordBatch> =
                batches.iter().filter(|b| seq_of(b).is_none_or(|s| !kept.logged.contains(&s))).cloned().collect();
            if unseen.is_empty() {
                kept.version = Some(commit.version);
                return Ok(());
            }
            if kept.too_layered(unseen.iter().map(RecordBatch::num_rows).sum()) {
                tables.remove(path);
                return Ok(());
            }
            unseen
        };
        // Merged outside the lock; until it is added, reads see the old
        // version and the new one does not match, so they read the table.
        let layer = Arc::new(Merged::new(kind, &unseen, true)?);
        let mut tables = self.tables();
        let Some(kept) = tables.get_mut(path).filter(|k| k.version == commit.read) else { return Ok(()) };
        kept.push([layer]);
        kept.version = Some(commit.version);
        let view = kept.view();
        self.evict(&mut tables, path);
        drop(tables);
        self.settle(kind, path, Some(commit.version), &view)
    }

    /// A compaction by this host: same rows, new version.
    pub(super) fn compacted(&self, path: &str, commit: Commit) {
        let mut tables = self.tables();
        match tables.get_mut(path) {
            Some(kept) if commit.only_change && kept.version == commit.read => kept.version = Some(commit.version),
            Some(_) => {
                tables.remove(path);
            }
            None => {}
        }
    }

    pub(super) fn forget(&self, path: &str) {
        self.tables().remove(path);
        self.too_big.lock().unwrap_or_else(|p| p.into_inner()).remove(path);
    }
}

/// What this process changed of each table, for a store that is its
/// tables' only writer (`DeltaOffline::set_exclusive`): a kept merge found
/// current once stays current until this process changes the table, so a
/// read need not ask the log and the table again.
#[derive(Default)]
pub(super) struct LocalChanges {
    /// Per table: changes committed so far, and how many there had been
    /// when its kept merge was last found current.
    tables: Mutex<HashMap<String, (u64, Option<u64>)>>,
}

impl LocalChanges {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Option<u64>)>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The table's change count, read before a check of its state.
    pub(super) fn count(&self, path: &str) -> u64 {
        self.lock().get(path).map_or(0, |(changes, _)| *changes)
    }

    /// Called after every change this process commits to the table.
    pub(super) fn changed(&self, path: &str) {
        self.lock().entry(path.to_string()).or_default().0 += 1;
    }

    /// The kept merge was found current by a check that began at `count`.
    pub(super) fn verified(&self, path: &str, count: u64) {
        let mut tables = self.lock();
        let entry = tables.entry(path.to_string()).or_default();
        entry.1 = Some(entry.1.map_or(count, |v| v.max(count)));
    }

    /// Whether nothing changed since the kept merge was last found current.
    pub(super) fn unchanged(&self, path: &str) -> bool {
        self.lock().get(path).is_some_and(|(changes, verified)| *verified == Some(*changes))
    }
}
