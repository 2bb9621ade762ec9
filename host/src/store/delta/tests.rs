//! The lakehouse store against the offline conformance suite, twice: with
//! every write still waiting in the log, and with every write flushed into
//! the tables; then what only it does (flushing, several hosts, layout).

use super::*;
use crate::model::Value;
use crate::store::Registry;
use crate::store::conformance::table;
use crate::store::sqlite::SqliteStore;
use std::collections::BTreeMap;

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    log: Arc<SqliteStore>,
    store: Arc<DeltaOffline>,
}

fn quiet() -> FlushPolicy {
    // Nothing flushes unless a test asks: no flusher runs here.
    FlushPolicy { age: std::time::Duration::from_secs(3600), ..FlushPolicy::default() }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SqliteStore::open(&dir.path().join("wafer.db")).await.unwrap());
    let root = dir.path().join("offline");
    let store = DeltaOffline::open(root.to_str().unwrap(), HashMap::new(), log.clone(), "host-a", quiet()).unwrap();
    Fixture { _dir: dir, root, log, store }
}

/// The store, flushing every write into its table before returning.
struct Flushed(Arc<DeltaOffline>);

#[async_trait]
impl OfflineStore for Flushed {
    async fn write_source_rows(&self, table: &TableDef, rows: &[SourceRow]) -> StoreResult<u64> {
        let n = self.0.write_source_rows(table, rows).await?;
        self.0.flush_all().await?;
        Ok(n)
    }
    async fn read_source(&self, source: &str, entity: &EntityKey, range: SourceRange) -> StoreResult<Vec<SourceRow>> {
        self.0.read_source(source, entity, range).await
    }
    async fn source_entities(&self, source: &str) -> StoreResult<Vec<(EntityKey, Timestamp)>> {
        self.0.source_entities(source).await
    }
    async fn delete_source_rows(&self, source: &str) -> StoreResult<()> {
        self.0.delete_source_rows(source).await
    }
    async fn source_ingest_watermark(&self, source: &str) -> StoreResult<Option<Timestamp>> {
        self.0.source_ingest_watermark(source).await
    }
    async fn source_changes(&self, source: &str, after: Timestamp) -> StoreResult<Vec<(EntityKey, Timestamp)>> {
        self.0.source_changes(source, after).await
    }
    async fn write_feature_rows(&self, table: &TableDef, rows: &[FeatureRow]) -> StoreResult<u64> {
        let n = self.0.write_feature_rows(table, rows).await?;
        self.0.flush_all().await?;
        Ok(n)
    }
    async fn write_feature_batch(&self, table: &TableDef, batch: &FeatureBatch) -> StoreResult<u64> {
        let n = self.0.write_feature_batch(table, batch).await?;
        self.0.flush_all().await?;
        Ok(n)
    }
    async fn read_source_tables(
        &self,
        source: &TableDef,
        entities: &[EntityKey],
        range: SourceRange,
    ) -> StoreResult<Vec<Table>> {
        self.0.read_source_tables(source, entities, range).await
    }
    async fn latest_feature_rows(&self, group: &str, entities: &[EntityKey]) -> StoreResult<Vec<Option<FeatureRow>>> {
        self.0.latest_feature_rows(group, entities).await
    }
    async fn delete_feature_rows(&self, group: &str) -> StoreResult<()> {
        self.0.delete_feature_rows(group).await
    }
    async fn feature_rows_as_of(
        &self,
        group: &str,
        points: &[(EntityKey, Timestamp)],
        rules: AsOfRules,
    ) -> StoreResult<Vec<Option<FeatureRow>>> {
        self.0.feature_rows_as_of(group, points, rules).await
    }
    async fn feature_columns_as_of(&self, group: &str, points: AsOfPoints<'_>) -> StoreResult<AsOfColumns> {
        self.0.feature_columns_as_of(group, points).await
    }
    async fn freshness(
        &self,
        group: &str,
        stale_before: Option<Timestamp>,
        expired_before: Option<Timestamp>,
    ) -> StoreResult<FreshnessCounts> {
        self.0.freshness(group, stale_before, expired_before).await
    }
    async fn feature_statistics(
        &self,
        group: &str,
        features: &[(String, bool)],
    ) -> StoreResult<Vec<FeatureStatistics>> {
        self.0.feature_statistics(group, features).await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.0.ping().await
    }
}

