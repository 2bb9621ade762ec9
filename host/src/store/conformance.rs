//! Behaviour every SQL backend must show, written once and run against each
//! backend by its own tests (`sqlite.rs`, `postgres.rs`).
//!
//! - The job-task protocol: leases are exclusive, expire and can be taken
//!   over, a stale holder cannot commit, and the last completion finishes
//!   the job.
//! - Freshness counts and feature statistics, against hand-computed values.
//! - Point-in-time lookups, and the provenance of feature rows through
//!   every read.
//! - The write log: entries in order and in batches of rows, removal,
//!   pending totals, one sequence for appends and direct writes, and its
//!   leases.

use super::{AsOfPoints, AsOfRules, LogEntry, OfflineStore, PendingTable, Registry, SourceRange, TableDef, WriteLog};
use crate::model::{
    Descriptor, EntityKey, FeatureRow, FieldSpec, Job, JobState, JobTask, Provenance, SourceRow, TaskOutcome,
    Timestamp, TransformKind, TransformVersion, Value, ValueType,
};
use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// A table of entity `id` with every value column the tests write.
pub fn table(name: &str) -> TableDef {
    let columns = [
        ("x", ValueType::Float64),
        ("y", ValueType::Float64),
        ("label", ValueType::String),
        ("close", ValueType::Float64),
        ("f", ValueType::Float64),
        ("i", ValueType::Int64),
        ("b", ValueType::Bool),
        ("s", ValueType::String),
        ("fl", ValueType::Float64List),
        ("sl", ValueType::StringList),
        ("n", ValueType::Float64),
    ];
    TableDef {
        name: name.into(),
        join_keys: vec!["id".into()],
        columns: columns.iter().map(|(c, t)| (c.to_string(), *t)).collect(),
    }
}

fn job(id: &str, created: i64, total: u64) -> Job {
    Job {
        id: id.into(),
        feature_group: "technical".into(),
        state: JobState::Running,
        incremental: false,
        entities_done: 0,
        entities_total: total,
        rows_written: 0,
        errors: vec![],
        created_at: Timestamp::from_secs(created),
        started_at: Some(Timestamp::from_secs(created)),
        finished_at: None,
        transform: Some("indicators@1.0.0".into()),
        hosts: BTreeMap::new(),
        sources_ingested_until: None,
    }
}

fn tasks(job_id: &str, entities: &[&[&str]]) -> Vec<JobTask> {
    entities
        .iter()
        .enumerate()
        .map(|(i, keys)| JobTask {
            job_id: job_id.into(),
            task_no: i as u32,
            entities: keys.iter().map(|k| EntityKey(k.to_string())).collect(),
            after: keys.iter().map(|_| Some(Timestamp::from_secs(7))).collect(),
        })
        .collect()
}

fn outcome(host: &str, entities: u64, rows: u64, errors: &[&str]) -> TaskOutcome {
    TaskOutcome {
        host: host.into(),
        entities_done: entities,
        rows_written: rows,
        errors: errors.iter().map(|e| e.to_string()).collect(),
    }
}

/// Leases go oldest job first, each task to one holder; completions add up
/// and the last one finishes the job; a done task cannot be completed again.
pub async fn leases_are_exclusive_and_the_last_completion_finishes_the_job(store: &dyn Registry) {
    let older = tasks("older", &[&["A", "B"], &["C"]]);
    let newer = tasks("newer", &[&["D"]]);
    store.create_job(&job("newer", 20, 1), &newer).await.unwrap();
    store.create_job(&job("older", 10, 3), &older).await.unwrap();

    let first = store.lease_task("h1", LONG).await.unwrap().expect("a task");
    assert_eq!((first.task.clone(), first.attempt), (older[0].clone(), 1), "oldest job's first task, as stored");
    let second = store.lease_task("h2", LONG).await.unwrap().expect("a task");
    assert_eq!(second.task, older[1]);
    let third = store.lease_task("h1", LONG).await.unwrap().expect("a task");
    assert_eq!(third.task, newer[0]);
    assert_eq!(store.lease_task("h3", LONG).await.unwrap(), None, "every task is held");

    let now = Timestamp::from_secs(99);
    let after_first = store.complete_task("older", 0, &outcome("h1", 2, 500, &[]), now).await.unwrap();
    let after_first = after_first.expect("h1 holds task 0");
    assert_eq!((after_first.state, after_first.entities_done, after_first.rows_written), (JobState::Running, 2, 500));
    assert_eq!(store.complete_task("older", 1, &outcome("h1", 1, 9, &[]), now).await.unwrap(), None, "h2 holds it");
    let done = store.complete_task("older", 1, &outcome("h2", 1, 250, &["C: trap"]), now).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Failed, "an entity failed: {done:?}");
    assert_eq!((done.entities_done, done.rows_written, done.finished_at), (3, 750, Some(now)));
    assert_eq!(done.errors, vec!["C: trap".to_string()]);
    assert_eq!(done.hosts, BTreeMap::from([("h1".to_string(), 2), ("h2".to_string(), 1)]));
    assert_eq!(store.get_job("older").await.unwrap(), Some(done), "the stored job is the finished one");
    assert_eq!(store.complete_task("older", 1, &outcome("h2", 1, 250, &[]), now).await.unwrap(), None, "done once");

    let newer_done = store.complete_task("newer", 0, &outcome("h1", 1, 10, &[]), now).await.unwrap().unwrap();
    assert_eq!(newer_done.state, JobState::Succeeded);
}

