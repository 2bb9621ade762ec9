//! The in-process online store: the latest row per (group, entity) in
//! concurrent hash maps, with a TTL per write measured on the injected clock.
//!
//! Groups map to their own entity map, so a lookup hashes the group name once
//! per call and each entity key by reference, without building a composite
//! key. Expired entries read as absent and are removed lazily on read, or in
//! bulk by [`MemoryOnlineStore::purge_expired`].

use super::{OnlineStore, StoreResult};
use crate::clock::SharedClock;
use crate::model::{EntityKey, FeatureRow, Timestamp};
use async_trait::async_trait;
use dashmap::DashMap;
use std::sync::Arc;
use std::time::Duration;

type GroupMap = DashMap<EntityKey, Entry>;

struct Entry {
    /// Shared with the reads that serve it ([`OnlineStore::read_shared`]).
    row: Arc<FeatureRow>,
    /// `None` keeps the row until it is replaced or its group deleted.
    expires_at: Option<Timestamp>,
}

impl Entry {
    fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Whether `row` should replace this entry: a newer event, or a later
    /// correction (same event, created no earlier) of the same one.
    fn is_superseded_by(&self, row: &FeatureRow, now: Timestamp) -> bool {
        self.is_expired(now) || (row.event_ts, row.created) >= (self.row.event_ts, self.row.created)
    }
}

/// Latest feature rows per group and entity, in this process's memory.
pub struct MemoryOnlineStore {
    groups: DashMap<String, Arc<GroupMap>>,
    clock: SharedClock,
}

impl MemoryOnlineStore {
    pub fn new(clock: SharedClock) -> Self {
        MemoryOnlineStore { groups: DashMap::new(), clock }
    }

    /// Removes every expired entry; returns how many were removed.
    pub fn purge_expired(&self) -> usize {
        let now = self.clock.now();
        let mut removed = 0;
        for group in self.groups.iter() {
            group.retain(|_, entry| {
                let keep = !entry.is_expired(now);
                removed += usize::from(!keep);
                keep
            });
        }
        removed
    }

    /// Entries held, expired or not (for metrics).
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn group(&self, group: &str) -> Option<Arc<GroupMap>> {
        // Clone the Arc so no lock on the outer map is held while working on
        // the group's entries.
        self.groups.get(group).map(|g| Arc::clone(&g))
    }
}

fn expiry(now: Timestamp, ttl: Option<Duration>) -> Option<Timestamp> {
    ttl.map(|ttl| {
        let micros = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
        Timestamp(now.0.saturating_add(micros))
    })
}