macro_rules! both_ways {
    ($($name:ident),* $(,)?) => {
        mod logged {
            $(
                #[tokio::test]
                async fn $name() {
                    let f = super::fixture().await;
                    crate::store::conformance::$name(&*f.store).await;
                }
            )*
        }
        mod flushed {
            $(
                #[tokio::test]
                async fn $name() {
                    let f = super::fixture().await;
                    crate::store::conformance::$name(&super::Flushed(f.store.clone())).await;
                }
            )*
        }
        // As the sole writer (a SQLite registry's server): reads trust the
        // kept merges between this store's own writes.
        mod exclusive {
            $(
                #[tokio::test]
                async fn $name() {
                    let f = super::fixture().await;
                    f.store.set_exclusive(true);
                    crate::store::conformance::$name(&*f.store).await;
                }
            )*
        }
        mod exclusive_flushed {
            $(
                #[tokio::test]
                async fn $name() {
                    let f = super::fixture().await;
                    f.store.set_exclusive(true);
                    crate::store::conformance::$name(&super::Flushed(f.store.clone())).await;
                }
            )*
        }
    };
}

both_ways!(
    provenance_round_trips_through_every_read,
    freshness_counts_each_entity_by_its_newest_row,
    statistics_match_hand_computed_values,
    source_changes_are_found_by_ingest_time_not_event_time,
    as_of_lookups_pick_the_row_known_at_each_point,
    as_of_lookups_match_a_brute_force_reference,
    writing_the_same_rows_twice_keeps_one_copy_of_each,
    source_reads_honour_last_and_until_and_come_oldest_first,
    latest_feature_row_is_the_newest_event_and_on_ties_the_newest_created,
    values_of_every_type_round_trip,
);

fn key(k: &str) -> EntityKey {
    EntityKey(k.to_string())
}

fn feature_row(entity: &str, event: i64, x: f64) -> FeatureRow {
    FeatureRow {
        entity: key(entity),
        event_ts: Timestamp::from_secs(event),
        created: Timestamp::from_secs(event),
        created_given: false,
        values: [("x".to_string(), Value::Float64(x))].into_iter().collect(),
        provenance: None,
    }
}

/// The columns a batch transform reads, sliced from the merged table,
/// are the tables built from the rows the row read returns, logged and
/// flushed, for every type, nulls, a column the table does not have yet,
/// and the `last` and `until` ranges.
#[tokio::test]
async fn source_tables_sliced_from_the_columns_equal_the_tables_of_the_rows() {
    use crate::model::{Column, ColumnValues, ValueType as T};
    let f = fixture().await;
    let columns = [("x", T::Float64), ("n", T::Int64), ("b", T::Bool), ("t", T::String), ("l", T::Float64List)];
    let mut def = TableDef {
        name: "s".into(),
        join_keys: vec!["id".into()],
        columns: columns.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
    };
    let mut rows = Vec::new();
    for (e, entity) in ["a", "b"].iter().enumerate() {
        for d in 0..4i64 {
            let mut values = BTreeMap::new();
            // Row 1 of each entity has no x and no t; odd rows no list.
            if d != 1 {
                values.insert("x".to_string(), Value::Float64((e * 10) as f64 + d as f64 + 0.5));
                values.insert("t".to_string(), Value::String(format!("{entity}{d}")));
            }
            values.insert("n".to_string(), Value::Int64(d - 2));
            values.insert("b".to_string(), Value::Bool(d % 2 == 0));
            if d % 2 == 0 {
                values.insert("l".to_string(), Value::Float64List(vec![d as f64, -1.0]));
            }
            rows.push(SourceRow { entity: key(entity), ts: Timestamp::from_secs(1_000 + d * 86_400), values });
        }
    }
    f.store.write_source_rows(&def, &rows).await.unwrap();
    // A field the definition gained after the rows were written.
    def.columns.push(("y".to_string(), T::Float64));
    let entities = [key("a"), key("b"), key("nobody")];
    let ranges = [
        SourceRange::default(),
        SourceRange { last: Some(2), until: None },
        SourceRange { last: None, until: Some(Timestamp::from_secs(1_000 + 2 * 86_400)) },
    ];
    for flushed in [false, true] {
        if flushed {
            f.store.flush_all().await.unwrap();
        }
        for range in ranges {
            let tables = f.store.read_source_tables(&def, &entities, range).await.unwrap();
            for (entity, table) in entities.iter().zip(&tables) {
                let rows = f.store.read_source("s", entity, range).await.unwrap();
                let expected = Table::of_source_rows(&def.columns, &rows);
                assert_eq!(table, &expected, "{entity} {range:?} flushed: {flushed}");
            }
        }
        let whole = &f.store.read_source_tables(&def, &entities[..1], SourceRange::default()).await.unwrap()[0];
        let x = Column { name: "x".into(), values: ColumnValues::Float64(vec![0.5, 0.0, 2.5, 3.5]), nulls: vec![1] };
        assert_eq!(whole.column("x"), Some(&x));
        assert_eq!(whole.column("n").map(|c| &c.values), Some(&ColumnValues::Int64(vec![-2, -1, 0, 1])));
        assert_eq!(whole.column("y").map(|c| c.nulls.clone()), Some(vec![0, 1, 2, 3]));
        assert_eq!(whole.timestamps[3], Timestamp::from_secs(1_000 + 3 * 86_400).micros());
    }
}