/// A lease that expires is taken over; its old holder can neither renew
/// nor commit. A released task is leasable at once.
pub async fn expired_leases_are_taken_over_and_released_tasks_return(store: &dyn Registry) {
    store.create_job(&job("j", 10, 2), &tasks("j", &[&["A"], &["B"]])).await.unwrap();
    let held = store.lease_task("slow", Duration::from_millis(1)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = store.lease_task("fast", LONG).await.unwrap().expect("the expired task");
    assert_eq!((taken.task.task_no, taken.attempt), (held.task.task_no, 2));
    assert!(!store.renew_lease("j", held.task.task_no, "slow", LONG).await.unwrap(), "slow lost it");
    assert!(store.renew_lease("j", taken.task.task_no, "fast", LONG).await.unwrap());
    let now = Timestamp::from_secs(50);
    assert_eq!(store.complete_task("j", held.task.task_no, &outcome("slow", 1, 1, &[]), now).await.unwrap(), None);

    let other = store.lease_task("fast", LONG).await.unwrap().expect("task 1");
    assert_eq!(store.lease_task("next", LONG).await.unwrap(), None);
    store.release_task("j", other.task.task_no, "someone-else").await.unwrap();
    assert_eq!(store.lease_task("next", LONG).await.unwrap(), None, "only the holder can release");
    store.release_task("j", other.task.task_no, "fast").await.unwrap();
    let again = store.lease_task("next", LONG).await.unwrap().expect("released task");
    assert_eq!((again.task.task_no, again.attempt), (other.task.task_no, 2));

    store.complete_task("j", taken.task.task_no, &outcome("fast", 1, 3, &[]), now).await.unwrap().unwrap();
    let job = store.complete_task("j", again.task.task_no, &outcome("next", 1, 4, &[]), now).await.unwrap().unwrap();
    assert_eq!((job.state, job.entities_done, job.rows_written), (JobState::Succeeded, 2, 7));
}

/// Many hosts leasing at once each get different tasks, and every task is
/// leased exactly once.
pub async fn concurrent_leasers_never_share_a_task(store: Arc<dyn Registry>) {
    let keys: Vec<String> = (0..40).map(|i| format!("E{i:02}")).collect();
    let chunks: Vec<Vec<&str>> = keys.iter().map(|k| vec![k.as_str()]).collect();
    let chunk_refs: Vec<&[&str]> = chunks.iter().map(Vec::as_slice).collect();
    store.create_job(&job("many", 1, 40), &tasks("many", &chunk_refs)).await.unwrap();
    let mut hosts = tokio::task::JoinSet::new();
    for h in 0..8 {
        let store = store.clone();
        hosts.spawn(async move {
            let mut got = Vec::new();
            while let Some(t) = store.lease_task(&format!("h{h}"), LONG).await.unwrap() {
                got.push(t.task.task_no);
            }
            got
        });
    }
    let mut all = Vec::new();
    while let Some(got) = hosts.join_next().await {
        all.extend(got.unwrap());
    }
    let unique: HashSet<u32> = all.iter().copied().collect();
    assert_eq!((all.len(), unique.len()), (40, 40), "each of 40 tasks leased once: {all:?}");
}

/// Jobs are listed newest first, optionally of one group, up to a limit.
pub async fn jobs_are_listed_newest_first(store: &dyn Registry) {
    let of = |id: &str, group: &str, created: i64| Job { feature_group: group.into(), ..job(id, created, 0) };
    store.create_job(&of("a", "technical", 1), &[]).await.unwrap();
    store.create_job(&of("b", "risk", 2), &[]).await.unwrap();
    store.create_job(&of("c", "technical", 3), &[]).await.unwrap();
    assert_eq!(store.get_job("a").await.unwrap(), Some(of("a", "technical", 1)));
    assert_eq!(store.get_job("zz").await.unwrap(), None);
    let ids = |jobs: Vec<Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_jobs(None, 10).await.unwrap()), vec!["c", "b", "a"]);
    assert_eq!(ids(store.list_jobs(Some("technical"), 10).await.unwrap()), vec!["c", "a"]);
    assert_eq!(ids(store.list_jobs(None, 1).await.unwrap()), vec!["c"]);
}

fn feature_row(entity: &str, event: i64, created: i64, values: &[(&str, Value)]) -> FeatureRow {
    FeatureRow {
        entity: EntityKey(entity.into()),
        event_ts: Timestamp::from_secs(event),
        created: Timestamp::from_secs(created),
        created_given: false,
        values: values.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        provenance: None,
    }
}

fn provenance(transform: &str, version: &str) -> Option<Provenance> {
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(format!("{transform}@{version}")));
    Some(Provenance { transform: transform.into(), version: version.into(), sha256 })
}

/// Every read gives back the provenance a row was written with, or none
/// for rows written without (pushed rows; rows stored before provenance
/// was recorded read back the same way). Rewriting a row (same entity,
/// event and created time) replaces its provenance too, even when its
/// values are unchanged, and large writes keep each row's own.
pub async fn provenance_round_trips_through_every_read(store: &dyn OfflineStore) {
    let x = |v: f64| [("x", Value::Float64(v))];
    let by = |row: FeatureRow, p: Option<Provenance>| FeatureRow { provenance: p, ..row };
    let (v1, v2) = (provenance("indicators", "1.0.0"), provenance("indicators", "1.1.0"));
    let rows = [
        by(feature_row("A", 100, 100, &x(1.0)), v1.clone()),
        by(feature_row("A", 200, 200, &x(2.0)), v2.clone()),
        feature_row("B", 100, 100, &x(3.0)),
        by(feature_row("C", 100, 100, &x(4.0)), v1.clone()),
    ];
    store.write_feature_rows(&table("g"), &rows).await.unwrap();
    let keys = |names: &[&str]| names.iter().map(|n| EntityKey(n.to_string())).collect::<Vec<_>>();
    let latest = store.latest_feature_rows("g", &keys(&["A", "B", "C", "D"])).await.unwrap();
    assert_eq!(latest, vec![Some(rows[1].clone()), Some(rows[2].clone()), Some(rows[3].clone()), None]);

    let at = |e: &str, t: i64| (EntityKey(e.into()), Timestamp::from_secs(t));
    let points = [at("A", 150), at("A", 250), at("B", 150), at("C", 50)];
    let found = store.feature_rows_as_of("g", &points, AsOfRules::default()).await.unwrap();
    let provenances: Vec<Option<Option<Provenance>>> = found.into_iter().map(|r| r.map(|r| r.provenance)).collect();
    assert_eq!(provenances, vec![Some(v1.clone()), Some(v2.clone()), Some(None), None]);

    // The same row (and values) again, by another version, then pushed.
    let v3 = provenance("indicators", "2.0.0");
    for p in [v3, None, v1.clone()] {
        store.write_feature_rows(&table("g"), &[by(rows[1].clone(), p.clone())]).await.unwrap();
        let latest = store.latest_feature_rows("g", &keys(&["A"])).await.unwrap();
        assert_eq!(latest[0].as_ref().map(|r| r.provenance.clone()), Some(p.clone()), "rewritten with {p:?}");
    }

    // More rows than one statement takes, provenances interleaved.
    let versions = [v1, None, v2];
    let many: Vec<FeatureRow> =
        (0..2_500).map(|i| by(feature_row(&format!("E{i}"), 1, 1, &x(i as f64)), versions[i % 3].clone())).collect();
    store.write_feature_rows(&table("many"), &many).await.unwrap();
    let names: Vec<EntityKey> = many.iter().map(|r| r.entity.clone()).collect();
    let latest = store.latest_feature_rows("many", &names).await.unwrap();
    assert_eq!(latest, many.iter().cloned().map(Some).collect::<Vec<_>>());
    let points: Vec<(EntityKey, Timestamp)> = names.iter().map(|k| (k.clone(), Timestamp::from_secs(1))).collect();
    let found = store.feature_rows_as_of("many", &points, AsOfRules::default()).await.unwrap();
    assert_eq!(found, latest);
}