#[async_trait]
impl OnlineStore for MemoryOnlineStore {
    async fn write(&self, group: &str, rows: &[FeatureRow], ttl: Option<Duration>) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let expires_at = expiry(now, ttl);
        let map = match self.group(group) {
            Some(map) => map,
            None => Arc::clone(&self.groups.entry(group.to_string()).or_default()),
        };
        for row in rows {
            match map.get_mut(&row.entity) {
                Some(mut entry) => {
                    if entry.is_superseded_by(row, now) {
                        *entry = Entry { row: Arc::new(row.clone()), expires_at };
                    }
                }
                None => {
                    // Another writer may insert between the lookup above and
                    // this entry call, so compare again under the entry lock.
                    map.entry(row.entity.clone())
                        .and_modify(|entry| {
                            if entry.is_superseded_by(row, now) {
                                *entry = Entry { row: Arc::new(row.clone()), expires_at };
                            }
                        })
                        .or_insert_with(|| Entry { row: Arc::new(row.clone()), expires_at });
                }
            }
        }
        Ok(())
    }

    async fn read(&self, group: &str, entities: &[EntityKey]) -> StoreResult<Vec<Option<FeatureRow>>> {
        let rows = self.read_shared(group, entities).await?;
        Ok(rows.into_iter().map(|row| row.map(Arc::unwrap_or_clone)).collect())
    }

    async fn read_shared(&self, group: &str, entities: &[EntityKey]) -> StoreResult<Vec<Option<Arc<FeatureRow>>>> {
        let Some(map) = self.group(group) else {
            return Ok(vec![None; entities.len()]);
        };
        let now = self.clock.now();
        let mut expired = Vec::new();
        let rows = entities
            .iter()
            .map(|key| {
                let entry = map.get(key)?;
                if entry.is_expired(now) {
                    expired.push(key);
                    return None;
                }
                Some(entry.row.clone())
            })
            .collect();
        // Removed only now that no read guard is held (removing under one
        // would deadlock the shard); re-check in case a write landed since.
        for key in expired {
            map.remove_if(key, |_, entry| entry.is_expired(now));
        }
        Ok(rows)
    }

    async fn delete_group(&self, group: &str) -> StoreResult<()> {
        self.groups.remove(group);
        Ok(())
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    fn summary(&self) -> String {
        "in-process (dashmap)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::model::Value;

    fn row(entity: &str, event: i64, created: i64, x: f64) -> FeatureRow {
        FeatureRow {
            entity: EntityKey(entity.to_string()),
            event_ts: Timestamp::from_secs(event),
            created: Timestamp::from_secs(created),
            created_given: false,
            values: [("x".to_string(), Value::Float64(x))].into_iter().collect(),
            provenance: None,
        }
    }

    fn key(k: &str) -> EntityKey {
        EntityKey(k.to_string())
    }

    fn store() -> (ManualClock, MemoryOnlineStore) {
        let clock = ManualClock::new(Timestamp::from_secs(1_000));
        (clock.clone(), MemoryOnlineStore::new(Arc::new(clock)))
    }

    #[tokio::test]
    async fn an_older_event_never_overwrites_a_newer_one() {
        let (_clock, store) = store();
        store.write("g", &[row("AAPL", 20, 20, 2.0)], None).await.unwrap();
        store.write("g", &[row("AAPL", 10, 99, 1.0)], None).await.unwrap();
        assert_eq!(store.read("g", &[key("AAPL")]).await.unwrap(), vec![Some(row("AAPL", 20, 20, 2.0))]);
        // Within one batch too.
        store.write("g", &[row("MSFT", 30, 30, 3.0), row("MSFT", 25, 40, 4.0)], None).await.unwrap();
        assert_eq!(store.read("g", &[key("MSFT")]).await.unwrap(), vec![Some(row("MSFT", 30, 30, 3.0))]);
        store.write("g", &[row("AAPL", 21, 21, 5.0)], None).await.unwrap();
        assert_eq!(store.read("g", &[key("AAPL")]).await.unwrap(), vec![Some(row("AAPL", 21, 21, 5.0))]);
    }

    #[tokio::test]
    async fn a_correction_of_the_same_event_wins_only_when_created_later() {
        let (_clock, store) = store();
        store.write("g", &[row("AAPL", 20, 30, 1.0)], None).await.unwrap();
        store.write("g", &[row("AAPL", 20, 25, 2.0)], None).await.unwrap();
        assert_eq!(store.read("g", &[key("AAPL")]).await.unwrap(), vec![Some(row("AAPL", 20, 30, 1.0))]);
        store.write("g", &[row("AAPL", 20, 31, 3.0)], None).await.unwrap();
        assert_eq!(store.read("g", &[key("AAPL")]).await.unwrap(), vec![Some(row("AAPL", 20, 31, 3.0))]);
    }

    #[tokio::test]
    async fn reads_are_aligned_with_the_requested_entities_and_groups_are_separate() {
        let (_clock, store) = store();
        store.write("a", &[row("X", 1, 1, 1.0), row("Y", 1, 1, 2.0)], None).await.unwrap();
        store.write("b", &[row("X", 1, 1, 9.0)], None).await.unwrap();
        let got = store.read("a", &[key("Y"), key("Z"), key("X")]).await.unwrap();
        assert_eq!(got, vec![Some(row("Y", 1, 1, 2.0)), None, Some(row("X", 1, 1, 1.0))]);
        assert_eq!(store.read("missing", &[key("X"), key("Y")]).await.unwrap(), vec![None, None]);

        store.delete_group("a").await.unwrap();
        assert_eq!(store.read("a", &[key("X")]).await.unwrap(), vec![None]);
        assert_eq!(store.read("b", &[key("X")]).await.unwrap(), vec![Some(row("X", 1, 1, 9.0))]);
        assert_eq!(store.summary(), "in-process (dashmap)");
    }

    #[tokio::test]
    async fn entries_expire_after_their_ttl_on_the_injected_clock() {
        let (clock, store) = store();
        let ttl = Some(Duration::from_secs(60));
        store.write("g", &[row("AAPL", 20, 20, 1.0), row("MSFT", 20, 20, 2.0)], ttl).await.unwrap();
        store.write("g", &[row("KEEP", 20, 20, 3.0)], None).await.unwrap();
        clock.advance_secs(59);
        assert!(store.read("g", &[key("AAPL")]).await.unwrap()[0].is_some());

        clock.advance_secs(1);
        assert_eq!(
            store.read("g", &[key("AAPL"), key("KEEP")]).await.unwrap(),
            vec![None, Some(row("KEEP", 20, 20, 3.0))]
        );
        assert_eq!(store.len(), 2, "the expired entry read was purged lazily");
        assert_eq!(store.purge_expired(), 1);
        assert_eq!(store.len(), 1);

        // Once expired, even an older event may take the slot again.
        store.write("g", &[row("AAPL", 20, 20, 1.0)], ttl).await.unwrap();
        clock.advance_secs(61);
        store.write("g", &[row("AAPL", 10, 10, 4.0)], ttl).await.unwrap();
        assert_eq!(store.read("g", &[key("AAPL")]).await.unwrap(), vec![Some(row("AAPL", 10, 10, 4.0))]);
    }
}