async fn waiting_rows(log: &SqliteStore) -> u64 {
    WriteLog::pending(log).await.unwrap().iter().map(|p| p.rows).sum()
}

#[tokio::test]
async fn flushing_moves_logged_rows_into_a_delta_table_and_reads_do_not_change() {
    let f = fixture().await;
    let rows: Vec<FeatureRow> = (0..40).map(|i| feature_row(&format!("E{}", i % 4), i, i as f64)).collect();
    for chunk in rows.chunks(7) {
        f.store.write_feature_rows(&table("g"), chunk).await.unwrap();
    }
    assert_eq!(waiting_rows(&f.log).await, 40);
    assert!(!f.root.join("features/g/_delta_log").exists(), "small writes wait in the log");
    let keys: Vec<EntityKey> = (0..5).map(|i| key(&format!("E{i}"))).collect();
    let before = f.store.latest_feature_rows("g", &keys).await.unwrap();
    assert_eq!(before[0], Some(feature_row("E0", 36, 36.0)));
    assert_eq!(before[4], None);

    assert_eq!(f.store.flush_all().await.unwrap(), 40);
    assert_eq!(waiting_rows(&f.log).await, 0);
    assert!(f.root.join("features/g/_delta_log").exists());
    assert_eq!(f.store.latest_feature_rows("g", &keys).await.unwrap(), before);
    let stats = f.store.feature_statistics("g", &[("x".into(), true)]).await.unwrap();
    assert_eq!(stats[0].count, 40);
}

/// Statistics of a table with no merge in memory read it a month at a time
/// and keep none of it, with the log's rewrites folded in, and equal the
/// figures of the whole table's merge.
#[tokio::test]
async fn statistics_stream_the_table_a_month_at_a_time_and_keep_nothing() {
    let f = fixture().await;
    // 2024-01-01 on: E0 and E1 daily for 100 days (x = day and 2 x day),
    // flushed; then E0's days 10..20 rewritten as 1000 + day and its days
    // 100..120 added (x = day), waiting in the log. Four months in all.
    let (start, day) = (1_704_067_200, 86_400);
    let at = |d: i64| start + d * day;
    let mut rows: Vec<FeatureRow> = (0..100).map(|d| feature_row("E0", at(d), d as f64)).collect();
    rows.extend((0..100).map(|d| feature_row("E1", at(d), 2.0 * d as f64)));
    f.store.write_feature_rows(&table("g"), &rows).await.unwrap();
    f.store.flush_all().await.unwrap();
    let later: Vec<FeatureRow> = (10..20)
        .map(|d| feature_row("E0", at(d), 1000.0 + d as f64))
        .chain((100..120).map(|d| feature_row("E0", at(d), d as f64)))
        .collect();
    f.store.write_feature_rows(&table("g"), &later).await.unwrap();
    assert_eq!(waiting_rows(&f.log).await, 30);

    let fresh = DeltaOffline::open(f.root.to_str().unwrap(), HashMap::new(), f.log.clone(), "host-b", quiet()).unwrap();
    let path = Kind::Features.path("g");
    assert!(fresh.tables.months(&path).await.unwrap().len() >= 3, "the flushed rows span several partitions");
    let streamed = fresh.feature_statistics("g", &[("x".into(), true)]).await.unwrap().remove(0);
    assert!(!fresh.kept.holds(&path), "streamed statistics keep no merge of the table");
    // By hand: E0 0..100 without 10..20, 1010..1020, 100..120; E1 0, 2, .., 198.
    let sum = (4950 - 145 + 10_145 + 2190 + 9900) as f64;
    assert_eq!((streamed.count, streamed.nulls), (220, 0));
    assert_eq!(streamed.mean, Some(sum / 220.0));
    assert_eq!((streamed.min, streamed.max), (Some(0.0), Some(1019.0)));

    fresh.merged(Kind::Features, "g", Wanted::default(), false).await.unwrap();
    assert!(fresh.kept.holds(&path));
    let from_merge = fresh.feature_statistics("g", &[("x".into(), true)]).await.unwrap().remove(0);
    assert_eq!(streamed, from_merge, "the same figures as from the whole table's merge");
}

