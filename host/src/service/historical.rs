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
//! then answered slice by slice in input order, each slice one lookup per
//! group (`OfflineStore::feature_columns_as_of`) answered as Arrow columns:
//! the found rows' values gathered by index, never a row map per point.
//! The API streams slices as they are ready, so only a slice's values are
//! held at a time.
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
    Column, EntityKey, FeatureGroup, FeatureRef, OnDemandInput, Producer, Provenance, Timestamp, TransformVersion,
    Value, ValueType,
};
use crate::store::delta::{feature_array, table_column};
use crate::store::{AsOfColumns, AsOfPoints, AsOfRules};
use arrow_array::{ArrayRef, StringArray};
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
    /// The declared type of each ref.
    types: Vec<ValueType>,
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
    pub fn ref_types(&self) -> &[ValueType] {
        &self.types
    }
}

struct Lookup {
    group: Arc<FeatureGroup>,
    /// Per entity row, its key for the group's entity (shared by the
    /// groups of one entity).
    keys: Arc<Vec<EntityKey>>,
    rules: AsOfRules,
    /// The features read: the requested ones and those on-demand groups
    /// take as inputs, each once.
    features: Vec<(String, ValueType)>,
    /// Whether the answer has this group's provenance column.
    provenance: bool,
}

impl Lookup {
    /// Where `feature` is among the features read.
    fn position(&self, feature: &str) -> Option<usize> {
        self.features.iter().position(|(f, _)| f == feature)
    }
}

/// Where one requested group's features go in the answer.
struct GroupOutput {
    group: Arc<FeatureGroup>,
    /// (answer column, feature name)
    features: Vec<(usize, String)>,
    /// A stored group's lookup (an index into `lookups`).
    lookup: usize,
    on_demand: Option<OnDemandPlan>,
}

struct OnDemandPlan {
    version: TransformVersion,
    sources: Vec<OnDemandSource>,
    /// Per source, its group's lookup.
    source_lookups: Vec<usize>,
    /// Request fields with the entity-row column each is read from.
    request: Vec<(SourceField, usize)>,
    params: Vec<(String, String)>,
}

impl HistoricalPlan {
    pub fn rows(&self) -> usize {
        self.frame.len()
    }
}