/// Entities are judged by their newest row: with stale before t=100 and
/// expired before t=50, newest rows at 120 (fresh), 100 (fresh: not before),
/// 99 and 60 (stale), 10 (expired).
pub async fn freshness_counts_each_entity_by_its_newest_row(store: &dyn OfflineStore) {
    let x = |v: f64| [("x", Value::Float64(v))];
    let rows = [
        feature_row("A", 5, 1, &x(1.0)),
        feature_row("A", 120, 1, &x(1.0)),
        feature_row("B", 100, 1, &x(1.0)),
        feature_row("C", 99, 1, &x(1.0)),
        feature_row("D", 60, 1, &x(1.0)),
        feature_row("E", 10, 1, &x(1.0)),
    ];
    store.write_feature_rows(&table("g"), &rows).await.unwrap();
    store.write_feature_rows(&table("other"), &[feature_row("Z", 1, 1, &x(1.0))]).await.unwrap();
    let counts = store.freshness("g", Some(Timestamp::from_secs(100)), Some(Timestamp::from_secs(50))).await.unwrap();
    assert_eq!((counts.entities, counts.fresh, counts.stale, counts.expired), (5, 2, 2, 1), "{counts:?}");
    assert_eq!(counts.newest_event_timestamp, Some(Timestamp::from_secs(120)));
    assert_eq!(counts.oldest_event_timestamp, Some(Timestamp::from_secs(10)));
    let unbounded = store.freshness("g", None, None).await.unwrap();
    assert_eq!((unbounded.fresh, unbounded.stale, unbounded.expired), (5, 0, 0));
    let empty = store.freshness("nothing", None, None).await.unwrap();
    assert_eq!((empty.entities, empty.newest_event_timestamp), (0, None));
}

/// Values 1, 2, 3, 4, 10 (and a null, and a row without the feature):
/// mean 4; sample variance ((-3)² + (-2)² + (-1)² + 0² + 6²) / 4 = 50 / 4,
/// so std = sqrt(12.5); p50 = the middle value 3; p95 at rank 0.95 × 4 = 3.8,
/// 80% of the way from 4 to 10: 8.8. Text features get counts only.
pub async fn statistics_match_hand_computed_values(store: &dyn OfflineStore) {
    let row = |e: &str, v: Value, label: Option<&str>| {
        let mut values = vec![("x", v)];
        if let Some(l) = label {
            values.push(("label", Value::String(l.into())));
        }
        feature_row(e, 1, 1, &values)
    };
    let rows = [
        row("A", Value::Float64(1.0), Some("a")),
        row("B", Value::Float64(2.0), Some("b")),
        row("C", Value::Float64(3.0), None),
        row("D", Value::Float64(4.0), None),
        row("E", Value::Float64(10.0), None),
        row("F", Value::Null, Some("f")),
        feature_row("G", 1, 1, &[("y", Value::Float64(7.0))]),
    ];
    store.write_feature_rows(&table("g"), &rows).await.unwrap();
    let features = [("x".to_string(), true), ("label".to_string(), false), ("absent".to_string(), true)];
    let stats = store.feature_statistics("g", &features).await.unwrap();
    let x = &stats[0];
    assert_eq!((x.count, x.nulls), (5, 2), "{x:?}");
    assert_eq!((x.mean, x.min, x.max, x.p50), (Some(4.0), Some(1.0), Some(10.0), Some(3.0)), "{x:?}");
    assert!((x.std.unwrap() - 12.5f64.sqrt()).abs() < 1e-12, "{x:?}");
    assert!((x.p95.unwrap() - 8.8).abs() < 1e-12, "{x:?}");
    let label = &stats[1];
    assert_eq!((label.count, label.nulls, label.mean, label.p50), (3, 4, None, None), "{label:?}");
    let absent = &stats[2];
    assert_eq!((absent.count, absent.nulls, absent.mean, absent.std, absent.p95), (0, 7, None, None, None));
}

/// A group's first check registers its first run one interval on; a claim
/// succeeds only once the run is due, and only for one of two racing hosts.
pub async fn scheduled_runs_are_claimed_once_when_due(store: &dyn Registry) {
    let t = Timestamp::from_secs;
    assert!(!store.claim_schedule("g", t(100), t(160)).await.unwrap(), "first sight: due at 160");
    assert!(!store.claim_schedule("g", t(159), t(219)).await.unwrap(), "not due before 160");
    assert!(store.claim_schedule("g", t(160), t(220)).await.unwrap(), "due at 160");
    assert!(!store.claim_schedule("g", t(160), t(220)).await.unwrap(), "another host, same run: already taken");
    assert!(!store.claim_schedule("g", t(219), t(279)).await.unwrap(), "next one due at 220");
    assert!(store.claim_schedule("g", t(500), t(560)).await.unwrap(), "a late check still runs once");
    assert!(!store.claim_schedule("other", t(500), t(560)).await.unwrap(), "groups are independent");
}