/// A flusher that dies after its commit but before trimming the log leaves
/// the rows in both; they are flushed again, and every read still sees
/// each row once.
#[tokio::test]
async fn rows_committed_twice_by_an_interrupted_flush_are_read_once() {
    let f = fixture().await;
    let rows: Vec<FeatureRow> = (0..10).map(|i| feature_row("A", i, i as f64)).collect();
    f.store.write_feature_rows(&table("g"), &rows).await.unwrap();
    // The commit of a flush, without its trim.
    let path = Kind::Features.path("g");
    let (batches, _) = flush::logged_batches(Kind::Features, &*f.log, &path).await.unwrap();
    f.store.tables.append(&path, batches).await.unwrap();
    let stats = |s: Arc<DeltaOffline>| async move { s.feature_statistics("g", &[("x".into(), true)]).await.unwrap() };
    assert_eq!(stats(f.store.clone()).await[0].count, 10);
    f.store.flush_all().await.unwrap();
    assert_eq!(stats(f.store.clone()).await[0].count, 10);
    let points: Vec<(EntityKey, Timestamp)> = (0..10).map(|i| (key("A"), Timestamp::from_secs(i))).collect();
    let found = f.store.feature_rows_as_of("g", &points, AsOfRules::default()).await.unwrap();
    assert_eq!(found, rows.into_iter().map(Some).collect::<Vec<_>>());
}