/// The answer for a range of entity rows, as columns with one value per
/// row of the range.
pub struct HistoricalSlice {
    /// One column per feature column (`plan.refs`), of the feature's type
    /// as the offline tables store it; null where nothing was known.
    pub columns: Vec<ArrayRef>,
    /// One column per `plan.provenance_columns`: the provenance text
    /// (`transform@version#sha256`), null where there is none.
    pub provenance: Vec<StringArray>,
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
                    lookup: 0,
                    on_demand: None,
                }),
            }
        }
        let mut lookups: Vec<Lookup> = Vec::new();
        let mut keys_of: Vec<(String, Arc<Vec<EntityKey>>)> = Vec::new();
        // Adds `features` of stored `group` to what is read of it.
        let mut add_lookup = |this: &Wafer,
                              group: &Arc<FeatureGroup>,
                              features: &mut dyn Iterator<Item = &str>,
                              provenance: bool|
         -> ServiceResult<usize> {
            let at = match lookups.iter().position(|l| l.group.name == group.name) {
                Some(at) => at,
                None => {
                    let keys = match keys_of.iter().find(|(entity, _)| *entity == group.entity) {
                        Some((_, keys)) => keys.clone(),
                        None => {
                            let keys = Arc::new(this.frame_keys(&frame, group)?);
                            keys_of.push((group.entity.clone(), keys.clone()));
                            keys
                        }
                    };
                    let max_age = group.freshness.max_age_seconds.map(Duration::from_secs);
                    let rules = AsOfRules { max_age, created_cutoff };
                    lookups.push(Lookup { group: group.clone(), keys, rules, features: Vec::new(), provenance });
                    lookups.len() - 1
                }
            };
            let lookup = &mut lookups[at];
            lookup.provenance |= provenance;
            for feature in features {
                if lookup.position(feature).is_none() {
                    let t = group.feature(feature).map_or(ValueType::Float64, |f| f.value_type);
                    lookup.features.push((feature.to_string(), t));
                }
            }
            Ok(at)
        };
        for output in &mut outputs {
            let Producer::OnDemand { transform, version, inputs, request_fields, .. } = &output.group.producer else {
                let mut features = output.features.iter().map(|(_, f)| f.as_str());
                output.lookup = add_lookup(self, &output.group, &mut features, include_provenance)?;
                continue;
            };
            let version = self.resolve_version(transform, version.as_deref()).await?;
            let sources = self.on_demand_sources(inputs)?;
            let mut source_lookups = Vec::with_capacity(sources.len());
            for source in &sources {
                let feature = &mut std::iter::once(source.input.feature.as_str());
                source_lookups.push(add_lookup(self, &source.group, feature, false)?);
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
            output.on_demand = Some(OnDemandPlan { version, sources, source_lookups, request, params });
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
        let mut types = vec![ValueType::Float64; refs.len()];
        for output in &outputs {
            for (pos, feature) in &output.features {
                if let Some(f) = output.group.feature(feature) {
                    types[*pos] = f.value_type;
                }
            }
        }
        Ok(HistoricalPlan { frame, refs, provenance_columns, times, types, lookups, outputs })
    }

    /// The feature values of entity rows `rows` (a range of the plan's
    /// rows): one column per feature column, and the provenance columns if
    /// the plan has any.
    pub async fn historical_slice(&self, plan: &HistoricalPlan, rows: Range<usize>) -> ServiceResult<HistoricalSlice> {
        let found = futures_util::future::join_all(plan.lookups.iter().map(|lookup| {
            let points = AsOfPoints {
                keys: &lookup.keys[rows.clone()],
                times: &plan.times[rows.clone()],
                rules: lookup.rules,
                features: &lookup.features,
                provenance: lookup.provenance,
            };
            self.offline().feature_columns_as_of(&lookup.group.name, points)
        }))
        .await;
        let known = found.into_iter().collect::<Result<Vec<AsOfColumns>, _>>()?;

        let n = rows.len();
        let types = plan.ref_types();
        let mut columns: Vec<Option<ArrayRef>> = vec![None; plan.refs.len()];
        let mut provenance = Vec::with_capacity(plan.provenance_columns.len());
        for output in &plan.outputs {
            match &output.on_demand {
                None => {
                    let (lookup, found) = (&plan.lookups[output.lookup], &known[output.lookup]);
                    for (pos, feature) in &output.features {
                        columns[*pos] = lookup.position(feature).map(|k| found.feature(k).clone());
                    }
                    if !plan.provenance_columns.is_empty() {
                        provenance.push(found.provenance().cloned().unwrap_or_else(|| StringArray::new_null(n)));
                    }
                }
                Some(od) => {
                    let computed = self.on_demand_slice(plan, &output.group, od, rows.clone(), &known).await?;
                    for (pos, feature) in &output.features {
                        let column = computed.column(feature);
                        let values = (0..n).map(|i| column.filter(|c| i < c.len()).map(|c| c.value(i)));
                        let values: Vec<Option<Value>> = values.collect();
                        columns[*pos] = Some(feature_array(types[*pos], values.iter().map(Option::as_ref)));
                    }
                    if !plan.provenance_columns.is_empty() {
                        let by = Provenance::of(&od.version).to_string();
                        provenance.push(StringArray::from_iter_values(std::iter::repeat_n(by.as_str(), n)));
                    }
                }
            }
        }
        let columns = columns
            .into_iter()
            .zip(types)
            .map(|(c, t)| c.unwrap_or_else(|| feature_array(*t, std::iter::repeat_n(None, n))))
            .collect();
        Ok(HistoricalSlice { columns, provenance })
    }

    /// Runs an on-demand group's transform once over a slice: its inputs'
    /// point-in-time values and its request fields from the entity rows.
    async fn on_demand_slice(
        &self,
        plan: &HistoricalPlan,
        group: &FeatureGroup,
        od: &OnDemandPlan,
        rows: Range<usize>,
        known: &[AsOfColumns],
    ) -> ServiceResult<crate::model::Table> {
        let n = rows.len();
        let features = od
            .sources
            .iter()
            .zip(&od.source_lookups)
            .map(|(s, &at)| {
                let (lookup, found) = (&plan.lookups[at], &known[at]);
                let array = lookup.position(&s.input.feature).map(|k| found.feature(k));
                Ok(table_column(&s.input.to_string(), s.value_type, array, 0, n)?)
            })
            .collect::<ServiceResult<Vec<Column>>>()?;
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
