//! The job-task protocol every registry backend must follow, written once
//! and run against each backend by its own tests (`sqlite.rs`,
//! `postgres.rs`): leases are exclusive, expire and can be taken over, a
//! stale holder cannot commit, and the last completion finishes the job.

use super::Registry;
use crate::model::{EntityKey, Job, JobState, JobTask, TaskOutcome, Timestamp};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

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