/// Two hosts on one registry database and one table root, writing the same
/// group at once and both flushing: one table, every row once, the newest
/// write of a key winning.
#[tokio::test]
async fn two_hosts_writing_one_group_make_one_consistent_table() {
    let f = fixture().await;
    let other = DeltaOffline::open(f.root.to_str().unwrap(), HashMap::new(), f.log.clone(), "host-b", quiet()).unwrap();
    let hosts = [f.store.clone(), other.clone()];
    let mut writers = Vec::new();
    for (h, host) in hosts.iter().enumerate() {
        let host = host.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..10 {
                let rows: Vec<FeatureRow> = (0..20)
                    .map(|i| feature_row(&format!("H{h}-{i}"), round, (h * 1000 + round as usize) as f64))
                    .collect();
                host.write_feature_rows(&table("g"), &rows).await.unwrap();
                host.flush_all().await.unwrap();
            }
            // Both rewrite one shared key; the later write wins.
            host.write_feature_rows(&table("g"), &[feature_row("shared", 1, h as f64)]).await.unwrap();
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    f.store.flush_all().await.unwrap();
    other.flush_all().await.unwrap();
    for host in &hosts {
        let stats = host.feature_statistics("g", &[("x".into(), true)]).await.unwrap();
        assert_eq!(stats[0].count, 2 * 20 * 10 + 1, "every row once, seen by both hosts");
        let latest = host.latest_feature_rows("g", &[key("H0-3"), key("H1-3")]).await.unwrap();
        assert_eq!(latest, vec![Some(feature_row("H0-3", 9, 9.0)), Some(feature_row("H1-3", 9, 1009.0))]);
    }
    let shared = f.store.latest_feature_rows("g", &[key("shared")]).await.unwrap().remove(0).unwrap();
    let newest = WriteLog::next_seq(&*f.log).await.unwrap();
    assert!(newest > 0);
    assert!(shared.values["x"] == Value::Float64(0.0) || shared.values["x"] == Value::Float64(1.0));
    assert_eq!(other.latest_feature_rows("g", &[key("shared")]).await.unwrap()[0].as_ref(), Some(&shared));
}

/// Large writes commit to the table directly; a small rewrite of one of
/// their rows, still in the log, wins over it, and keeps winning once
/// flushed.
#[tokio::test]
async fn a_logged_rewrite_wins_over_a_direct_write_of_the_same_row() {
    let f = fixture().await;
    let rows: Vec<FeatureRow> = (0..DIRECT_ROWS as i64).map(|i| feature_row(&format!("E{}", i % 50), i, 1.0)).collect();
    f.store.write_feature_rows(&table("g"), &rows).await.unwrap();
    assert_eq!(waiting_rows(&f.log).await, 0, "a large write skips the log");
    let last = rows.last().unwrap().clone();
    let rewrite = FeatureRow { values: [("x".to_string(), Value::Float64(2.0))].into_iter().collect(), ..last };
    f.store.write_feature_rows(&table("g"), std::slice::from_ref(&rewrite)).await.unwrap();
    let read = || async { f.store.latest_feature_rows("g", std::slice::from_ref(&rewrite.entity)).await.unwrap() };
    assert_eq!(read().await, vec![Some(rewrite.clone())]);
    f.store.flush_all().await.unwrap();
    assert_eq!(read().await, vec![Some(rewrite.clone())]);
}

/// Tables have a column per join key and per declared value, typed, and
/// take columns a definition gains later; composite keys read back whole.
#[tokio::test]
async fn tables_have_typed_columns_and_gain_the_columns_a_definition_adds() {
    let f = fixture().await;
    let mut def = TableDef {
        name: "visits".into(),
        join_keys: vec!["hcp_id".into(), "drug".into()],
        columns: vec![("calls".into(), crate::model::ValueType::Int64)],
    };
    let row = |hcp: &str, drug: &str, t: i64, values: &[(&str, Value)]| FeatureRow {
        entity: EntityKey::from_parts(&[hcp, drug]),
        values: values.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        ..feature_row("unused", t, 0.0)
    };
    let first = row("h1", "d1", 1, &[("calls", Value::Int64(3))]);
    f.store.write_feature_rows(&def, std::slice::from_ref(&first)).await.unwrap();
    f.store.flush_all().await.unwrap();
    def.columns.push(("share".into(), crate::model::ValueType::Float64));
    let second = row("h1", "d2", 2, &[("calls", Value::Int64(4)), ("share", Value::Float64(0.5))]);
    f.store.write_feature_rows(&def, std::slice::from_ref(&second)).await.unwrap();
    f.store.flush_all().await.unwrap();

    let table = f.store.tables.latest("features/visits").await.unwrap().unwrap();
    let provider = table.table_provider().await.unwrap();
    let columns: Vec<(String, String)> =
        provider.schema().fields().iter().map(|c| (c.name().clone(), c.data_type().to_string())).collect();
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "hcp_id",
            "drug",
            "event_timestamp",
            "created_timestamp",
            "created_given",
            "calls",
            "provenance",
            "write_seq",
            "event_month",
            "share"
        ]
    );
    assert!(columns[2].1.starts_with("Timestamp(µs"), "{columns:?}");
    assert_eq!(columns[5].1, "Int64");
    let keys = [EntityKey::from_parts(&["h1", "d1"]), EntityKey::from_parts(&["h1", "d2"])];
    let latest = f.store.latest_feature_rows("visits", &keys).await.unwrap();
    assert_eq!(latest, vec![Some(first), Some(second)]);
}

#[tokio::test]
async fn a_value_column_may_not_take_a_bookkeeping_name() {
    let f = fixture().await;
    let def = TableDef {
        name: "g".into(),
        join_keys: vec!["id".into()],
        columns: vec![("write_seq".into(), crate::model::ValueType::Int64)],
    };
    let err = f.store.write_feature_rows(&def, &[feature_row("A", 1, 1.0)]).await.unwrap_err();
    assert!(matches!(&err, StoreError::Conflict(m) if m.contains("write_seq")), "{err:?}");
}

#[tokio::test]
async fn deleting_a_group_removes_its_table_and_its_waiting_rows() {
    let f = fixture().await;
    f.store.write_feature_rows(&table("g"), &[feature_row("A", 1, 1.0)]).await.unwrap();
    f.store.flush_all().await.unwrap();
    f.store.write_feature_rows(&table("g"), &[feature_row("A", 2, 2.0)]).await.unwrap();
    f.store.delete_feature_rows("g").await.unwrap();
    assert!(!f.root.join("features/g").exists());
    assert_eq!(waiting_rows(&f.log).await, 0);
    assert_eq!(f.store.latest_feature_rows("g", &[key("A")]).await.unwrap(), vec![None]);
}