/// Rows ingested after a watermark are found, per entity from the
/// earliest such event time, whatever their event times are (a backfill of
/// an old date counts); rewriting a row with the same values is no change.
pub async fn source_changes_are_found_by_ingest_time_not_event_time(store: &dyn OfflineStore) {
    let row = |e: &str, ts: i64, v: f64| SourceRow {
        entity: EntityKey(e.into()),
        ts: Timestamp::from_secs(ts),
        values: [("x".to_string(), Value::Float64(v))].into(),
    };
    assert_eq!(store.source_ingest_watermark("s").await.unwrap(), None);
    store.write_source_rows(&table("s"), &[row("A", 10, 1.0), row("A", 20, 2.0), row("B", 10, 1.0)]).await.unwrap();
    let w = store.source_ingest_watermark("s").await.unwrap().expect("rows were ingested");
    assert!(store.source_changes("s", w).await.unwrap().is_empty(), "nothing after the watermark");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // A new bar for A, a backfilled old date for B, the same values again for A@10.
    store.write_source_rows(&table("s"), &[row("A", 30, 3.0), row("B", 5, 0.5), row("A", 10, 1.0)]).await.unwrap();
    store.write_source_rows(&table("other"), &[row("C", 1, 1.0)]).await.unwrap();
    let changes = store.source_changes("s", w).await.unwrap();
    let expected =
        vec![(EntityKey("A".into()), Timestamp::from_secs(30)), (EntityKey("B".into()), Timestamp::from_secs(5))];
    assert_eq!(changes, expected);
    assert!(store.source_ingest_watermark("s").await.unwrap().unwrap() > w);
}

/// Hand-worked point-in-time lookups, one edge case each. Group rows of
/// entity A (event, created), every created time given by the writer:
/// (100, 100) x=1, (200, 200) x=2, (200, 250) x=2.5 (a late correction of
/// 200), (300, 300) x=3; entity B has none; entity C has a backfill the
/// server stamped at 900, (100, 900) x=7, and a row whose writer said it was
/// created at 950, (200, 950) x=8.
pub async fn as_of_lookups_pick_the_row_known_at_each_point(store: &dyn OfflineStore) {
    let x = |v: f64| vec![("x", Value::Float64(v))];
    let given = |row: FeatureRow| FeatureRow { created_given: true, ..row };
    let rows = [
        given(feature_row("A", 100, 100, &x(1.0))),
        given(feature_row("A", 200, 200, &x(2.0))),
        given(feature_row("A", 200, 250, &x(2.5))),
        given(feature_row("A", 300, 300, &x(3.0))),
        given(feature_row("A", 300, 300, &x(3.0))),
        feature_row("C", 100, 900, &x(7.0)),
        given(feature_row("C", 200, 950, &x(8.0))),
    ];
    store.write_feature_rows(&table("g"), &rows).await.unwrap();
    store.write_feature_rows(&table("other"), &[feature_row("A", 150, 150, &x(99.0))]).await.unwrap();
    let at = |e: &str, t: i64| (EntityKey(e.into()), Timestamp::from_secs(t));
    let lookup = |points: Vec<(EntityKey, Timestamp)>, max_age: Option<u64>, created_cutoff: bool| async move {
        let rules = AsOfRules { max_age: max_age.map(Duration::from_secs), created_cutoff };
        let found = store.feature_rows_as_of("g", &points, rules).await.unwrap();
        assert_eq!(found.len(), points.len());
        found
            .into_iter()
            .map(|r| r.map(|r| (r.event_ts.0 / 1_000_000, r.created.0 / 1_000_000, r.values["x"].clone())))
            .collect::<Vec<_>>()
    };
    let some = |e: i64, c: i64, v: f64| Some((e, c, Value::Float64(v)));

    let points = vec![at("A", 99), at("A", 100), at("A", 199), at("A", 200), at("A", 1000), at("B", 300), at("A", 200)];
    assert_eq!(
        lookup(points.clone(), None, false).await,
        vec![
            None,
            some(100, 100, 1.0),
            some(100, 100, 1.0),
            some(200, 250, 2.5),
            some(300, 300, 3.0),
            None,
            some(200, 250, 2.5)
        ],
        "no max age: the latest row at or before each point; the correction wins the tie; duplicates repeat"
    );
    assert_eq!(
        lookup(points, Some(100), false).await,
        vec![None, some(100, 100, 1.0), some(100, 100, 1.0), some(200, 250, 2.5), None, None, some(200, 250, 2.5)],
        "max age 100: 1000 - 100 = 900 > 300, so nothing for A at 1000"
    );
    assert_eq!(
        lookup(vec![at("A", 299), at("A", 300), at("A", 301), at("A", 400), at("A", 401)], Some(100), false).await,
        vec![some(200, 250, 2.5), some(300, 300, 3.0), some(300, 300, 3.0), some(300, 300, 3.0), None],
        "both bounds inclusive: row 300 is known at 300 and still within max age at 400, not at 401"
    );
    assert_eq!(
        lookup(vec![at("A", 200), at("A", 249), at("A", 250), at("A", 300)], None, true).await,
        vec![some(200, 200, 2.0), some(200, 200, 2.0), some(200, 250, 2.5), some(300, 300, 3.0)],
        "created cutoff: the correction created at 250 is unknown before 250"
    );
    assert_eq!(
        lookup(vec![at("C", 99), at("C", 100), at("C", 300), at("C", 950)], None, true).await,
        vec![None, some(100, 900, 7.0), some(100, 900, 7.0), some(200, 950, 8.0)],
        "created cutoff: the stamped backfill is never hidden; the row created at 950 by its writer is, until 950"
    );
    assert_eq!(
        lookup(vec![at("C", 300)], None, false).await,
        vec![some(200, 950, 8.0)],
        "without the cutoff the newest event wins"
    );
    assert_eq!(
        lookup(vec![at("A", 150)], Some(0), true).await,
        vec![None],
        "max age 0 keeps only rows at exactly the point"
    );
    assert_eq!(lookup(vec![at("A", 100)], Some(0), true).await, vec![some(100, 100, 1.0)]);
    assert_eq!(lookup(vec![], None, false).await, vec![]);
}

