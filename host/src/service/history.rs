//! The source-history cache: each entity's whole history of a source, as
//! the table a batch transform reads, kept in memory so that computing a
//! value on a miss runs the transform without reading the offline store.
//!
//! What it holds is exact: the table equals what the store would answer
//! now. Every source write invalidates the entities it wrote, after it is
//! durable and before it is acknowledged: this host's writes directly,
//! other hosts' by their announcement (`Registry::announce`, which every
//! host sharing the store receives within milliseconds, before the writer
//! acknowledges). A fill that raced with an invalidation is not kept: it
//! holds a placeholder while it reads, and an invalidation removes the
//! placeholder, so the read (which may predate the write) is used once and
//! dropped. A host that lost announcements (its listener reconnected)
//! drops everything. A source whose definition changes is dropped whole.
//!
//! An entity with no rows is kept too, as an empty table: a read of an
//! unknown entity then costs a lookup, not a read of the store and a
//! transform run, until the entity's first row arrives.
//!
//! Entries are bounded by bytes (`--source-cache-bytes`), the least recently
//! read evicted first. Entries that were in use when a write invalidated
//! them are read again in the background, so the next miss finds them warm.

use super::{ServiceResult, Wafer};
use crate::model::{EntityKey, Table};
use crate::store::{RegistryChange, SourceRange, TableDef};
use hashlink::LinkedHashMap;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Default bound of the cache: 256 MiB holds a year of daily prices for
/// about ten thousand entities (about 20 KiB each).
pub const DEFAULT_BYTES: usize = 256 << 20;

/// Writes of up to this many entities fill the cache for all of them, so a
/// new entity's first read finds its history; larger writes refill only the
/// entities that were cached.
const FILL_ON_WRITE: usize = 64;

/// An entry's own cost beyond its table: the key and the map's node.
const ENTRY_OVERHEAD: usize = 128;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Key {
    source: String,
    entity: String,
}

enum Slot {
    Ready {
        table: Arc<Table>,
        bytes: usize,
    },
    /// A fill under way; it is kept only if this token is still here. It
    /// costs its key's bytes: a fill whose caller gave up leaves it behind
    /// until it is evicted or read again.
    Filling {
        token: u64,
        bytes: usize,
    },
}

impl Slot {
    fn bytes(&self) -> usize {
        match self {
            Slot::Ready { bytes, .. } | Slot::Filling { bytes, .. } => *bytes,
        }
    }
}

impl Key {
    fn new(source: &str, entity: &str) -> Key {
        Key { source: source.to_string(), entity: entity.to_string() }
    }

    fn bytes(&self) -> usize {
        self.source.len() + self.entity.len() + ENTRY_OVERHEAD
    }
}

#[derive(Default)]
struct Entries {
    /// Least recently read first.
    map: LinkedHashMap<Key, Slot>,
    bytes: usize,
    next_token: u64,
}

impl Entries {
    fn remove(&mut self, key: &Key) -> Option<Slot> {
        let slot = self.map.remove(key)?;
        self.bytes -= slot.bytes();
        Some(slot)
    }

    /// Puts `slot` at the back (the most recently read).
    fn put(&mut self, key: Key, slot: Slot) {
        self.bytes += slot.bytes();
        if let Some(old) = self.map.insert(key, slot) {
            self.bytes -= old.bytes();
        }
    }

    /// Drops the least recently read until within `budget`; returns how
    /// many kept tables went.
    fn evict(&mut self, budget: usize) -> u64 {
        let mut evicted = 0;
        while self.bytes > budget {
            let Some(oldest) = self.map.front().map(|(k, _)| k.clone()) else { break };
            if matches!(self.remove(&oldest), Some(Slot::Ready { .. })) {
                evicted += 1;
            }
        }
        evicted
    }
}

/// A missing entry's position in a lookup and its fill token.
type Fill = (usize, u64);

/// Counters since start, for monitoring.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct HistoryStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub invalidations: u64,
    pub entries: usize,
    pub bytes: usize,
}

pub(crate) struct SourceHistory {
    entries: Mutex<Entries>,
    budget: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    invalidations: AtomicU64,
    /// Entities waiting to be read again after a write, per source, and
    /// whether a refill task for the source is running (it is in the map).
    refills: Mutex<HashMap<String, HashSet<String>>>,
}