/// A data dir from before the tables: its SQLite file's offline rows move
/// into the tables on first open, reading back the same (source rows with
/// their ingest times, so no incremental run sees a change), and the file
/// keeps none.
#[tokio::test]
async fn offline_rows_of_an_earlier_sqlite_file_are_imported_once() {
    use crate::model::{Entity, FeatureGroup, Source};
    let f = fixture().await;
    let entity: Entity = serde_json::from_value(serde_json::json!({"join_keys": ["ticker"]})).unwrap();
    let entity = Entity { name: "ticker".into(), ..entity };
    let source: Source = serde_json::from_value(serde_json::json!({
        "entity": "ticker", "timestamp_field": "ts", "fields": [{"name": "close", "type": "float64"}]
    }))
    .unwrap();
    let group: FeatureGroup = serde_json::from_value(serde_json::json!({
        "entity": "ticker", "features": [{"name": "x", "type": "float64"}], "producer": {"kind": "push"}
    }))
    .unwrap();
    f.log.put_entity(&entity).await.unwrap();
    f.log.put_source(&Source { name: "prices".into(), ..source }).await.unwrap();
    f.log.put_feature_group(&FeatureGroup { name: "pushed".into(), ..group }).await.unwrap();
    let close = |v: f64| [("close".to_string(), Value::Float64(v))].into_iter().collect();
    let sources: Vec<(SourceRow, i64)> = (1..=3)
        .map(|t| (SourceRow { entity: key("AAPL"), ts: Timestamp::from_secs(t), values: close(t as f64) }, 1_000 + t))
        .collect();
    let provenance =
        crate::model::Provenance { transform: "t".into(), version: "1.0.0".into(), sha256: "ab".repeat(32) };
    let features = vec![
        FeatureRow { created_given: true, ..feature_row("AAPL", 5, 1.5) },
        FeatureRow { provenance: Some(provenance), ..feature_row("MSFT", 6, 2.5) },
    ];
    f.log.write_legacy_rows("prices", &sources, "pushed", &features).await.unwrap();
    f.log.write_legacy_rows("gone", &[sources[0].clone()], "pushed", &[]).await.unwrap();

    let imported = f.store.import_sqlite(&f.log).await.unwrap();
    assert_eq!(imported, Imported { source_rows: 3, feature_rows: 2, skipped: vec!["source gone".into()] });
    let read = f.store.read_source("prices", &key("AAPL"), SourceRange::default()).await.unwrap();
    assert_eq!(read, sources.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>());
    assert_eq!(f.store.source_ingest_watermark("prices").await.unwrap(), Some(Timestamp(1_003)));
    assert!(f.store.source_changes("prices", Timestamp(1_003)).await.unwrap().is_empty());
    let latest = f.store.latest_feature_rows("pushed", &[key("AAPL"), key("MSFT")]).await.unwrap();
    assert_eq!(latest, features.iter().cloned().map(Some).collect::<Vec<_>>());
    let (left_sources, left_groups) = f.log.legacy_offline_names().await.unwrap();
    assert_eq!((left_sources, left_groups), (vec!["gone".to_string()], vec![]));
    assert_eq!(f.store.import_sqlite(&f.log).await.unwrap().source_rows, 0, "imported once");
}

/// Each flush adds files; compaction rewrites them into one per partition
/// and, past the retention, deletes the superseded ones; reads do not
/// change.
#[tokio::test]
async fn compaction_rewrites_small_files_and_vacuums_the_superseded_ones() {
    let f = fixture().await;
    let mut written = Vec::new();
    for i in 0..12 {
        let row = feature_row(&format!("E{}", i % 3), i, i as f64);
        f.store.write_feature_rows(&table("g"), std::slice::from_ref(&row)).await.unwrap();
        f.store.flush_all().await.unwrap();
        written.push(row);
    }
    let path = Kind::Features.path("g");
    assert_eq!(f.store.tables.file_count(&path).await.unwrap(), 12);
    let keys = [key("E0"), key("E1"), key("E2")];
    let before = f.store.latest_feature_rows("g", &keys).await.unwrap();
    let points: Vec<(EntityKey, Timestamp)> = written.iter().map(|r| (r.entity.clone(), r.event_ts)).collect();
    let as_of = f.store.feature_rows_as_of("g", &points, AsOfRules::default()).await.unwrap();

    let done = f.store.compact(&[], &["g".to_string()], std::time::Duration::ZERO).await.unwrap();
    assert_eq!(
        done,
        vec![Compaction {
            table: path.clone(),
            files_before: 12,
            files_removed: 12,
            files_added: 1,
            files_deleted: 12
        }]
    );
    assert_eq!(f.store.tables.file_count(&path).await.unwrap(), 1);
    let parquet_files = std::fs::read_dir(f.root.join("features/g/event_month=1970-01-01")).unwrap().count();
    assert_eq!(parquet_files, 1, "superseded files are gone from storage");
    assert_eq!(f.store.latest_feature_rows("g", &keys).await.unwrap(), before);
    assert_eq!(f.store.feature_rows_as_of("g", &points, AsOfRules::default()).await.unwrap(), as_of);
    assert_eq!(as_of, written.into_iter().map(Some).collect::<Vec<_>>());
    // A table never written has nothing to compact.
    assert!(f.store.compact(&["none".into()], &[], std::time::Duration::ZERO).await.unwrap().is_empty());
}