/// Randomized data against a brute-force reference: event times on a coarse
/// grid (so ties are common), several created times per event time (late
/// corrections), points on, between and just off the grid, max ages that
/// land exactly on rows, entities without rows, and more points than one
/// query takes. Rows are of both kinds: created times given by their writer
/// (filtered by the created cutoff) and stamped by the server, some of them
/// long after their event time like a backfill (never filtered, still
/// breaking ties).
pub async fn as_of_lookups_match_a_brute_force_reference(store: &dyn OfflineStore) {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    let mut rng = SmallRng::seed_from_u64(0x5eed_0005);
    let step = 10_000_000; // 10 s in microseconds
    let mut rows: Vec<FeatureRow> = Vec::new();
    for e in 0..12 {
        for _ in 0..rng.gen_range(0..60) {
            let event = rng.gen_range(0..40) * step;
            let created_given = rng.gen_bool(0.5);
            let backfill = if rng.gen_bool(0.3) { 100 * step } else { 0 };
            let created = event + rng.gen_range(0..4) * step / 2 + backfill;
            rows.push(FeatureRow {
                entity: EntityKey(format!("E{e}")),
                event_ts: Timestamp(event),
                created: Timestamp(created),
                created_given,
                values: [("x".to_string(), Value::Float64(rng.gen_range(-1e3..1e3)))].into(),
                provenance: [None, provenance("t", "1.0.0"), provenance("t", "1.1.0")][rng.gen_range(0..3)].clone(),
            });
        }
    }
    store.write_feature_rows(&table("g"), &rows).await.unwrap();
    // What was stored: the writer's upsert keeps the last of duplicates.
    let mut stored: BTreeMap<(String, i64, i64), FeatureRow> = BTreeMap::new();
    for r in &rows {
        stored.insert((r.entity.0.clone(), r.event_ts.0, r.created.0), r.clone());
    }
    let points: Vec<(EntityKey, Timestamp)> = (0..2_500)
        .map(|_| {
            let e = format!("E{}", rng.gen_range(0..14)); // E12, E13: no rows
            let t = rng.gen_range(-1..45) * step + [0, 0, 1, -1, step / 2][rng.gen_range(0..5)];
            (EntityKey(e), Timestamp(t))
        })
        .collect();
    for max_age in [None, Some(0), Some(10), Some(30), Some(100)] {
        for created_cutoff in [false, true] {
            let rules = AsOfRules { max_age: max_age.map(Duration::from_secs), created_cutoff };
            let found = store.feature_rows_as_of("g", &points, rules).await.unwrap();
            // The same points answered as columns: `x`, a feature no row
            // has, and the provenance.
            let (keys, times): (Vec<EntityKey>, Vec<Timestamp>) = points.iter().cloned().unzip();
            let asked = [("x".to_string(), ValueType::Float64), ("absent".to_string(), ValueType::Int64)];
            let asked = AsOfPoints { keys: &keys, times: &times, rules, features: &asked, provenance: true };
            let columns = store.feature_columns_as_of("g", asked).await.unwrap();
            assert_eq!(columns.len(), points.len());
            let (xs, absent) = (columns.feature(0).as_primitive::<Float64Type>(), columns.feature(1));
            let provenance = columns.provenance().expect("provenance was asked for");
            let (mut hits, mut stamped_after_point) = (0, 0);
            for (i, ((entity, at), got)) in points.iter().zip(&found).enumerate() {
                let (earliest, created_max) = rules.bounds(*at);
                let expected = stored
                    .values()
                    .filter(|r| {
                        r.entity == *entity
                            && r.event_ts <= *at
                            && r.event_ts.0 >= earliest
                            && (r.created.0 <= created_max || !r.created_given)
                    })
                    .max_by_key(|r| (r.event_ts, r.created));
                assert_eq!(got.as_ref(), expected, "{entity} at {} with {rules:?}", at.0);
                let x = expected.map(|r| r.values["x"].clone());
                assert_eq!(xs.is_valid(i).then(|| Value::Float64(xs.value(i))), x, "column x, point {i}");
                assert!(absent.is_null(i), "a feature no row has is null (point {i})");
                let by = expected.and_then(|r| r.provenance.as_ref()).map(ToString::to_string);
                assert_eq!(
                    provenance.is_valid(i).then(|| provenance.value(i).to_string()),
                    by,
                    "provenance, point {i}"
                );
                hits += usize::from(expected.is_some());
                stamped_after_point += usize::from(expected.is_some_and(|r| !r.created_given && r.created > *at));
            }
            assert!(hits > 0 && hits < points.len(), "the data exercise both hits and misses ({hits}) with {rules:?}");
            // Server-stamped rows created after the point are returned under
            // the cutoff too: the case that hid backfills.
            assert!(stamped_after_point > 0, "the data exercise stamped rows created after the point ({rules:?})");
        }
    }
}

/// The audit trail lists entries newest first, as appended, up to a limit.
pub async fn audit_entries_are_listed_newest_first(store: &dyn Registry) {
    assert!(store.list_audit(10).await.unwrap().is_empty());
    let entry = |n: i64, action: &str| crate::model::AuditEntry {
        at: Timestamp::from_secs(n),
        actor: "admin:0123abcd".into(),
        action: action.into(),
        target: format!("t{n}"),
        details: serde_json::json!({"n": n, "nested": {"version": "1.0.0"}}),
    };
    // The same time twice: the order appended still decides.
    for (n, action) in [(1, "entity.put"), (2, "feature_group.put"), (2, "transform.activate")] {
        store.append_audit(&entry(n, action)).await.unwrap();
    }
    let listed = store.list_audit(10).await.unwrap();
    assert_eq!(listed, vec![entry(2, "transform.activate"), entry(2, "feature_group.put"), entry(1, "entity.put")]);
    assert_eq!(store.list_audit(1).await.unwrap(), vec![entry(2, "transform.activate")]);
}

/// A batch transform version over `bytes` (its sha256 is theirs).
pub fn version(name: &str, version: &str, bytes: &[u8], created: i64) -> TransformVersion {
    TransformVersion {
        name: name.into(),
        version: version.into(),
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes)),
        size_bytes: bytes.len() as u64,
        descriptor: Descriptor {
            kind: TransformKind::Batch,
            inputs: vec![FieldSpec {
                name: "close".into(),
                value_type: ValueType::Float64,
                description: String::new(),
            }],
            request_fields: vec![],
            outputs: vec![FieldSpec {
                name: "sma_20".into(),
                value_type: ValueType::Float64,
                description: String::new(),
            }],
            params: vec![],
            min_history: 20,
            related: vec![],
            description: "moving averages".into(),
        },
        created_at: Timestamp::from_secs(created),
    }
}

