//! Point-in-time retrieval of training data (`POST /v1/features/historical`).
//!
//! For each entity row and each requested group, the value that was known at
//! the row's `event_timestamp`: among the group's rows with
//! `row_ts - max_age <= event time <= row_ts` (both bounds inclusive; a group
//! without `freshness.max_age_seconds` has no lower bound), the one with the
//! latest event time, and of those the one created last. With
//! `created_cutoff`, rows created after `row_ts` are not known yet either.
//! Nothing found is null, and the row is still answered.
//!
//! A request is planned once (refs, keys, timestamps and transform versions
//! checked and resolved up front, so bad input fails before any output) and
//! then answered slice by slice in input order, each slice one indexed
//! lookup per point and group (`OfflineStore::feature_rows_as_of`). The API
//! streams slices as they are ready, so only a slice's values are held at a
//! time.
//!
//! On-demand groups are computed per slice over their inputs' point-in-time
//! values and request fields read from the entity rows' columns, with the
//! version resolved at planning: the same code as online serving, and one
//! version for the whole dataset.
//!
//! With `include_provenance`, the answer gets one more column per requested
//! group, `<group>:__provenance` ([`provenance_column`]), after the feature
//! columns: the transform version that computed the row each of the
//! group's values came from (for an on-demand group, the version that
//! computed it), `None` where no row was found or the row was pushed by a
//! client. Feature names start with a letter, so the name never collides
//! with a feature's ref.

use super::serving::OnDemandSource;
use super::{ServiceError, ServiceResult, Wafer};
use crate::model::entity_frame::EntityFrame;
use crate::model::registry::SourceField;
use crate::model::{
    Column, EntityKey, FeatureGroup, FeatureRef, FeatureRow, OnDemandInput, Producer, Provenance, Timestamp,
    TransformVersion, Value, ValueType,
};
use crate::store::AsOfRules;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// The entity rows' timestamp column.
pub const EVENT_TIMESTAMP: &str = "event_timestamp";

/// The answer column holding `group`'s provenance: `<group>:__provenance`.
pub fn provenance_column(group: &str) -> String {
    format!("{group}:__provenance")
}

/// A checked request, ready to be answered slice by slice.
pub struct HistoricalPlan {
    pub frame: EntityFrame,
    /// The feature columns of the answer, in request order.
    pub refs: Vec<FeatureRef>,
    /// With `include_provenance`, the provenance columns that follow the
    /// feature columns, one per requested group in order of first mention;
    /// else empty.
    pub provenance_columns: Vec<String>,
    times: Vec<Timestamp>,
    /// Stored groups to look up: the requested ones and the inputs of
    /// requested on-demand groups, each once.
    lookups: Vec<Lookup>,
    outputs: Vec<GroupOutput>,
}

impl HistoricalPlan {
    /// Entity row `row`'s point in time, as read from its `event_timestamp`.
    pub fn time(&self, row: usize) -> Timestamp {
        self.times[row]
    }

    /// The declared type of each feature column (`refs`), in order.
    pub fn ref_types(&self) -> Vec<ValueType> {
        let mut types = vec![ValueType::Float64; self.refs.len()];
        for output in &self.outputs {
            for (pos, feature) in &output.features {
                if let Some(f) = output.group.feature(feature) {
                    types[*pos] = f.value_type;
                }
            }
        }
        types
    }
}

struct Lookup {
    group: Arc<FeatureGroup>,
    /// Per entity row, its key for the group's entity.
    keys: Vec<EntityKey>,
    rules: AsOfRules,
}

/// Where one requested group's features go in the answer.
struct GroupOutput {
    group: Arc<FeatureGroup>,
    /// (answer column, feature name)
    features: Vec<(usize, String)>,
    on_demand: Option<OnDemandPlan>,
}

struct OnDemandPlan {
    version: TransformVersion,
    sources: Vec<OnDemandSource>,
    /// Request fields with the entity-row column each is read from.
    request: Vec<(SourceField, usize)>,
    params: Vec<(String, String)>,
}

impl HistoricalPlan {
    pub fn rows(&self) -> usize {
        self.frame.len()
    }
}

/// The answer for a range of entity rows.
pub struct HistoricalSlice {
    /// Per entity row, one value per feature column (`plan.refs`).
    pub values: Vec<Vec<Value>>,
    /// Per entity row, one provenance per `plan.provenance_columns`; empty
    /// (no rows at all) when provenance was not asked for.
    pub provenance: Vec<Vec<Option<Provenance>>>,
}

