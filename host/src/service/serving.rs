//! Online reads: the latest value of each requested feature per entity,
//! with its freshness status, event time, age and where it came from.
//!
//! Values come from the online store. On a miss (or an expired value) the
//! offline store's latest row is used when it is newer (`source: offline`,
//! and it is put back online); if that too is missing or expired, a batch
//! group can be computed on demand from the offline source when the request
//! allows it (`fallback: compute`, the default), within the request's
//! deadline; what is computed is written back. What cannot be
//! answered in time is reported `missing`, never an error.
//!
//! With `include_provenance`, each entity's answer also names, per
//! requested group, the transform version that computed the row served
//! (from wherever it was served), or for an on-demand group the version
//! that computed it for this read.

use super::{ServiceError, ServiceResult, Wafer};
use crate::model::registry::FreshnessStatus;
use crate::model::registry::SourceField;
use crate::model::{
    Column, EntityKey, FeatureGroup, FeatureRef, FeatureRow, OnDemandInput, Producer, Provenance, Timestamp, Value,
    ValueType,
};
use crate::store::StoreError;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// `POST /v1/features/online`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineRequest {
    pub entities: Vec<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub feature_groups: Vec<String>,
    #[serde(default)]
    pub request_context: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub fallback: Fallback,
    /// Deadline for the whole read, including any fallback computation.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Also answer, per entity and requested group, which transform version
    /// computed the row served ([`EntityResult::provenance`]).
    #[serde(default)]
    pub include_provenance: bool,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    #[default]
    Compute,
    None,
}

/// Default deadline of an online read.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Entities of one request; larger sets belong to batch retrieval.
const MAX_ENTITIES: usize = 10_000;

#[derive(Debug, Serialize)]
pub struct OnlineResponse {
    pub results: Vec<EntityResult>,
}

#[derive(Debug, Serialize)]
pub struct EntityResult {
    pub entity: serde_json::Map<String, serde_json::Value>,
    #[serde(serialize_with = "ordered_map")]
    pub features: Vec<(String, ServedValue)>,
    /// Only with `include_provenance`: per requested group (in request
    /// order), the transform version that computed the row served, e.g.
    /// `{"technical": {"transform": "indicators", "version": "1.0.0",
    /// "sha256": "..."}}`. `null` for a group with no row served, a row
    /// pushed by a client, or a row stored before provenance was recorded.
    /// An on-demand group names the version that computed it for this read.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ordered_map_or_null")]
    pub provenance: Option<Vec<(String, Option<Provenance>)>>,
}

#[derive(Debug, Serialize, Clone, PartialEq)]
pub struct ServedValue {
    pub value: Value,
    pub status: FreshnessStatus,
    pub event_timestamp: Option<Timestamp>,
    pub age_seconds: Option<f64>,
    pub source: Option<ValueSource>,
}

#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ValueSource {
    Online,
    Computed,
    Offline,
}

/// Serializes name-value pairs as a JSON object in their order.
pub(crate) fn ordered_pairs<S: Serializer, V: Serialize>(items: &[(String, V)], s: S) -> Result<S::Ok, S::Error> {
    ordered_map(items, s)
}

