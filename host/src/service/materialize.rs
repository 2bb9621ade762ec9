//! Materialization: for each entity, read its source history, call the
//! group's batch transform once with columnar input, and write the produced
//! rows to the offline store and the newest to the online store.
//!
//! A job is planned on the host that receives the request and split into
//! tasks of a few entities (`ClusterSettings::job_chunk_entities`); the job
//! workers of every host sharing the store lease and run them (`worker.rs`).
//! A task computes its entities a few at a time, then writes all their rows
//! in one offline write: large writes are what make materialization fast
//! (one durable commit per task, not per entity). Every row of a job
//! carries the job's start time as its created time, so a task computed
//! twice (its first host died) upserts the same rows, never duplicates.

use super::{ServiceError, ServiceResult, Wafer, output};
use crate::model::{
    BatchInput, EntityKey, FeatureGroup, Job, JobState, JobTask, NamedTable, Producer, Provenance, Table, TaskOutcome,
    Timestamp, TransformVersion,
};
use crate::store::{FeatureBatch, SourceRange, StoreError, TableDef};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// `POST /v1/materialize`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterializeRequest {
    pub feature_group: String,
    /// Entity keys: strings or integers for single-key entities, objects of
    /// join keys otherwise. Omitted = every entity with source rows.
    #[serde(default)]
    pub entities: Option<Vec<serde_json::Value>>,
    /// Only entities with source rows newer than their latest feature row,
    /// and only those newer rows are written.
    #[serde(default)]
    pub incremental: bool,
}

/// What every entity of a task shares: the group, the transform version
/// and the group's table.
type TaskPlan = (Arc<FeatureGroup>, TransformVersion, TableDef);

/// Entities of one task computed at once. Transforms are CPU-bound and run
/// on blocking threads; a few more than the core count keeps the cores busy
/// while the others read their input.
const PARALLEL_ENTITIES: usize = 4;

impl Wafer {
    /// Validates the request, plans the job and stores it with its tasks;
    /// job workers (on this host or any other sharing the store) run it.
    pub async fn start_materialize(&self, req: MaterializeRequest) -> ServiceResult<Job> {
        let group = self.feature_group(&req.feature_group)?;
        let Producer::Batch { transform, version, .. } = &group.producer else {
            return Err(ServiceError::Invalid(format!(
                "feature group '{}' is not produced by a batch transform; only batch groups are materialized",
                group.name
            )));
        };
        let version = self.resolve_version(transform, version.as_deref()).await?;
        self.ensure_loaded(&version).await?;
        let join_keys = self.entity(&group.entity)?.join_keys.clone();
        let requested = match &req.entities {
            Some(list) => {
                Some(list.iter().map(|v| entity_key_from_json(v, &join_keys)).collect::<ServiceResult<Vec<_>>>()?)
            }
            None => None,
        };
        // Read before planning: rows ingested later are left to the next run.
        let watermark = self.ingest_watermark(&group, &version).await?;
        let (entities, after) = match (req.incremental, self.last_watermark(&group.name).await?) {
            (true, Some(since)) => self.changed_since(&group, &version, since, requested).await?,
            (true, None) => self.newer_than_materialized(&group, requested).await?,
            (false, _) => match requested {
                Some(keys) => (keys, HashMap::new()),
                None => (self.all_entities(&group).await?, HashMap::new()),
            },
        };
        let now = self.clock().now();
        let id = format!("job-{}-{:08x}", now.to_datetime().format("%Y%m%dT%H%M%S"), rand::random::<u32>());
        let mut job = Job {
            id: id.clone(),
            feature_group: group.name.clone(),
            state: JobState::Running,
            incremental: req.incremental,
            entities_done: 0,
            entities_total: entities.len() as u64,
            rows_written: 0,
            errors: Vec::new(),
            created_at: now,
            started_at: Some(now),
            finished_at: None,
            transform: Some(format!("{}@{}", version.name, version.version)),
            sources_ingested_until: watermark,
            hosts: BTreeMap::new(),
        };
        if entities.is_empty() {
            job.finish(now);
        }
        let chunk = self.cluster().job_chunk_entities.max(1);
        let tasks: Vec<JobTask> = entities
            .chunks(chunk)
            .enumerate()
            .map(|(i, keys)| JobTask {
                job_id: id.clone(),
                task_no: i as u32,
                after: keys.iter().map(|k| after.get(k).copied()).collect(),
                entities: keys.to_vec(),
            })
            .collect();
        self.jobs().create(&job, &tasks).await?;
        self.wake_worker();
        Ok(job)
    }