/// A version is deleted unless it is active or the rollback target; its
/// module goes with it only when no other version shares the bytes.
pub async fn versions_are_deleted_unless_in_use(store: &dyn Registry) {
    use super::VersionDelete;
    let (a, b, c) = (b"module a".as_slice(), b"module b".as_slice(), b"module c".as_slice());
    let sha = |bytes: &[u8]| version("t", "0.0.0", bytes, 0).sha256;
    for (v, bytes) in [("1.0.0", a), ("2.0.0", b), ("3.0.0", b), ("4.0.0", c)] {
        store.insert_transform_version(&version("t", v, bytes, 1), bytes).await.unwrap();
    }
    store.set_active_version("t", Some("1.0.0")).await.unwrap();
    store.set_active_version("t", Some("2.0.0")).await.unwrap();
    assert!(matches!(store.delete_transform_version("t", "2.0.0").await.unwrap(), VersionDelete::InUse(_)));
    assert!(matches!(store.delete_transform_version("t", "1.0.0").await.unwrap(), VersionDelete::InUse(_)));
    assert_eq!(store.delete_transform_version("t", "3.0.0").await.unwrap(), VersionDelete::Deleted);
    assert!(store.get_module(&sha(b)).await.unwrap().is_some(), "2.0.0 still publishes these bytes");
    assert_eq!(store.get_transform_version("t", "3.0.0").await.unwrap(), None);

    store.set_active_version("t", Some("4.0.0")).await.unwrap(); // previous: 2.0.0
    assert_eq!(store.delete_transform_version("t", "1.0.0").await.unwrap(), VersionDelete::Deleted);
    assert_eq!(store.get_module(&sha(a)).await.unwrap(), None, "no version publishes these bytes any more");
    assert_eq!(store.delete_transform_version("t", "1.0.0").await.unwrap(), VersionDelete::NotFound);
    assert_eq!(store.delete_transform_version("nope", "1.0.0").await.unwrap(), VersionDelete::NotFound);
    let t = store.get_transform("t").await.unwrap().unwrap();
    let left: Vec<&str> = t.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(left, ["2.0.0", "4.0.0"]);
    assert_eq!((t.active_version.as_deref(), t.previous_version.as_deref()), (Some("4.0.0"), Some("2.0.0")));
}

/// Appends `rows` rows to `table` with a payload naming them, returning the
/// entry as the log should give it back.
async fn append(log: &dyn WriteLog, table: &str, rows: u64) -> LogEntry {
    let payload = format!("{table}: {rows} rows").into_bytes();
    let (seq, written_at) = log.append(table, &payload, rows).await.unwrap();
    LogEntry { seq, payload, rows, written_at }
}

/// Entries come back oldest first, as appended, each table's alone; a batch
/// holds entries while their rows add up to at most `max_rows`, but always
/// the first.
pub async fn write_log_entries_come_back_oldest_first_in_batches_of_rows(log: &dyn WriteLog) {
    assert!(log.entries("features/a", 10).await.unwrap().is_empty());
    let first = append(log, "features/a", 3).await;
    let other = append(log, "features/b", 1).await;
    let second = append(log, "features/a", 4).await;
    let third = append(log, "features/a", 5).await;

    let all = vec![first.clone(), second.clone(), third.clone()];
    assert_eq!(log.entries("features/a", 100).await.unwrap(), all);
    assert_eq!(log.entries("features/a", 12).await.unwrap(), all, "exactly max_rows fits");
    assert_eq!(log.entries("features/a", 11).await.unwrap(), vec![first.clone(), second.clone()]);
    assert_eq!(log.entries("features/a", 7).await.unwrap(), vec![first.clone(), second]);
    assert_eq!(log.entries("features/a", 6).await.unwrap(), vec![first.clone()]);
    assert_eq!(log.entries("features/a", 2).await.unwrap(), vec![first.clone()], "the first is too big but comes");
    assert_eq!(log.entries("features/a", 0).await.unwrap(), vec![first]);
    assert_eq!(log.entries("features/b", 0).await.unwrap(), vec![other]);
    assert!(log.entries("features/c", 10).await.unwrap().is_empty());
}

/// Removing takes exactly the named entries of the table; clearing takes
/// all of them; other tables keep theirs.
pub async fn write_log_removes_exactly_the_given_entries_and_clears_a_table(log: &dyn WriteLog) {
    let mut a = Vec::new();
    for rows in 1..=5 {
        a.push(append(log, "features/a", rows).await);
    }
    let b = append(log, "features/b", 9).await;

    // b's seq names no entry of a, and an unknown seq is ignored.
    log.remove("features/a", &[a[1].seq, a[3].seq, b.seq, b.seq + 1_000]).await.unwrap();
    assert_eq!(log.entries("features/a", 100).await.unwrap(), vec![a[0].clone(), a[2].clone(), a[4].clone()]);
    assert_eq!(log.entries("features/b", 100).await.unwrap(), vec![b.clone()]);
    log.remove("features/a", &[]).await.unwrap();
    assert_eq!(log.entries("features/a", 100).await.unwrap().len(), 3);

    log.clear("features/a").await.unwrap();
    assert!(log.entries("features/a", 100).await.unwrap().is_empty());
    assert_eq!(log.entries("features/b", 100).await.unwrap(), vec![b]);
    log.clear("features/missing").await.unwrap();
}

/// Pending lists each table with entries, by name: its entries, rows,
/// payload bytes and when its oldest entry was appended.
pub async fn write_log_pending_totals_each_table_with_waiting_entries(log: &dyn WriteLog) {
    assert!(log.pending().await.unwrap().is_empty());
    let b1 = append(log, "sources/prices", 10).await;
    let a1 = append(log, "features/technical", 2).await;
    let b2 = append(log, "sources/prices", 5).await;
    let bytes = |entries: &[&LogEntry]| entries.iter().map(|e| e.payload.len() as u64).sum::<u64>();
    let expected = vec![
        PendingTable {
            table: "features/technical".into(),
            entries: 1,
            rows: 2,
            bytes: bytes(&[&a1]),
            oldest: a1.written_at,
        },
        PendingTable {
            table: "sources/prices".into(),
            entries: 2,
            rows: 15,
            bytes: bytes(&[&b1, &b2]),
            oldest: b1.written_at,
        },
    ];
    assert_eq!(log.pending().await.unwrap(), expected);

    log.remove("sources/prices", &[b1.seq]).await.unwrap();
    let pending = log.pending().await.unwrap();
    assert_eq!((pending[1].entries, pending[1].rows, pending[1].oldest), (1, 5, b2.written_at));
    log.clear("features/technical").await.unwrap();
    log.clear("sources/prices").await.unwrap();
    assert!(log.pending().await.unwrap().is_empty());
}