impl SourceHistory {
    pub(crate) fn new(budget: usize) -> SourceHistory {
        SourceHistory {
            entries: Mutex::new(Entries::default()),
            budget,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            refills: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().expect("source history lock")
    }

    /// The cached tables of `entities` (`None` where there is none), and
    /// a fill token for each one missing.
    fn lookup(&self, source: &str, entities: &[EntityKey]) -> (Vec<Option<Arc<Table>>>, Vec<Fill>) {
        let mut e = self.lock();
        let mut found = Vec::with_capacity(entities.len());
        let mut fills = Vec::new();
        for (i, entity) in entities.iter().enumerate() {
            let key = Key::new(source, entity.as_str());
            match e.map.to_back(&key) {
                Some(Slot::Ready { table, .. }) => found.push(Some(table.clone())),
                _ => {
                    let token = e.next_token;
                    e.next_token += 1;
                    let bytes = key.bytes();
                    e.put(key, Slot::Filling { token, bytes });
                    fills.push((i, token));
                    found.push(None);
                }
            }
        }
        let evicted = if fills.is_empty() { 0 } else { e.evict(self.budget) };
        drop(e);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
        self.hits.fetch_add((entities.len() - fills.len()) as u64, Ordering::Relaxed);
        self.misses.fetch_add(fills.len() as u64, Ordering::Relaxed);
        (found, fills)
    }

    /// Whether `entity` is kept as having no rows of `source` (a hit that
    /// fills nothing).
    pub(crate) fn known_empty(&self, source: &str, entity: &EntityKey) -> bool {
        let key = Key::new(source, entity.as_str());
        let mut e = self.lock();
        let empty = matches!(e.map.to_back(&key), Some(Slot::Ready { table, .. }) if table.rows() == 0);
        drop(e);
        if empty {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        empty
    }

    /// Keeps what a fill read, unless an invalidation came in between;
    /// then evicts the least recently read until within the budget.
    fn finish(&self, source: &str, entity: &EntityKey, token: u64, table: &Arc<Table>) {
        let key = Key::new(source, entity.as_str());
        let bytes = table.heap_bytes() + key.bytes();
        let mut e = self.lock();
        if !matches!(e.map.get(&key), Some(Slot::Filling { token: t, .. }) if *t == token) {
            return;
        }
        if bytes > self.budget {
            e.remove(&key);
            return;
        }
        e.put(key, Slot::Ready { table: table.clone(), bytes });
        let evicted = e.evict(self.budget);
        drop(e);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
    }

    /// Drops what is kept of `entities` of `source` (fills under way too);
    /// returns those that were kept, to be read again.
    pub(crate) fn invalidate<'a>(&self, source: &str, entities: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut e = self.lock();
        let mut kept = Vec::new();
        for entity in entities {
            let key = Key::new(source, entity);
            if let Some(Slot::Ready { .. }) = e.remove(&key) {
                kept.push(key.entity);
            }
        }
        drop(e);
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        kept
    }

    /// Drops everything kept of `source` (its definition changed, it was
    /// deleted, or a write's entities were not announced one by one);
    /// returns the entities that were kept.
    pub(crate) fn forget_source(&self, source: &str) -> Vec<String> {
        let mut e = self.lock();
        let keys: Vec<Key> = e.map.keys().filter(|k| k.source == source).cloned().collect();
        let mut kept = Vec::new();
        for key in keys {
            if let Some(Slot::Ready { .. }) = e.remove(&key) {
                kept.push(key.entity);
            }
        }
        drop(e);
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        kept
    }

    /// Drops everything (announcements may have been lost).
    pub(crate) fn clear(&self) {
        let mut e = self.lock();
        e.map.clear();
        e.bytes = 0;
        drop(e);
        self.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> HistoryStats {
        let e = self.lock();
        HistoryStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            entries: e.map.values().filter(|s| matches!(s, Slot::Ready { .. })).count(),
            bytes: e.bytes,
        }
    }

    /// Queues `entities` of `source` to be read again; `true` when the
    /// caller should start the source's refill task (none is running).
    fn queue_refill(&self, source: &str, entities: Vec<String>) -> bool {
        let mut refills = self.refills.lock().expect("refill lock");
        match refills.get_mut(source) {
            Some(waiting) => {
                waiting.extend(entities);
                false
            }
            None => {
                refills.insert(source.to_string(), entities.into_iter().collect());
                true
            }
        }
    }

    /// The entities waiting to be read again, or `None` (and the task
    /// ends) when there are none.
    fn next_refill(&self, source: &str) -> Option<Vec<String>> {
        let mut refills = self.refills.lock().expect("refill lock");
        let waiting = refills.get_mut(source)?;
        if waiting.is_empty() {
            refills.remove(source);
            return None;
        }
        Some(waiting.drain().collect())
    }
}

impl Wafer {
    /// Each of `entities`' whole history of `source`, as the store would
    /// answer it now, from the cache where it is kept.
    pub(crate) async fn source_history(&self, def: &TableDef, entities: &[EntityKey]) -> ServiceResult<Vec<Table>> {
        let history = self.history();
        let (mut found, fills) = history.lookup(&def.name, entities);
        if !fills.is_empty() {
            let missing: Vec<EntityKey> = fills.iter().map(|&(i, _)| entities[i].clone()).collect();
            let read = self.offline().read_source_tables(def, &missing, SourceRange::default()).await;
            let tables = match read {
                Ok(tables) => tables,
                Err(e) => {
                    history.invalidate(&def.name, missing.iter().map(EntityKey::as_str));
                    return Err(e.into());
                }
            };
            for ((i, token), table) in fills.into_iter().zip(tables) {
                let table = Arc::new(table);
                history.finish(&def.name, &entities[i], token, &table);
                found[i] = Some(table);
            }
        }
        Ok(found.into_iter().map(|t| t.map(Arc::unwrap_or_clone).unwrap_or_default()).collect())
    }