    /// Every entity with rows in the group's first source, in key order.
    async fn all_entities(&self, group: &FeatureGroup) -> ServiceResult<Vec<EntityKey>> {
        let first = group.producer.source_names().remove(0);
        let mut keys: Vec<EntityKey> =
            self.offline().source_entities(&first).await?.into_iter().map(|(k, _)| k).collect();
        keys.sort();
        Ok(keys)
    }

    /// When the newest row of any series the group reads was ingested.
    async fn ingest_watermark(
        &self,
        group: &FeatureGroup,
        version: &TransformVersion,
    ) -> ServiceResult<Option<Timestamp>> {
        let mut newest = None;
        let related = version.descriptor.related.iter().map(|r| r.source.clone());
        for source in group.producer.source_names().into_iter().chain(related) {
            newest = newest.max(self.offline().source_ingest_watermark(&source).await?);
        }
        Ok(newest)
    }

    /// The watermark of the group's last succeeded job, if it recorded one.
    async fn last_watermark(&self, group: &str) -> ServiceResult<Option<Timestamp>> {
        let jobs = self.jobs().list(Some(group), 100).await?;
        Ok(jobs.iter().find(|j| j.state == JobState::Succeeded).and_then(|j| j.sources_ingested_until))
    }

    /// An incremental run after a recorded one: the entities with rows
    /// ingested since (in any source of the group), each recomputed from
    /// the earliest such row's event time, so a late correction or a
    /// backfilled fundamentals row rewrites every row it affects. New rows
    /// of a related series (a benchmark) affect every entity.
    async fn changed_since(
        &self,
        group: &FeatureGroup,
        version: &TransformVersion,
        since: Timestamp,
        requested: Option<Vec<EntityKey>>,
    ) -> ServiceResult<(Vec<EntityKey>, HashMap<EntityKey, Timestamp>)> {
        let mut from: HashMap<EntityKey, Timestamp> = HashMap::new();
        for source in group.producer.source_names() {
            for (key, ts) in self.offline().source_changes(&source, since).await? {
                from.entry(key).and_modify(|t| *t = (*t).min(ts)).or_insert(ts);
            }
        }
        let params = params_with_defaults(group, version);
        let mut everyone_from: Option<Timestamp> = None;
        for r in &version.descriptor.related {
            let Some((_, key)) = params.iter().find(|(k, _)| *k == r.entity_param) else { continue };
            let changed = self.offline().source_changes(&r.source, since).await?;
            if let Some((_, ts)) = changed.into_iter().find(|(k, _)| k.as_str() == key) {
                everyone_from = Some(everyone_from.map_or(ts, |t| t.min(ts)));
            }
        }
        if let Some(ts) = everyone_from {
            for key in self.all_entities(group).await? {
                from.entry(key).and_modify(|t| *t = (*t).min(ts)).or_insert(ts);
            }
        }
        if let Some(keys) = requested {
            let wanted: std::collections::HashSet<EntityKey> = keys.into_iter().collect();
            from.retain(|k, _| wanted.contains(k));
        }
        let mut entities: Vec<EntityKey> = from.keys().cloned().collect();
        entities.sort();
        let after = from.into_iter().map(|(k, ts)| (k, Timestamp(ts.0 - 1))).collect();
        Ok((entities, after))
    }