/// `seqs` lists a table's waiting entries and nothing else; `entries_in`
/// returns those of the named entries that still wait, oldest first.
pub async fn write_log_lists_seqs_and_reads_the_named_entries(log: &dyn WriteLog) {
    assert!(log.seqs("features/a").await.unwrap().is_empty());
    let mut a = Vec::new();
    for rows in 1..=4 {
        a.push(append(log, "features/a", rows).await);
    }
    let b = append(log, "features/b", 9).await;
    let seqs: Vec<i64> = a.iter().map(|e| e.seq).collect();
    assert_eq!(log.seqs("features/a").await.unwrap(), seqs);
    assert_eq!(log.seqs("features/b").await.unwrap(), vec![b.seq]);

    let named = [a[3].seq, a[1].seq, b.seq, b.seq + 1_000];
    assert_eq!(log.entries_in("features/a", &named).await.unwrap(), vec![a[1].clone(), a[3].clone()]);
    assert!(log.entries_in("features/a", &[]).await.unwrap().is_empty());
    log.remove("features/a", &[a[1].seq]).await.unwrap();
    assert_eq!(log.entries_in("features/a", &named).await.unwrap(), vec![a[3].clone()], "a removed entry is gone");
    assert_eq!(log.seqs("features/a").await.unwrap(), vec![a[0].seq, a[2].seq, a[3].seq]);
}