/// A small deterministic generator, so a failing sequence can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Two hosts on one log and one table root, with reads kept in memory
/// between writes: small and direct writes, flushes and compactions by
/// either host, interleaved with reads of a few entities and of the whole
/// table by either host. Every read equals a model of the writes (the
/// newest write of a key wins), so a kept merge that missed a write, or
/// outlived a change it could not follow, fails here.
#[tokio::test]
async fn kept_merges_stay_exact_through_writes_flushes_and_compactions_on_two_hosts() {
    let f = fixture().await;
    let other = DeltaOffline::open(f.root.to_str().unwrap(), HashMap::new(), f.log.clone(), "host-b", quiet()).unwrap();
    let hosts = [f.store.clone(), other];
    let mut model: std::collections::BTreeMap<(String, i64), f64> = Default::default();
    let mut rng = Lcg(7);
    let entity = |i: u64| format!("E{i}");
    let (mut direct_writes, mut compactions) = (0, 0);
    for step in 0..240 {
        let host = &hosts[rng.below(2) as usize];
        let at = format!("step {step}");
        match rng.below(10) {
            0..=2 => {
                let rows: Vec<FeatureRow> = (0..1 + rng.below(4))
                    .map(|_| {
                        feature_row(&entity(rng.below(8)), rng.below(30) as i64, (step * 10 + rng.below(10)) as f64)
                    })
                    .collect();
                host.write_feature_rows(&table("g"), &rows).await.unwrap();
                for r in &rows {
                    model.insert((r.entity.0.clone(), r.event_ts.0), r.values["x"].as_f64().unwrap());
                }
            }
            3 if direct_writes < 3 => {
                direct_writes += 1;
                let rows: Vec<FeatureRow> = (0..DIRECT_ROWS as i64)
                    .map(|i| feature_row(&entity(8 + (i as u64 % 4)), i / 4 % 40, (step * 1000) as f64 + i as f64))
                    .collect();
                host.write_feature_rows(&table("g"), &rows).await.unwrap();
                for r in &rows {
                    model.insert((r.entity.0.clone(), r.event_ts.0), r.values["x"].as_f64().unwrap());
                }
            }
            4 => {
                host.flush_all().await.unwrap();
            }
            5 if compactions < 4 => {
                compactions += 1;
                host.compact(&[], &["g".to_string()], std::time::Duration::ZERO).await.unwrap();
            }
            6 | 7 => {
                let keys: Vec<EntityKey> = (0..1 + rng.below(3)).map(|_| key(&entity(rng.below(13)))).collect();
                let got = host.latest_feature_rows("g", &keys).await.unwrap();
                for (k, row) in keys.iter().zip(got) {
                    let want = model.range((k.0.clone(), i64::MIN)..=(k.0.clone(), i64::MAX)).next_back();
                    let got = row.map(|r| ((r.entity.0, r.event_ts.0), r.values["x"].as_f64().unwrap()));
                    assert_eq!(got, want.map(|(key, x)| (key.clone(), *x)), "{at}: latest of {k:?}");
                }
            }
            8 => {
                let (k, t) = (entity(rng.below(12)), Timestamp::from_secs(rng.below(40) as i64));
                let got = host.feature_rows_as_of("g", &[(key(&k), t)], AsOfRules::default()).await.unwrap();
                let want = model.range((k.clone(), i64::MIN)..=(k.clone(), t.0)).next_back();
                let got =
                    got[0].as_ref().map(|r| ((r.entity.0.clone(), r.event_ts.0), r.values["x"].as_f64().unwrap()));
                assert_eq!(got, want.map(|(key, x)| (key.clone(), *x)), "{at}: {k} as of {t:?}");
            }
            _ => {
                let stats = host.feature_statistics("g", &[("x".into(), true)]).await.unwrap();
                assert_eq!(stats.first().map_or(0, |s| s.count), model.len() as u64, "{at}: rows of the whole table");
                let sum: f64 = model.values().sum();
                let mean = stats.first().and_then(|s| s.mean).unwrap_or(0.0);
                assert!((mean * model.len() as f64 - sum).abs() < 1e-6 * sum.abs().max(1.0), "{at}: mean {mean}");
            }
        }
        // Background reads of whole tables may land at any point.
        tokio::task::yield_now().await;
    }
    assert!(direct_writes > 0 && compactions > 0, "the sequence exercised direct writes and compactions");
}