    /// An incremental run with no recorded run to start from: entities whose
    /// first source has rows newer than their newest feature row, from
    /// there on, and entities never materialized.
    async fn newer_than_materialized(
        &self,
        group: &FeatureGroup,
        requested: Option<Vec<EntityKey>>,
    ) -> ServiceResult<(Vec<EntityKey>, HashMap<EntityKey, Timestamp>)> {
        let first = group.producer.source_names().remove(0);
        let newest: HashMap<EntityKey, Timestamp> = self.offline().source_entities(&first).await?.into_iter().collect();
        let candidates = match requested {
            Some(keys) => keys,
            None => {
                let mut keys: Vec<EntityKey> = newest.keys().cloned().collect();
                keys.sort();
                keys
            }
        };
        let latest = self.offline().latest_feature_rows(&group.name, &candidates).await?;
        let mut entities = Vec::new();
        let mut after = HashMap::new();
        for (key, row) in candidates.into_iter().zip(latest) {
            match (row, newest.get(&key)) {
                (Some(row), Some(src)) if *src <= row.event_ts => {}
                (Some(row), _) => {
                    after.insert(key.clone(), row.event_ts);
                    entities.push(key);
                }
                (None, _) => entities.push(key),
            }
        }
        Ok((entities, after))
    }

    /// Runs one task: computes its entities and writes their rows, offline
    /// in one write, then each entity's newest row online. Entities that
    /// fail are reported in the outcome; `Err` means the task could not be
    /// committed (a store is down) and should be retried.
    pub(super) async fn materialize_task(&self, job: &Job, task: &JobTask) -> ServiceResult<TaskOutcome> {
        let mut outcome = TaskOutcome {
            host: self.cluster().host_id.clone(),
            entities_done: task.entities.len() as u64,
            ..TaskOutcome::default()
        };
        let plan = match self.task_plan(job).await {
            Ok(plan) => Arc::new(plan),
            Err(e) if is_transient(&e) => return Err(e),
            Err(e) => {
                outcome.errors.extend(task.entities.iter().map(|entity| format!("{entity}: {e}")));
                return Ok(outcome);
            }
        };
        let created = job.started_at.unwrap_or(job.created_at);
        let inputs = match self.batch_inputs(&plan.0, &plan.1, &task.entities, SourceReads::Store).await {
            Ok(inputs) => inputs,
            Err(e) if is_transient(&e) => return Err(e),
            Err(e) => {
                outcome.errors.extend(task.entities.iter().map(|entity| format!("{entity}: {e}")));
                return Ok(outcome);
            }
        };
        let permits = Arc::new(Semaphore::new(PARALLEL_ENTITIES));
        let mut running = tokio::task::JoinSet::new();
        for (i, (entity, input)) in task.entities.iter().zip(inputs).enumerate() {
            let (this, plan, permits, entity) = (self.clone(), plan.clone(), permits.clone(), entity.clone());
            let after = task.after.get(i).copied().flatten();
            running.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore is never closed");
                let rows = this.compute_entity(&plan, input, &entity, created, after).await;
                (i, entity, rows)
            });
        }
        let mut produced: Vec<(usize, FeatureBatch)> = Vec::with_capacity(task.entities.len());
        while let Some(joined) = running.join_next().await {
            let (i, entity, rows) = joined.map_err(|e| ServiceError::Invalid(format!("task panicked: {e}")))?;
            match rows {
                Ok(rows) => produced.push((i, rows)),
                Err(e) if is_transient(&e) => return Err(e),
                Err(e) => outcome.errors.push(format!("{entity}: {e}")),
            }
        }
        // Input order, so a task's writes are the same whichever finished first.
        produced.sort_by_key(|(i, _)| *i);
        let rows = FeatureBatch::concat(&plan.2, produced.iter().map(|(_, b)| b))?;
        outcome.rows_written = self.store_feature_batch(&plan.0, &plan.2, &rows).await?;
        Ok(outcome)
    }

    /// The group, the transform version a job runs, and the group's table.
    async fn task_plan(&self, job: &Job) -> ServiceResult<TaskPlan> {
        let group = self.feature_group_fresh(&job.feature_group).await?;
        let (name, version) = job
            .transform_version()
            .ok_or_else(|| ServiceError::Invalid(format!("job {} does not name its transform version", job.id)))?;
        let version = self.resolve_version(name, Some(version)).await?;
        self.ensure_loaded(&version).await?;
        let def = self.group_def(&group)?;
        Ok((group, version, def))
    }

    /// Runs the transform on one entity's inputs.
    async fn compute_entity(
        &self,
        plan: &TaskPlan,
        input: BatchInput,
        entity: &EntityKey,
        created: Timestamp,
        after: Option<Timestamp>,
    ) -> ServiceResult<FeatureBatch> {
        let (group, version, def) = plan;
        let output = self.invoke_batch(version, input).await?;
        output::feature_batch(group, def, entity, &output, created, after, &Provenance::of(version))
    }

    /// Builds a batch transform's input for each of `entities`: the whole
    /// history of every source of the group, and of the related series the
    /// transform declared, with the group's params. Every path (full and
    /// incremental runs, compute-on-miss) passes the same history, so each
    /// produces the same value for the same row. Each source is read once
    /// for all the entities, and each related series once.
    pub(crate) async fn batch_inputs(
        &self,
        group: &FeatureGroup,
        version: &TransformVersion,
        entities: &[EntityKey],
        reads: SourceReads,
    ) -> ServiceResult<Vec<BatchInput>> {
        let params = params_with_defaults(group, version);
        let mut sources: Vec<(String, Vec<Table>)> = Vec::new();
        for name in group.producer.source_names() {
            let def = self.source_def(&*self.source(&name)?)?;
            let tables = match reads {
                SourceReads::Store => self.offline().read_source_tables(&def, entities, SourceRange::default()).await?,
                SourceReads::Cached => self.source_history(&def, entities).await?,
            };
            sources.push((name, tables));
        }
        let mut related = Vec::new();
        for r in &version.descriptor.related {
            let key = params.iter().find(|(k, _)| *k == r.entity_param).map(|(_, v)| v.clone()).ok_or_else(|| {
                ServiceError::Invalid(format!(
                    "transform {}@{} needs param '{}' naming the entity of its '{}' series",
                    version.name, version.version, r.entity_param, r.name
                ))
            })?;
            let def = self.source_def(&*self.source(&r.source)?)?;
            // One series every entity's input shares: kept in memory either way.
            let mut table = self.source_history(&def, &[EntityKey(key)]).await?;
            related.push(NamedTable { table: table.pop().unwrap_or_default(), name: r.name.clone() });
        }
        let mut inputs = Vec::with_capacity(entities.len());
        for (i, entity) in entities.iter().enumerate() {
            let sources = sources
                .iter_mut()
                .map(|(name, tables)| NamedTable { name: name.clone(), table: std::mem::take(&mut tables[i]) })
                .collect();
            inputs.push(BatchInput {
                entity: entity.to_string(),
                sources,
                related: related.clone(),
                params: params.clone(),
            });
        }
        Ok(inputs)
    }
}