impl Wafer {
    /// Checks a request and resolves everything it names. Every input error
    /// surfaces here, naming the row and column.
    pub async fn plan_historical(
        &self,
        frame: EntityFrame,
        features: &[String],
        created_cutoff: bool,
        include_provenance: bool,
    ) -> ServiceResult<HistoricalPlan> {
        if features.is_empty() {
            return Err(ServiceError::Invalid(
                "name at least one feature in \"features\" (e.g. \"technical:sma_20\")".into(),
            ));
        }
        let refs = self.resolve_feature_refs(features)?;
        if let Some(r) = refs.iter().find(|r| frame.column(&r.to_string()).is_some()) {
            return Err(ServiceError::Invalid(format!(
                "the entity rows already have a column named '{r}'; rename it, as the answer adds a column of that name"
            )));
        }
        // Without rows there are no columns to check (a JSON request
        // without rows has none).
        let times = if frame.is_empty() { Vec::new() } else { parse_times(&frame)? };

        let mut outputs: Vec<GroupOutput> = Vec::new();
        for (pos, r) in refs.iter().enumerate() {
            match outputs.iter_mut().find(|o| o.group.name == r.group) {
                Some(o) => o.features.push((pos, r.feature.clone())),
                None => outputs.push(GroupOutput {
                    group: self.feature_group(&r.group)?,
                    features: vec![(pos, r.feature.clone())],
                    on_demand: None,
                }),
            }
        }
        let mut lookups: Vec<Lookup> = Vec::new();
        let mut add_lookup = |this: &Wafer, group: Arc<FeatureGroup>| -> ServiceResult<()> {
            if lookups.iter().any(|l| l.group.name == group.name) {
                return Ok(());
            }
            let keys = this.frame_keys(&frame, &group)?;
            let max_age = group.freshness.max_age_seconds.map(Duration::from_secs);
            lookups.push(Lookup { group, keys, rules: AsOfRules { max_age, created_cutoff } });
            Ok(())
        };
        for output in &mut outputs {
            let Producer::OnDemand { transform, version, inputs, request_fields, .. } = &output.group.producer else {
                add_lookup(self, output.group.clone())?;
                continue;
            };
            let version = self.resolve_version(transform, version.as_deref()).await?;
            let sources = self.on_demand_sources(inputs)?;
            for source in &sources {
                add_lookup(self, source.group.clone())?;
            }
            let mut request = Vec::with_capacity(request_fields.len());
            for field in request_fields {
                // (Without rows the column is never read.)
                let col = frame.column(&field.name).or(frame.is_empty().then_some(0)).ok_or_else(|| {
                    ServiceError::Invalid(format!(
                        "on-demand group '{}' needs request field '{}' ({}): add it as a column of the entity rows",
                        output.group.name, field.name, field.value_type
                    ))
                })?;
                request.push((field.clone(), col));
            }
            let params = super::materialize::params_with_defaults(&output.group, &version);
            output.on_demand = Some(OnDemandPlan { version, sources, request, params });
        }
        let provenance_columns: Vec<String> = if include_provenance {
            outputs.iter().map(|o| provenance_column(&o.group.name)).collect()
        } else {
            Vec::new()
        };
        if let Some(c) = provenance_columns.iter().find(|c| frame.column(c).is_some()) {
            return Err(ServiceError::Invalid(format!(
                "the entity rows already have a column named '{c}'; rename it, as the answer adds a column of that \
                 name with include_provenance"
            )));
        }
        Ok(HistoricalPlan { frame, refs, provenance_columns, times, lookups, outputs })
    }

    /// The feature values of entity rows `rows` (a range of the plan's
    /// rows): per row, one value per feature column, and the provenance
    /// columns if the plan has any.
    pub async fn historical_slice(&self, plan: &HistoricalPlan, rows: Range<usize>) -> ServiceResult<HistoricalSlice> {
        let found = futures_util::future::join_all(plan.lookups.iter().map(|lookup| {
            let points: Vec<(EntityKey, Timestamp)> =
                rows.clone().map(|i| (lookup.keys[i].clone(), plan.times[i])).collect();
            async move { self.offline().feature_rows_as_of(&lookup.group.name, &points, lookup.rules).await }
        }))
        .await;
        let mut known: HashMap<&str, Vec<Option<FeatureRow>>> = HashMap::with_capacity(plan.lookups.len());
        for (lookup, rows_found) in plan.lookups.iter().zip(found) {
            known.insert(lookup.group.name.as_str(), rows_found?);
        }

        let mut values = vec![vec![Value::Null; plan.refs.len()]; rows.len()];
        let with_provenance = !plan.provenance_columns.is_empty();
        let mut provenance =
            if with_provenance { vec![vec![None; plan.outputs.len()]; rows.len()] } else { Vec::new() };
        for (g, output) in plan.outputs.iter().enumerate() {
            match &output.on_demand {
                None => {
                    let found_rows = &known[output.group.name.as_str()];
                    if with_provenance {
                        for (row, found) in provenance.iter_mut().zip(found_rows) {
                            row[g] = found.as_ref().and_then(|f| f.provenance.clone());
                        }
                    }
                    for (row, found) in values.iter_mut().zip(found_rows) {
                        let Some(found) = found else { continue };
                        for (pos, feature) in &output.features {
                            if let Some(v) = found.values.get(feature) {
                                row[*pos] = v.clone();
                            }
                        }
                    }
                }
                Some(od) => {
                    let computed = self.on_demand_slice(plan, &output.group, od, rows.clone(), &known).await?;
                    if with_provenance {
                        let by = Provenance::of(&od.version);
                        for row in &mut provenance {
                            row[g] = Some(by.clone());
                        }
                    }
                    for (i, row) in values.iter_mut().enumerate() {
                        for (pos, feature) in &output.features {
                            if let Some(column) = computed.column(feature).filter(|c| i < c.len()) {
                                row[*pos] = column.value(i);
                            }
                        }
                    }
                }
            }
        }
        Ok(HistoricalSlice { values, provenance })
    }