    /// After a durable write of `source` rows of `entities`: drops what
    /// this host keeps of them, tells the other hosts, and reads again in
    /// the background what was in use (all of them, for a small write).
    /// Returns only once the other hosts have been told, so a write is
    /// acknowledged only when no host can serve history without it.
    pub(crate) async fn source_rows_written(&self, source: &str, entities: Vec<String>) -> ServiceResult<()> {
        let kept = self.history().invalidate(source, entities.iter().map(String::as_str));
        let refill = if entities.len() <= FILL_ON_WRITE { entities.clone() } else { kept };
        self.registry()
            .announce(&RegistryChange::SourceRows {
                source: source.to_string(),
                entities: Some(entities),
                origin: self.cluster().host_id.clone(),
            })
            .await?;
        self.refill_history(source, refill);
        Ok(())
    }

    /// Applies another host's announcement of a source write.
    pub(super) fn source_rows_announced(&self, source: &str, entities: Option<&[String]>) {
        let kept = match entities {
            Some(entities) => self.history().invalidate(source, entities.iter().map(String::as_str)),
            None => self.history().forget_source(source),
        };
        self.refill_history(source, kept);
    }

    /// Reads `entities` of `source` into the cache in the background, one
    /// task per source at a time, which takes every entity queued meanwhile.
    fn refill_history(&self, source: &str, entities: Vec<String>) {
        if entities.is_empty() || !self.history().queue_refill(source, entities) {
            return;
        }
        let (this, source) = (self.clone(), source.to_string());
        tokio::spawn(async move {
            while let Some(entities) = this.history().next_refill(&source) {
                let def = match this.source(&source).and_then(|s| this.source_def(&s)) {
                    Ok(def) => def,
                    Err(_) => continue, // the source is gone: nothing to keep
                };
                let keys: Vec<EntityKey> = entities.into_iter().map(EntityKey).collect();
                if let Err(e) = this.source_history(&def, &keys).await {
                    tracing::debug!(source, error = %e, "refilling the source-history cache failed");
                }
            }
        });
    }

    /// The source-history cache's counters.
    pub fn source_history_stats(&self) -> HistoryStats {
        self.history().stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, ColumnValues};

    fn table(rows: usize) -> Arc<Table> {
        Arc::new(Table {
            timestamps: (0..rows as i64).collect(),
            columns: vec![Column {
                name: "close".into(),
                values: ColumnValues::Float64((0..rows).map(|i| i as f64).collect()),
                nulls: vec![],
            }],
        })
    }

    fn key(e: &str) -> EntityKey {
        EntityKey(e.to_string())
    }

    fn fill(h: &SourceHistory, entity: &str, t: &Arc<Table>) {
        let (found, fills) = h.lookup("prices", &[key(entity)]);
        assert!(found[0].is_none());
        h.finish("prices", &key(entity), fills[0].1, t);
    }

    #[test]
    fn a_fill_is_kept_and_found_until_invalidated() {
        let h = SourceHistory::new(1 << 20);
        let t = table(10);
        fill(&h, "AAPL", &t);
        let (found, fills) = h.lookup("prices", &[key("AAPL")]);
        assert_eq!(found[0].as_deref(), Some(&*t));
        assert!(fills.is_empty());
        assert_eq!(h.invalidate("prices", ["AAPL"]), vec!["AAPL".to_string()]);
        assert_eq!((h.stats().entries, h.stats().bytes), (0, 0), "nothing kept after the invalidation");
        assert!(h.lookup("prices", &[key("AAPL")]).0[0].is_none());
    }