/// Where a batch input's source history comes from. Either way it is the
/// same history (the cache is exact), so every path computes the same value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceReads {
    /// One columnar read of the store for a job task's entities, which
    /// leaves the cache to the entities that reads keep warm.
    Store,
    /// The source-history cache, for an entity computed on a miss.
    Cached,
}

/// The group's params plus the transform's declared defaults for the rest.
pub(crate) fn params_with_defaults(group: &FeatureGroup, version: &TransformVersion) -> Vec<(String, String)> {
    let mut params = group.producer.params_as_text();
    for spec in &version.descriptor.params {
        if let Some(default) = &spec.default
            && !params.iter().any(|(k, _)| *k == spec.name)
        {
            params.push((spec.name.clone(), default.clone()));
        }
    }
    params
}

/// An entity given as a bare key (single join key) or an object of keys.
pub fn entity_key_from_json(v: &serde_json::Value, join_keys: &[String]) -> ServiceResult<EntityKey> {
    match v {
        serde_json::Value::Object(obj) => {
            EntityKey::from_json(obj, join_keys).map_err(|e| ServiceError::Invalid(e.to_string()))
        }
        other if join_keys.len() == 1 => EntityKey::part_from_json(&join_keys[0], other)
            .map(|p| EntityKey::from_parts(&[p]))
            .map_err(|e| ServiceError::Invalid(e.to_string())),
        _ => {
            Err(ServiceError::Invalid(format!("entity {v} must be an object of join keys ({})", join_keys.join(", "))))
        }
    }
}

/// Store outages pass; a task that met one is retried rather than recorded
/// as failed.
fn is_transient(e: &ServiceError) -> bool {
    matches!(e, ServiceError::Store(StoreError::Unavailable { .. }))
}