    /// Runs an on-demand group's transform once over a slice: its inputs'
    /// point-in-time values and its request fields from the entity rows.
    async fn on_demand_slice(
        &self,
        plan: &HistoricalPlan,
        group: &FeatureGroup,
        od: &OnDemandPlan,
        rows: Range<usize>,
        known: &HashMap<&str, Vec<Option<FeatureRow>>>,
    ) -> ServiceResult<crate::model::Table> {
        let features = od
            .sources
            .iter()
            .map(|s| {
                let values: Vec<Value> = known[s.input.group.as_str()]
                    .iter()
                    .map(|found| {
                        found.as_ref().and_then(|f| f.values.get(&s.input.feature)).cloned().unwrap_or(Value::Null)
                    })
                    .collect();
                Column::from_values(&s.input.to_string(), s.value_type, values.iter())
            })
            .collect();
        let mut request = Vec::with_capacity(od.request.len());
        for (field, col) in &od.request {
            let values = rows
                .clone()
                .map(|i| {
                    plan.frame.cell(i, *col).value(field.value_type).map_err(|e| {
                        ServiceError::Invalid(format!(
                            "{}, column '{}' (request field of '{}'): {e}",
                            plan.frame.row_label(i),
                            field.name,
                            group.name
                        ))
                    })
                })
                .collect::<ServiceResult<Vec<Value>>>()?;
            request.push(Column::from_values(&field.name, field.value_type, values.iter()));
        }
        let input = OnDemandInput { features, request, params: od.params.clone() };
        self.invoke_on_demand(&od.version, input).await
    }

    /// Each entity row's key for `group`'s entity, read from the join-key
    /// columns.
    fn frame_keys(&self, frame: &EntityFrame, group: &FeatureGroup) -> ServiceResult<Vec<EntityKey>> {
        let entity = self.entity(&group.entity)?;
        if frame.is_empty() {
            return Ok(Vec::new());
        }
        let cols = entity
            .join_keys
            .iter()
            .map(|k| {
                frame.column(k).ok_or_else(|| {
                    ServiceError::Invalid(format!(
                        "feature group '{}' is keyed by entity '{}', whose join key '{k}' is not a column of the \
                         entity rows",
                        group.name, entity.name
                    ))
                })
            })
            .collect::<ServiceResult<Vec<usize>>>()?;
        (0..frame.len())
            .map(|i| {
                let parts = cols
                    .iter()
                    .zip(&entity.join_keys)
                    .map(|(&c, k)| frame.cell(i, c).key_part(k))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ServiceError::Invalid(format!("{}: {e}", frame.row_label(i))))?;
                Ok(EntityKey::from_parts(&parts))
            })
            .collect()
    }
}

/// Each entity row's `event_timestamp`.
fn parse_times(frame: &EntityFrame) -> ServiceResult<Vec<Timestamp>> {
    let ts_col = frame.column(EVENT_TIMESTAMP).ok_or_else(|| {
        ServiceError::Invalid(format!(
            "entity rows need an '{EVENT_TIMESTAMP}' column (the time each row's features must be known at); \
             columns given: {}",
            frame.columns.join(", ")
        ))
    })?;
    (0..frame.len())
        .map(|i| {
            let text = frame.cell(i, ts_col).as_str().ok_or_else(|| {
                ServiceError::Invalid(format!("{}: {EVENT_TIMESTAMP} must be a timestamp string", frame.row_label(i)))
            })?;
            Timestamp::parse(text)
                .map_err(|e| ServiceError::Invalid(format!("{}: {EVENT_TIMESTAMP}: {e}", frame.row_label(i))))
        })
        .collect()
}