fn ordered_map<S: Serializer, V: Serialize>(items: &[(String, V)], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(items.len()))?;
    for (k, v) in items {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

fn ordered_map_or_null<S: Serializer, V: Serialize>(items: &Option<Vec<(String, V)>>, s: S) -> Result<S::Ok, S::Error> {
    match items {
        Some(items) => ordered_map(items, s),
        None => s.serialize_none(),
    }
}

/// One input of an on-demand group.
pub(crate) struct OnDemandSource {
    pub input: FeatureRef,
    /// The stored group the input is read from.
    pub group: Arc<FeatureGroup>,
    pub value_type: ValueType,
}

/// A stored group's row for one entity as a read found it, and where;
/// `None` when there was none in time.
type Served = Option<(Arc<FeatureRow>, ValueSource)>;

/// The requested features of one group, in request order.
struct GroupRead {
    group: Arc<FeatureGroup>,
    /// (output position, feature name)
    features: Vec<(usize, String)>,
}

impl Wafer {
    pub async fn read_online(&self, req: OnlineRequest) -> ServiceResult<OnlineResponse> {
        if req.entities.len() > MAX_ENTITIES {
            return Err(ServiceError::Invalid(format!(
                "{} entities in one request; the limit is {MAX_ENTITIES}",
                req.entities.len()
            )));
        }
        let (refs, reads) = self.plan_reads(&req)?;
        let timeout = req.timeout_ms.map(Duration::from_millis).unwrap_or(DEFAULT_TIMEOUT);
        let deadline = tokio::time::Instant::now() + timeout;
        let now = self.clock().now();
        let missing = ServedValue {
            value: Value::Null,
            status: FreshnessStatus::Missing,
            event_timestamp: None,
            age_seconds: None,
            source: None,
        };
        // The entities are moved into the answer at the end, not copied.
        let names: Vec<String> = refs.iter().map(FeatureRef::to_string).collect();
        let mut results: Vec<EntityResult> = req
            .entities
            .iter()
            .map(|_| EntityResult {
                entity: serde_json::Map::new(),
                features: names.iter().map(|name| (name.clone(), missing.clone())).collect(),
                provenance: req
                    .include_provenance
                    .then(|| reads.iter().map(|read| (read.group.name.clone(), None)).collect()),
            })
            .collect();

        // Stored groups first: the requested ones and those on-demand groups
        // read their inputs from. Then on-demand groups, over those rows.
        let mut stored: HashMap<String, Vec<Served>> = HashMap::new();
        let mut wanted: Vec<Arc<FeatureGroup>> = Vec::new();
        for read in &reads {
            match &read.group.producer {
                Producer::OnDemand { inputs, .. } => {
                    wanted.extend(self.on_demand_sources(inputs)?.into_iter().map(|s| s.group));
                }
                _ => wanted.push(read.group.clone()),
            }
        }
        // The groups are read (and computed on a miss) side by side, in this
        // task: spawning would cost more than an online hit takes.
        let mut pending = Vec::new();
        for group in wanted {
            if pending.iter().any(|(g, _): &(Arc<FeatureGroup>, _)| g.name == group.name) {
                continue;
            }
            let keys = self.entity_keys(&req.entities, &group)?;
            pending.push((group, keys));
        }
        let reads_done = futures_util::future::join_all(
            pending.iter().map(|(group, keys)| self.read_stored_group(group, keys, req.fallback, deadline, now)),
        )
        .await;
        for ((group, _), rows) in pending.iter().zip(reads_done) {
            stored.insert(group.name.clone(), rows?);
        }
        for (g, read) in reads.iter().enumerate() {
            let group = &read.group;
            if let Producer::OnDemand { .. } = &group.producer {
                let (computed, provenance) = self.compute_on_demand(group, &req, &stored, deadline, now).await?;
                for (i, values) in computed.into_iter().enumerate() {
                    if let Some(p) = results[i].provenance.as_mut()
                        && values.is_some()
                    {
                        p[g].1 = provenance.clone();
                    }
                    for (pos, feature) in &read.features {
                        let value = values.as_ref().and_then(|v| v.get(feature)).cloned().unwrap_or(Value::Null);
                        if !value.is_null() {
                            results[i].features[*pos].1 = ServedValue {
                                value,
                                status: FreshnessStatus::Fresh,
                                event_timestamp: Some(now),
                                age_seconds: Some(0.0),
                                source: Some(ValueSource::Computed),
                            };
                        }
                    }
                }
                continue;
            }
            for (i, found) in stored[&group.name].iter().enumerate() {
                let Some((row, source)) = found else { continue };
                if let Some(p) = results[i].provenance.as_mut() {
                    p[g].1 = row.provenance.clone();
                }
                let status = group.freshness.status(row.event_ts, now);
                for (pos, feature) in &read.features {
                    let value = row.values.get(feature).cloned().unwrap_or(Value::Null);
                    results[i].features[*pos].1 = if value.is_null() {
                        ServedValue {
                            event_timestamp: Some(row.event_ts),
                            age_seconds: Some(age(row, now)),
                            source: Some(*source),
                            ..missing.clone()
                        }
                    } else {
                        ServedValue {
                            value,
                            status,
                            event_timestamp: Some(row.event_ts),
                            age_seconds: Some(age(row, now)),
                            source: Some(*source),
                        }
                    };
                }
            }
        }
        for (result, entity) in results.iter_mut().zip(req.entities) {
            result.entity = entity;
        }
        Ok(OnlineResponse { results })
    }

    /// The request's entities as keys of `group`'s entity.
    fn entity_keys(
        &self,
        entities: &[serde_json::Map<String, serde_json::Value>],
        group: &FeatureGroup,
    ) -> ServiceResult<Vec<EntityKey>> {
        let join_keys = &self.entity(&group.entity)?.join_keys;
        entities
            .iter()
            .enumerate()
            .map(|(i, e)| {
                EntityKey::from_json(e, join_keys)
                    .map_err(|err| ServiceError::Invalid(format!("entities[{i}] for group '{}': {err}", group.name)))
            })
            .collect()
    }

    /// The newest row of a stored (batch or push) group per entity and
    /// where it came from: online, else offline, else computed when the
    /// request allows it, all within `deadline`. `None` = nothing in time.
    async fn read_stored_group(
        &self,
        group: &Arc<FeatureGroup>,
        keys: &[EntityKey],
        fallback: Fallback,
        deadline: tokio::time::Instant,
        now: Timestamp,
    ) -> ServiceResult<Vec<Served>> {
        // An unavailable online store is a miss for every entity: the
        // offline store answers below (`source: offline`), so reads keep
        // working through an online-store outage. The online read gets half
        // of what is left of the deadline, so a hanging store still leaves
        // time for the offline store.
        let online_deadline =
            tokio::time::Instant::now() + deadline.saturating_duration_since(tokio::time::Instant::now()) / 2;
        let read = self.online().read_shared(&group.name, keys);
        let mut rows = match tokio::time::timeout_at(online_deadline, read).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::warn!(group = %group.name, error = %e, "online store unavailable; reading the offline store");
                vec![None; keys.len()]
            }
            Err(_) => {
                tracing::warn!(group = %group.name, "online store did not answer in time; reading the offline store");
                vec![None; keys.len()]
            }
        };
        let mut sources = vec![ValueSource::Online; keys.len()];
        let expired_or_missing = |row: &Option<Arc<FeatureRow>>| match row {
            None => true,
            Some(r) => group.freshness.status(r.event_ts, now) == FreshnessStatus::Expired,
        };

        // Online misses: the offline store's latest row, if newer, is served
        // (and put back online). This is what refills an in-process online
        // store after a restart.
        let misses: Vec<usize> = (0..keys.len()).filter(|&i| expired_or_missing(&rows[i])).collect();
        if !misses.is_empty() {
            let wanted: Vec<EntityKey> = misses.iter().map(|&i| keys[i].clone()).collect();
            // An unavailable offline store (the database is down) costs only
            // the misses, as a slow one does: what the online store had is
            // still served and the misses are `missing`.
            let latest = match tokio::time::timeout_at(
                deadline,
                self.offline().latest_feature_rows(&group.name, &wanted),
            )
            .await
            {
                Ok(Ok(latest)) => Some(latest),
                Ok(Err(e @ StoreError::Unavailable { .. })) => {
                    tracing::warn!(group = %group.name, error = %e, "offline store unavailable; misses are served as missing");
                    None
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => None,
            };
            if let Some(latest) = latest {
                let mut refill = Vec::new();
                for (&i, row) in misses.iter().zip(latest) {
                    let Some(row) = row else { continue };
                    if rows[i].as_ref().is_none_or(|old| row.event_ts > old.event_ts) {
                        refill.push(row.clone());
                        rows[i] = Some(Arc::new(row));
                        sources[i] = ValueSource::Offline;
                    }
                }
                if !refill.is_empty() {
                    let ttl = group.freshness.online_ttl_seconds().map(Duration::from_secs);
                    self.refill_online(&group.name, &refill, ttl).await;
                }
            }
        }

        // Still missing or expired: compute batch groups now, every entity
        // at once, each until the deadline.
        if fallback == Fallback::Compute && matches!(group.producer, Producer::Batch { .. }) {
            // An entity whose first source is known to hold no rows has
            // nothing to compute from (`compute_latest` would find so after
            // reading every source): not even a task for it.
            let first_source = group.producer.source_names().into_iter().next();
            let nothing = |i: usize| first_source.as_ref().is_some_and(|s| self.history().known_empty(s, &keys[i]));
            let stale: Vec<usize> = (0..keys.len()).filter(|&i| expired_or_missing(&rows[i]) && !nothing(i)).collect();
            let mut computing = tokio::task::JoinSet::new();
            for i in stale {
                let (this, group, key) = (self.clone(), group.clone(), keys[i].clone());
                computing.spawn(async move { (i, this.compute_latest(&group, &key).await) });
            }
            loop {
                match tokio::time::timeout_at(deadline, computing.join_next()).await {
                    Ok(Some(Ok((i, Ok(Some(row)))))) => {
                        rows[i] = Some(Arc::new(row));
                        sources[i] = ValueSource::Computed;
                    }
                    Ok(Some(Ok((i, Err(e))))) => {
                        tracing::warn!(group = %group.name, entity = %keys[i], error = %e, "compute on miss failed")
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    // The deadline: answer with what we have. The rest
                    // finish in the background and write back what they
                    // compute, so the next read finds it.
                    Err(_) => {
                        computing.detach_all();
                        break;
                    }
                }
            }
        }
        Ok(rows.into_iter().zip(sources).map(|(row, source)| row.map(|r| (r, source))).collect())
    }

    /// Runs an on-demand group's transform once for all the request's
    /// entities, over its input features (read from `stored`) and the
    /// request's fields. Per entity, the produced values by feature; `None`
    /// where nothing could be computed in time. A failing transform leaves
    /// its features `missing` (and counts in its error statistics) rather
    /// than failing the other features of the read. With the values, the
    /// provenance of the version that ran.
    async fn compute_on_demand(
        &self,
        group: &FeatureGroup,
        req: &OnlineRequest,
        stored: &HashMap<String, Vec<Served>>,
        deadline: tokio::time::Instant,
        now: Timestamp,
    ) -> ServiceResult<(Vec<Option<BTreeMap<String, Value>>>, Option<Provenance>)> {
        let Producer::OnDemand { transform, version, inputs, request_fields, .. } = &group.producer else {
            return Ok((vec![None; req.entities.len()], None));
        };
        let n = req.entities.len();
        let version = self.resolve_version(transform, version.as_deref()).await?;
        let mut features = Vec::with_capacity(inputs.len());
        for source in self.on_demand_sources(inputs)? {
            let rows = &stored[&source.input.group];
            // Expired inputs count as absent, as they would be served.
            let values: Vec<Value> = rows
                .iter()
                .map(|found| match found {
                    Some((row, _)) if source.group.freshness.status(row.event_ts, now) != FreshnessStatus::Expired => {
                        row.values.get(&source.input.feature).cloned().unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                })
                .collect();
            features.push(Column::from_values(&source.input.to_string(), source.value_type, values.iter()));
        }
        let mut request = Vec::with_capacity(request_fields.len());
        for field in request_fields {
            let values = request_values(&req.request_context, field, n, &group.name)?;
            request.push(Column::from_values(&field.name, field.value_type, values.iter()));
        }
        let input =
            OnDemandInput { features, request, params: super::materialize::params_with_defaults(group, &version) };
        let output = match tokio::time::timeout_at(deadline, self.invoke_on_demand(&version, input)).await {
            Ok(Ok(table)) => table,
            Ok(Err(e)) => {
                tracing::warn!(group = %group.name, transform = %transform, error = %e, "on-demand transform failed");
                return Ok((vec![None; n], None));
            }
            Err(_) => return Ok((vec![None; n], None)),
        };
        let values = (0..n)
            .map(|i| {
                let values = group
                    .features
                    .iter()
                    .filter_map(|f| {
                        output.column(&f.name).filter(|c| i < c.len()).map(|c| (f.name.clone(), c.value(i)))
                    })
                    .collect();
                Some(values)
            })
            .collect();
        Ok((values, Some(Provenance::of(&version))))
    }

    /// Resolves the requested refs (and whole groups) to groups, failing
    /// with every unknown ref and what is available instead.
    fn plan_reads(&self, req: &OnlineRequest) -> ServiceResult<(Vec<FeatureRef>, Vec<GroupRead>)> {
        let mut refs = self.resolve_feature_refs(&req.features)?;
        for name in &req.feature_groups {
            let g = self.feature_group(name)?;
            refs.extend(g.features.iter().map(|f| FeatureRef { group: g.name.clone(), feature: f.name.clone() }));
        }
        if refs.is_empty() {
            return Err(ServiceError::Invalid(
                "name at least one feature in \"features\" or group in \"feature_groups\"".into(),
            ));
        }
        let mut reads: Vec<GroupRead> = Vec::new();
        for (pos, r) in refs.iter().enumerate() {
            match reads.iter_mut().find(|g| g.group.name == r.group) {
                Some(g) => g.features.push((pos, r.feature.clone())),
                None => reads
                    .push(GroupRead { group: self.feature_group(&r.group)?, features: vec![(pos, r.feature.clone())] }),
            }
        }
        Ok((refs, reads))
    }

    /// An on-demand group's inputs (its `inputs` refs), each with the group
    /// it reads and the feature's declared type.
    pub(crate) fn on_demand_sources(&self, inputs: &[String]) -> ServiceResult<Vec<OnDemandSource>> {
        inputs
            .iter()
            .map(|text| {
                let input = FeatureRef::parse(text).map_err(|e| ServiceError::Invalid(e.to_string()))?;
                let group = self.feature_group(&input.group)?;
                let value_type = group.feature(&input.feature).map_or(ValueType::Float64, |f| f.value_type);
                Ok(OnDemandSource { input, group, value_type })
            })
            .collect()
    }

    /// Parses `group:feature` refs, failing with every unknown one and the
    /// features the groups involved (or, for an unknown group, all groups)
    /// offer instead.
    pub(crate) fn resolve_feature_refs(&self, texts: &[String]) -> ServiceResult<Vec<FeatureRef>> {
        let mut refs = Vec::new();
        let mut unknown = Vec::new();
        let mut available = Vec::new();
        for text in texts {
            let r = FeatureRef::parse(text).map_err(|e| ServiceError::Invalid(e.to_string()))?;
            match self.feature_group(&r.group) {
                Ok(g) if g.feature(&r.feature).is_some() => refs.push(r),
                Ok(g) => {
                    unknown.push(r.to_string());
                    available.extend(g.features.iter().map(|f| format!("{}:{}", g.name, f.name)));
                }
                Err(_) => {
                    unknown.push(r.to_string());
                    for name in self.feature_group_names() {
                        if let Ok(g) = self.feature_group(&name) {
                            available.extend(g.features.iter().map(|f| format!("{}:{}", g.name, f.name)));
                        }
                    }
                }
            }
        }
        if !unknown.is_empty() {
            available.sort();
            available.dedup();
            return Err(ServiceError::UnknownFeature { refs: unknown, available });
        }
        Ok(refs)
    }

    /// Computes a batch group's newest row for one entity and writes it back
    /// to the offline and online stores. The transform sees the entity's
    /// whole source history, exactly as in materialization, so a computed
    /// value equals the materialized one (recursive indicators such as EMAs
    /// depend on where their series starts).
    async fn compute_latest(&self, group: &FeatureGroup, entity: &EntityKey) -> ServiceResult<Option<FeatureRow>> {
        let Producer::Batch { transform, version, .. } = &group.producer else {
            return Ok(None);
        };
        let version = self.resolve_version(transform, version.as_deref()).await?;
        let reads = super::materialize::SourceReads::Cached;
        let Some(input) = self.batch_inputs(group, &version, std::slice::from_ref(entity), reads).await?.pop() else {
            return Ok(None);
        };
        if input.sources.first().is_none_or(|s| s.table.rows() == 0) {
            return Ok(None);
        }
        let output = self.invoke_batch(&version, input).await?;
        let now = self.clock().now();
        let def = self.group_def(group)?;
        // Only the newest row is served: the last with any feature set
        // (times are strictly ascending), so only it is converted.
        let features: Vec<_> = group.features.iter().filter_map(|f| output.column(&f.name)).collect();
        let Some(last) = (0..output.rows()).rev().find(|&i| features.iter().any(|c| !c.is_null(i))) else {
            return Ok(None);
        };
        let after = last.checked_sub(1).map(|i| Timestamp(output.timestamps[i]));
        let rows = super::output::feature_batch(group, &def, entity, &output, now, after, &Provenance::of(&version))?;
        let Some(latest) = rows.newest_per_entity()?.pop() else {
            return Ok(None);
        };
        // Written back after the answer, offline first, then online: the
        // read never waits for a durable commit, and a value lost to a
        // crash meanwhile is simply computed again.
        let (this, table, row) = (self.clone(), def, latest.clone());
        let name = group.name.clone();
        let ttl = group.freshness.online_ttl_seconds().map(Duration::from_secs);
        tokio::spawn(async move {
            match this.offline().write_feature_rows(&table, std::slice::from_ref(&row)).await {
                Ok(_) => this.refill_online(&name, std::slice::from_ref(&row), ttl).await,
                Err(e) => tracing::warn!(group = %name, error = %e, "could not write back a value computed on a miss"),
            }
        });
        Ok(Some(latest))
    }
}

impl Wafer {
    /// Puts rows the read found elsewhere back online, in the background so
    /// the answer never waits for it. Best effort: the values are durable
    /// offline, so a failing online store only costs the next read another
    /// offline lookup.
    async fn refill_online(&self, group: &str, rows: &[FeatureRow], ttl: Option<Duration>) {
        let (this, group, rows) = (self.clone(), group.to_string(), rows.to_vec());
        tokio::spawn(async move {
            if let Err(e) = this.online().write(&group, &rows, ttl).await {
                tracing::warn!(group, error = %e, "could not refill the online store");
            }
        });
    }
}

fn age(row: &FeatureRow, now: Timestamp) -> f64 {
    (row.event_ts.seconds_until(now).max(0.0) * 1000.0).round() / 1000.0
}

/// A request field's value per entity, from `request_context`: one value
/// for every entity, or an array with one value per entity (for list-typed
/// fields, an array of arrays).
fn request_values(
    context: &serde_json::Map<String, serde_json::Value>,
    field: &SourceField,
    entities: usize,
    group: &str,
) -> ServiceResult<Vec<Value>> {
    let Some(json) = context.get(&field.name) else {
        return Err(ServiceError::Invalid(format!(
            "on-demand group '{group}' needs request_context.{} ({})",
            field.name, field.value_type
        )));
    };
    let parse = |v: &serde_json::Value| {
        Value::from_json(v, field.value_type)
            .map_err(|e| ServiceError::Invalid(format!("request_context.{}: {e}", field.name)))
    };
    let list_typed = matches!(field.value_type, ValueType::Float64List | ValueType::StringList);
    match json.as_array() {
        Some(per_entity)
            if per_entity.len() == entities && (!list_typed || per_entity.iter().all(|v| v.is_array())) =>
        {
            per_entity.iter().map(parse).collect()
        }
        Some(per_entity) if !list_typed => Err(ServiceError::Invalid(format!(
            "request_context.{} has {} values for {entities} entities; give one value, or one per entity",
            field.name,
            per_entity.len()
        ))),
        _ => Ok(vec![parse(json)?; entities]),
    }
}
