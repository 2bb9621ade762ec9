//! Materialization: for each entity, read its source history, call the
//! group's batch transform once with columnar input, and write the produced
//! rows to the offline store and the newest to the online store.
//!
//! Transforms run on a few entities at once; their rows flow to a single
//! writer that batches them into large transactions (SQLite has one writer
//! anyway, and a durable commit per entity would dominate the run time).
//! Re-running a job is safe: rows upsert on (entity, event time, created).

use super::{ServiceError, ServiceResult, Wafer};
use crate::model::{
    BatchInput, Column, EntityKey, FeatureGroup, FeatureRow, Job, NamedTable, Producer, SourceRow, Table, Timestamp,
    TransformVersion,
};
use crate::store::SourceRange;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

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

/// Entities computed at once. Transforms are CPU-bound and run on blocking
/// threads; a few more than the core count keeps the cores busy while the
/// others read their input.
const PARALLEL_ENTITIES: usize = 4;
/// Rows buffered before the writer commits a batch.
const WRITE_BATCH_ROWS: usize = 20_000;
/// Errors kept in a job's error list; later ones are only counted.
const MAX_JOB_ERRORS: usize = 50;

struct Plan {
    group: Arc<FeatureGroup>,
    version: TransformVersion,
    entities: Vec<EntityKey>,
    /// Incremental runs: each entity's latest materialized event time.
    after: HashMap<EntityKey, Timestamp>,
}

/// One entity's produced rows on their way to the writer.
struct Produced {
    rows: Vec<FeatureRow>,
}

impl Wafer {
    /// Validates the request, queues the job and starts it in the background.
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
        let first_source = group.producer.source_names().remove(0);
        // Each entity's newest source row, read once: it lists the entities
        // when the request names none, and tells incremental runs who is new.
        let newest: HashMap<EntityKey, Timestamp> = if req.entities.is_none() || req.incremental {
            self.offline().source_entities(&first_source).await?.into_iter().collect()
        } else {
            HashMap::new()
        };
        let mut entities = match &req.entities {
            Some(list) => {
                list.iter().map(|v| entity_key_from_json(v, &join_keys)).collect::<ServiceResult<Vec<_>>>()?
            }
            None => {
                let mut keys: Vec<EntityKey> = newest.keys().cloned().collect();
                keys.sort();
                keys
            }
        };
        let mut after = HashMap::new();
        if req.incremental {
            let latest = self.offline().latest_feature_rows(&group.name, &entities).await?;
            let mut keep = Vec::new();
            for (key, row) in entities.into_iter().zip(latest) {
                match (row, newest.get(&key)) {
                    (Some(row), Some(src)) if *src <= row.event_ts => {}
                    (Some(row), _) => {
                        after.insert(key.clone(), row.event_ts);
                        keep.push(key);
                    }
                    (None, _) => keep.push(key),
                }
            }
            entities = keep;
        }
        let job = self.jobs().create(&group.name, req.incremental, self.clock().now()).await?;
        let transform_label = format!("{}@{}", version.name, version.version);
        let total = entities.len() as u64;
        self.jobs().update(&job.id, |j| {
            j.entities_total = total;
            j.transform = Some(transform_label);
        });
        let plan = Plan { group, version, entities, after };
        let this = self.clone();
        let id = job.id.clone();
        tokio::spawn(async move {
            if let Err(e) = this.run_materialize(&id, plan).await {
                this.jobs().update(&id, |j| j.errors.push(format!("job failed: {e}")));
            }
            if let Err(e) = this.jobs().finish(&id, this.clock().now()).await {
                tracing::error!(job = %id, error = %e, "could not record finished job");
            }
        });
        Ok(self.jobs().get(&job.id).await?.unwrap_or(job))
    }

    async fn run_materialize(&self, job_id: &str, plan: Plan) -> ServiceResult<()> {
        let started = self.clock().now();
        self.jobs().update(job_id, |j| {
            j.state = crate::model::JobState::Running;
            j.started_at = Some(started);
        });
        self.jobs().persist(job_id).await?;
        let plan = Arc::new(plan);
        let (tx, rx) = mpsc::channel::<Produced>(PARALLEL_ENTITIES * 2);
        let writer = tokio::spawn({
            let this = self.clone();
            let plan = plan.clone();
            let id = job_id.to_string();
            async move { this.write_produced(&id, &plan.group, rx).await }
        });

        let queue = Arc::new(std::sync::Mutex::new(plan.entities.clone().into_iter()));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..PARALLEL_ENTITIES {
            let (this, plan, queue, tx, id) =
                (self.clone(), plan.clone(), queue.clone(), tx.clone(), job_id.to_string());
            workers.spawn(async move {
                loop {
                    let next = queue.lock().expect("queue lock").next();
                    let Some(entity) = next else { break };
                    match this.compute_entity(&plan, &entity, started).await {
                        Ok(rows) => {
                            if tx.send(Produced { rows }).await.is_err() {
                                break; // the writer failed; it reports why
                            }
                        }
                        Err(e) => this.jobs().update(&id, |j| {
                            j.entities_done += 1;
                            push_error(j, format!("{entity}: {e}"));
                        }),
                    }
                }
            });
        }
        drop(tx);
        while workers.join_next().await.is_some() {}
        writer.await.map_err(|e| ServiceError::Invalid(format!("writer task failed: {e}")))?
    }

    /// Reads one entity's inputs and runs the transform on them.
    async fn compute_entity(
        &self,
        plan: &Plan,
        entity: &EntityKey,
        created: Timestamp,
    ) -> ServiceResult<Vec<FeatureRow>> {
        let input = self.batch_input(&plan.group, &plan.version, entity).await?;
        let output = self.invoke_batch(&plan.version, input).await?;
        let after = plan.after.get(entity).copied();
        Ok(rows_from_output(&plan.group, entity, &output, created, after))
    }

    /// Builds a batch transform's input for one entity: the whole history
    /// of every source of the group, and of the related series the transform
    /// declared, with the group's params. Every path (full and incremental
    /// runs, compute-on-miss) passes the same history, so each produces the
    /// same value for the same row.
    pub(crate) async fn batch_input(
        &self,
        group: &FeatureGroup,
        version: &TransformVersion,
        entity: &EntityKey,
    ) -> ServiceResult<BatchInput> {
        let params = params_with_defaults(group, version);
        let mut sources = Vec::new();
        for name in group.producer.source_names() {
            let range = SourceRange::default();
            let rows = self.offline().read_source(&name, entity, range).await?;
            sources.push(NamedTable { table: self.source_table(&name, &rows)?, name });
        }
        let mut related = Vec::new();
        for r in &version.descriptor.related {
            let key = params.iter().find(|(k, _)| *k == r.entity_param).map(|(_, v)| v.clone()).ok_or_else(|| {
                ServiceError::Invalid(format!(
                    "transform {}@{} needs param '{}' naming the entity of its '{}' series",
                    version.name, version.version, r.entity_param, r.name
                ))
            })?;
            let rows = self.offline().read_source(&r.source, &EntityKey(key), SourceRange::default()).await?;
            related.push(NamedTable { table: self.source_table(&r.source, &rows)?, name: r.name.clone() });
        }
        Ok(BatchInput { entity: entity.to_string(), sources, related, params })
    }

    /// Source rows as a table with one typed column per source field.
    fn source_table(&self, source_name: &str, rows: &[SourceRow]) -> ServiceResult<Table> {
        let source = self.source(source_name)?;
        let timestamps = rows.iter().map(|r| r.ts.micros()).collect();
        let columns = source
            .fields
            .iter()
            .map(|f| {
                let null = crate::model::Value::Null;
                Column::from_values(&f.name, f.value_type, rows.iter().map(|r| r.values.get(&f.name).unwrap_or(&null)))
            })
            .collect();
        Ok(Table { timestamps, columns })
    }

    /// Batches produced rows into large offline writes, then writes each
    /// entity's newest row online. Progress counts an entity once its rows
    /// are durable.
    async fn write_produced(
        &self,
        job_id: &str,
        group: &FeatureGroup,
        mut rx: mpsc::Receiver<Produced>,
    ) -> ServiceResult<()> {
        let ttl = group.freshness.online_ttl_seconds().map(Duration::from_secs);
        let mut last_persist = std::time::Instant::now();
        let mut pending: Vec<Produced> = Vec::new();
        let mut pending_rows = 0usize;
        loop {
            let next = rx.recv().await;
            let done = next.is_none();
            if let Some(p) = next {
                pending_rows += p.rows.len();
                pending.push(p);
                // Keep filling the batch while more results are ready.
                while pending_rows < WRITE_BATCH_ROWS {
                    match rx.try_recv() {
                        Ok(p) => {
                            pending_rows += p.rows.len();
                            pending.push(p);
                        }
                        Err(_) => break,
                    }
                }
            }
            if !pending.is_empty() && (done || pending_rows >= WRITE_BATCH_ROWS || rx.is_empty()) {
                let entities = pending.len() as u64;
                let mut rows = Vec::with_capacity(pending_rows);
                let mut latest = Vec::with_capacity(pending.len());
                for p in pending.drain(..) {
                    latest.extend(p.rows.iter().max_by_key(|r| r.event_ts).cloned());
                    rows.extend(p.rows);
                }
                let written = self.offline().write_feature_rows(&group.name, &rows).await?;
                self.online().write(&group.name, &latest, ttl).await?;
                self.jobs().update(job_id, |j| {
                    j.entities_done += entities;
                    j.rows_written += written;
                });
                pending_rows = 0;
                if last_persist.elapsed() > Duration::from_secs(2) {
                    self.jobs().persist(job_id).await?;
                    last_persist = std::time::Instant::now();
                }
            }
            if done {
                return Ok(());
            }
        }
    }
}