    #[test]
    fn a_fill_that_raced_with_an_invalidation_is_not_kept() {
        let h = SourceHistory::new(1 << 20);
        let (_, fills) = h.lookup("prices", &[key("AAPL")]);
        // A write lands while the fill reads: what it read may predate it.
        h.invalidate("prices", ["AAPL"]);
        h.finish("prices", &key("AAPL"), fills[0].1, &table(10));
        assert!(h.lookup("prices", &[key("AAPL")]).0[0].is_none(), "the stale read must not be kept");
        // A fill after the source was forgotten whole is dropped the same way.
        let (_, fills) = h.lookup("prices", &[key("MSFT")]);
        h.forget_source("prices");
        h.finish("prices", &key("MSFT"), fills[0].1, &table(10));
        assert!(h.lookup("prices", &[key("MSFT")]).0[0].is_none());
    }

    #[test]
    fn the_least_recently_read_are_evicted_to_stay_within_the_budget() {
        let one = table(1000).heap_bytes() + "prices".len() + 1 + ENTRY_OVERHEAD;
        // Room for three tables and a fill's placeholder.
        let budget = 3 * one + 4 + ENTRY_OVERHEAD + "prices".len();
        let h = SourceHistory::new(budget);
        for e in ["A", "B", "C"] {
            fill(&h, e, &table(1000));
        }
        assert_eq!(h.stats().entries, 3);
        // Reading A makes B the least recently read.
        assert!(h.lookup("prices", &[key("A")]).0[0].is_some());
        fill(&h, "D", &table(1000));
        let stats = h.stats();
        assert_eq!((stats.entries, stats.evictions), (3, 1));
        assert!(stats.bytes <= 3 * one, "{stats:?}");
        for e in ["A", "C", "D"] {
            assert!(h.lookup("prices", &[key(e)]).0[0].is_some(), "{e} stays");
        }
        assert!(h.lookup("prices", &[key("B")]).0[0].is_none(), "B was the least recently read");
        // A table larger than the whole budget is used but never kept.
        let (_, fills) = h.lookup("prices", &[key("HUGE")]);
        h.finish("prices", &key("HUGE"), fills[0].1, &table(10_000));
        assert!(h.lookup("prices", &[key("HUGE")]).0[0].is_none());
        // (Its placeholder, and B's, pushed out the least recently read.)
        let stats = h.stats();
        assert!(stats.bytes <= budget, "{stats:?}");
        assert_eq!((stats.entries, stats.evictions), (2, 2), "C and D kept; HUGE never: {stats:?}");
    }

    #[test]
    fn fills_whose_callers_gave_up_count_against_the_budget() {
        // Each placeholder: "prices" + "E00000" + the entry's own cost.
        let one = 6 + 6 + ENTRY_OVERHEAD;
        let h = SourceHistory::new(100 * one);
        // Lookups of ever new entities, never finished: only placeholders.
        for i in 0..10_000 {
            h.lookup("prices", &[key(&format!("E{i:05}"))]);
        }
        let e = h.lock();
        assert!(e.bytes <= 100 * one, "{} bytes", e.bytes);
        assert!(e.map.len() <= 100, "{} placeholders kept", e.map.len());
    }

    #[test]
    fn an_entity_with_no_rows_is_kept_as_an_empty_table() {
        let h = SourceHistory::new(1 << 20);
        fill(&h, "NOPE", &Arc::new(Table::default()));
        let (found, fills) = h.lookup("prices", &[key("NOPE")]);
        assert_eq!(found[0].as_ref().map(|t| t.rows()), Some(0));
        assert!(fills.is_empty());
        assert!(h.known_empty("prices", &key("NOPE")));
        assert!(!h.known_empty("prices", &key("OTHER")), "never read: not known");
        fill(&h, "FULL", &table(3));
        assert!(!h.known_empty("prices", &key("FULL")));
        assert_eq!(h.invalidate("prices", ["NOPE"]).len(), 1);
        assert!(!h.known_empty("prices", &key("NOPE")), "written since: not known any more");
    }

    #[test]
    fn table_bytes_count_strings_and_lists() {
        let t = Table {
            timestamps: vec![1, 2],
            columns: vec![
                Column { name: "s".into(), values: ColumnValues::Text(vec!["ab".into(), "cde".into()]), nulls: vec![] },
                Column {
                    name: "l".into(),
                    values: ColumnValues::Float64List(vec![vec![1.0; 4], vec![]]),
                    nulls: vec![1],
                },
            ],
        };
        let s = std::mem::size_of::<String>();
        let v = std::mem::size_of::<Vec<f64>>();
        let c = std::mem::size_of::<Column>();
        let expected = std::mem::size_of::<Table>() + 16 + (c + 1 + 2 * s + 5) + (c + 1 + 4 + 2 * v + 32);
        assert_eq!(t.heap_bytes(), expected);
    }
}