/// Appends and `next_seq` draw from one sequence: every number is larger
/// than every one before it, whichever call and table took it.
pub async fn write_log_appends_and_next_seq_share_one_increasing_sequence(log: &dyn WriteLog) {
    let mut seqs = Vec::new();
    for i in 0..12 {
        let seq = match i % 3 {
            0 => log.next_seq().await.unwrap(),
            1 => append(log, "features/a", 1).await.seq,
            _ => append(log, "features/b", 1).await.seq,
        };
        seqs.push(seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "strictly increasing: {seqs:?}");
    // Removing entries does not hand their numbers out again.
    let newest = log.entries("features/b", 100).await.unwrap();
    log.remove("features/b", &newest.iter().map(|e| e.seq).collect::<Vec<_>>()).await.unwrap();
    assert!(log.next_seq().await.unwrap() > *seqs.last().unwrap());
    assert!(append(log, "features/b", 1).await.seq > *seqs.last().unwrap());
}

/// The newest stamp of a table is its last append's; stamps of one table
/// never go backwards.
pub async fn write_log_newest_written_is_the_last_append_of_the_table(log: &dyn WriteLog) {
    assert_eq!(log.newest_written("features/a").await.unwrap(), None);
    let mut appended = Vec::new();
    for rows in 1..=4 {
        appended.push(append(log, "features/a", rows).await);
    }
    let other = append(log, "features/b", 1).await;
    assert!(appended.windows(2).all(|w| w[0].written_at <= w[1].written_at), "{appended:?}");
    assert_eq!(log.newest_written("features/a").await.unwrap(), Some(appended[3].written_at));
    assert_eq!(log.newest_written("features/b").await.unwrap(), Some(other.written_at));

    log.remove("features/a", &[appended[3].seq]).await.unwrap();
    assert_eq!(log.newest_written("features/a").await.unwrap(), Some(appended[2].written_at));
    log.clear("features/a").await.unwrap();
    assert_eq!(log.newest_written("features/a").await.unwrap(), None);
}

/// A write-log lease is held by one owner at a time: its holder renews it,
/// another owner is refused until it expires or is released, and only the
/// holder can release it.
pub async fn write_log_leases_are_exclusive_until_released_or_expired(log: &dyn WriteLog) {
    assert!(log.lease("flush/a", "h1", LONG).await.unwrap());
    assert!(!log.lease("flush/a", "h2", LONG).await.unwrap(), "h1 holds it");
    assert!(log.lease("flush/a", "h1", LONG).await.unwrap(), "the holder renews");
    assert!(log.lease("flush/b", "h2", LONG).await.unwrap(), "another name is another lease");

    log.release("flush/a", "h2").await.unwrap();
    assert!(!log.lease("flush/a", "h2", LONG).await.unwrap(), "only the holder can release");
    log.release("flush/a", "h1").await.unwrap();
    assert!(log.lease("flush/a", "h2", LONG).await.unwrap(), "released");
    assert!(!log.lease("flush/a", "h1", LONG).await.unwrap(), "h2 holds it now");

    assert!(log.lease("flush/c", "slow", Duration::from_millis(1)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(log.lease("flush/c", "fast", LONG).await.unwrap(), "the expired lease is taken over");
    assert!(!log.lease("flush/c", "slow", LONG).await.unwrap(), "slow lost it");
    assert!(!log.lease("flush/b", "h1", LONG).await.unwrap(), "h2's lease of b is untouched");
}

fn source_row(entity: &str, ts: i64, close: f64) -> SourceRow {
    SourceRow {
        entity: EntityKey(entity.into()),
        ts: Timestamp::from_secs(ts),
        values: [("close".to_string(), Value::Float64(close))].into_iter().collect(),
    }
}

fn keys(names: &[&str]) -> Vec<EntityKey> {
    names.iter().map(|n| EntityKey(n.to_string())).collect()
}

/// Writes are idempotent: the same rows twice leave one copy of each, and
/// a rewrite with new values replaces them.
pub async fn writing_the_same_rows_twice_keeps_one_copy_of_each(store: &dyn OfflineStore) {
    let x = |v: f64| [("x", Value::Float64(v))];
    let sources: Vec<SourceRow> = (0..5_000).map(|i| source_row(&format!("T{}", i % 7), i, i as f64)).collect();
    let features: Vec<FeatureRow> =
        (0..9_000).map(|i| feature_row(&format!("T{}", i % 7), i, 100_000, &x(i as f64))).collect();
    for _ in 0..2 {
        assert_eq!(store.write_source_rows(&table("prices"), &sources).await.unwrap(), 5_000);
        assert_eq!(store.write_feature_rows(&table("technical"), &features).await.unwrap(), 9_000);
    }
    let all = SourceRange::default();
    let mut stored = 0;
    for (entity, _) in store.source_entities("prices").await.unwrap() {
        stored += store.read_source("prices", &entity, all).await.unwrap().len();
    }
    assert_eq!(stored, 5_000);
    let stats = store.feature_statistics("technical", &[("x".into(), true)]).await.unwrap();
    assert_eq!(stats[0].count, 9_000);

    // A rewrite with new values replaces them in place.
    store.write_source_rows(&table("prices"), &[source_row("T0", 0, -1.0)]).await.unwrap();
    let t0 = EntityKey("T0".into());
    let rows = store.read_source("prices", &t0, SourceRange { last: None, until: Some(Timestamp(0)) }).await;
    assert_eq!(rows.unwrap(), vec![source_row("T0", 0, -1.0)]);
    assert_eq!(store.read_source("prices", &EntityKey("T0".into()), all).await.unwrap().len(), 715);
    assert_eq!(store.write_source_rows(&table("prices"), &[]).await.unwrap(), 0);

    store.delete_source_rows("prices").await.unwrap();
    store.delete_feature_rows("technical").await.unwrap();
    assert!(store.source_entities("prices").await.unwrap().is_empty());
    assert_eq!(store.feature_statistics("technical", &[("x".into(), true)]).await.unwrap()[0].count, 0);
}

pub async fn source_reads_honour_last_and_until_and_come_oldest_first(store: &dyn OfflineStore) {
    let mut rows: Vec<SourceRow> = (1..=10).map(|t| source_row("AAPL", t, t as f64)).collect();
    rows.push(source_row("MSFT", 20, 1.0));
    rows.reverse(); // write order does not matter
    store.write_source_rows(&table("prices"), &rows).await.unwrap();
    store.write_source_rows(&table("other"), &[source_row("AAPL", 99, 1.0)]).await.unwrap();
    let aapl = EntityKey("AAPL".into());
    let ts = |range: SourceRange| {
        let aapl = aapl.clone();
        async move {
            let rows = store.read_source("prices", &aapl, range).await.unwrap();
            rows.iter().map(|r| r.ts.0 / Timestamp::MICROS_PER_SECOND).collect::<Vec<_>>()
        }
    };
    assert_eq!(ts(SourceRange::default()).await, (1..=10).collect::<Vec<_>>());
    assert_eq!(ts(SourceRange { last: Some(3), until: None }).await, vec![8, 9, 10]);
    assert_eq!(ts(SourceRange { last: None, until: Some(Timestamp::from_secs(4)) }).await, vec![1, 2, 3, 4]);
    assert_eq!(ts(SourceRange { last: Some(2), until: Some(Timestamp::from_secs(4)) }).await, vec![3, 4]);
    assert_eq!(ts(SourceRange { last: Some(50), until: None }).await.len(), 10);
    assert_eq!(ts(SourceRange { last: Some(0), until: None }).await, Vec::<i64>::new());
    let read = store.read_source("prices", &aapl, SourceRange { last: Some(1), until: None }).await.unwrap();
    assert_eq!(read, vec![source_row("AAPL", 10, 10.0)]);
    assert_eq!(
        store.source_entities("prices").await.unwrap(),
        vec![(aapl.clone(), Timestamp::from_secs(10)), (EntityKey("MSFT".into()), Timestamp::from_secs(20))]
    );
    assert!(store.source_entities("missing").await.unwrap().is_empty());
}

pub async fn latest_feature_row_is_the_newest_event_and_on_ties_the_newest_created(store: &dyn OfflineStore) {
    let x = |v: f64| [("x", Value::Float64(v))];
    let rows = [
        feature_row("AAPL", 10, 11, &x(1.0)),
        feature_row("AAPL", 20, 21, &x(2.0)),
        feature_row("AAPL", 20, 30, &x(3.0)), // correction of event 20
        feature_row("AAPL", 15, 99, &x(4.0)), // late arrival of an older event
        feature_row("MSFT", 5, 5, &x(5.0)),
    ];
    store.write_feature_rows(&table("valuation"), &rows).await.unwrap();
    store.write_feature_rows(&table("other"), &[feature_row("AAPL", 50, 50, &x(9.0))]).await.unwrap();
    let latest = store.latest_feature_rows("valuation", &keys(&["MSFT", "NONE", "AAPL", "MSFT"])).await.unwrap();
    assert_eq!(latest, vec![Some(rows[4].clone()), None, Some(rows[2].clone()), Some(rows[4].clone())]);

    // More entities than one lookup statement takes.
    let many: Vec<FeatureRow> = (0..1_200).map(|i| feature_row(&format!("E{i}"), i, i, &x(i as f64))).collect();
    store.write_feature_rows(&table("many"), &many).await.unwrap();
    let names: Vec<EntityKey> = many.iter().rev().map(|r| r.entity.clone()).collect();
    let latest = store.latest_feature_rows("many", &names).await.unwrap();
    assert_eq!(latest, many.into_iter().rev().map(Some).collect::<Vec<_>>());
}

/// Every value type reads back as written; a null reads back absent, which
/// every reader treats alike.
pub async fn values_of_every_type_round_trip(store: &dyn OfflineStore) {
    let values = [
        ("f", Value::Float64(190.0)),
        ("i", Value::Int64(-3)),
        ("b", Value::Bool(true)),
        ("s", Value::String("x\"y".into())),
        ("fl", Value::Float64List(vec![1.5, 2.0])),
        ("sl", Value::StringList(vec!["a".into()])),
        ("n", Value::Null),
    ];
    let row = FeatureRow { created: Timestamp(2), ..feature_row("AAPL", 0, 0, &values) };
    let row = FeatureRow { event_ts: Timestamp(1), ..row };
    store.write_feature_rows(&table("g"), std::slice::from_ref(&row)).await.unwrap();
    let read = store.latest_feature_rows("g", &keys(&["AAPL"])).await.unwrap().remove(0).unwrap();
    let without_nulls = |r: &FeatureRow| {
        r.values.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>()
    };
    assert_eq!(without_nulls(&read), without_nulls(&row));
    assert_eq!(FeatureRow { values: BTreeMap::new(), ..read }, FeatureRow { values: BTreeMap::new(), ..row });
}