/// Turns transform output into feature rows of the group's features. Rows
/// where every feature is null (warm-up rows) are skipped; so are rows at
/// or before `after` in incremental runs.
pub(crate) fn rows_from_output(
    group: &FeatureGroup,
    entity: &EntityKey,
    output: &Table,
    created: Timestamp,
    after: Option<Timestamp>,
) -> Vec<FeatureRow> {
    let columns: Vec<(&str, Option<&Column>)> =
        group.features.iter().map(|f| (f.name.as_str(), output.column(&f.name))).collect();
    let mut rows = Vec::with_capacity(output.rows());
    for (i, &ts) in output.timestamps.iter().enumerate() {
        let event_ts = Timestamp(ts);
        if after.is_some_and(|a| event_ts <= a) {
            continue;
        }
        let mut values = BTreeMap::new();
        let mut any = false;
        for (name, col) in &columns {
            let v = col.map(|c| c.value(i)).unwrap_or(crate::model::Value::Null);
            any |= !v.is_null();
            values.insert(name.to_string(), v);
        }
        if any {
            rows.push(FeatureRow { entity: entity.clone(), event_ts, created, values });
        }
    }
    rows
}

/// The group's params plus the transform's declared defaults for the rest.
fn params_with_defaults(group: &FeatureGroup, version: &TransformVersion) -> Vec<(String, String)> {
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

fn push_error(job: &mut Job, message: String) {
    if job.errors.len() < MAX_JOB_ERRORS {
        job.errors.push(message);
    } else if job.errors.len() == MAX_JOB_ERRORS {
        job.errors.push("further errors omitted".into());
    }
}