/// Kept merges share one memory budget: reading a second table whole
/// drops the least recently read one, and reads stay exact either way.
#[tokio::test]
async fn kept_merges_stay_within_one_memory_budget() {
    let f = fixture().await;
    let rows: Vec<FeatureRow> = (0..2_000).map(|i| feature_row(&format!("E{}", i % 20), i, i as f64)).collect();
    for g in ["g1", "g2", "g3"] {
        f.store.write_feature_rows(&table(g), &rows).await.unwrap();
    }
    // Freshness reads a table whole (and keeps its merge).
    let count = |g: &'static str| {
        let store = f.store.clone();
        async move { store.freshness(g, None, None).await.unwrap().entities * 100 }
    };
    assert_eq!(count("g1").await, 2_000);
    let one = f.store.kept.bytes_of("features/g1").unwrap();
    // Room for two tables, not three.
    f.store.kept.set_budget(one * 5 / 2);
    assert_eq!(count("g2").await, 2_000);
    assert!(f.store.kept.holds("features/g1") && f.store.kept.holds("features/g2"));
    // g1 read again: g2 is now the least recently read.
    assert_eq!(count("g1").await, 2_000);
    assert_eq!(count("g3").await, 2_000);
    assert!(f.store.kept.holds("features/g1"), "read most recently but one");
    assert!(!f.store.kept.holds("features/g2"), "the least recently read was dropped");
    assert!(f.store.kept.holds("features/g3"));
    assert_eq!(count("g2").await, 2_000, "a dropped table is read again");
    let latest = f.store.latest_feature_rows("g2", &[key("E7")]).await.unwrap();
    assert_eq!(latest, vec![Some(feature_row("E7", 1_987, 1_987.0))]);
}

#[tokio::test]
async fn a_sole_writer_serves_each_write_from_its_kept_merge_without_asking_the_log() {
    let f = fixture().await;
    f.store.set_exclusive(true);
    let t = table("g");
    f.store.write_feature_rows(&t, &[feature_row("E", 1, 1.0), feature_row("F", 1, 5.0)]).await.unwrap();
    // The first read keeps the table's merge; later writes go into it.
    let latest = |e: &'static str| {
        let store = f.store.clone();
        async move { store.latest_feature_rows("g", &[key(e)]).await.unwrap()[0].clone().map(|r| r.values["x"].clone()) }
    };
    assert_eq!(latest("E").await, Some(Value::Float64(1.0)));
    let path = Kind::Features.path("g");
    // That read had the whole table merged in the background.
    for _ in 0..500 {
        if f.store.kept.holds(&path) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(f.store.kept.holds(&path), "the table's merge is kept");
    // The next read checks it once against the log and the table.
    assert_eq!(latest("E").await, Some(Value::Float64(1.0)));
    if !f.store.local.unchanged(&path) {
        // The background read kept its merge just after that check began.
        assert_eq!(latest("E").await, Some(Value::Float64(1.0)));
    }
    assert!(f.store.local.unchanged(&path), "found current");
    for (i, x) in [2.0, 3.0, 4.0].into_iter().enumerate() {
        f.store.write_feature_rows(&t, &[feature_row("E", 2 + i as i64, x)]).await.unwrap();
        assert_eq!(latest("E").await, Some(Value::Float64(x)), "write {i} is read back at once");
    }
    assert!(f.store.local.unchanged(&path), "the kept merge took every write: nothing to check");
    // A flush changes what the log holds: the next read checks again, and
    // finds the same rows in the table.
    f.store.flush_all().await.unwrap();
    assert!(!f.store.local.unchanged(&path));
    assert_eq!(latest("E").await, Some(Value::Float64(4.0)));
    assert_eq!(latest("F").await, Some(Value::Float64(5.0)));
    assert!(f.store.local.unchanged(&path));
    // Deleting the group's rows is seen at once too.
    f.store.delete_feature_rows("g").await.unwrap();
    assert_eq!(latest("E").await, None);
}
