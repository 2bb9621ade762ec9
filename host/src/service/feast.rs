//! Feast feature-server requests in wafer's terms, so Feast clients (the
//! SDK's `online_store: type: remote`, or plain HTTP callers of
//! `feast serve`) read from and write to wafer unchanged.
//!
//! - A Feast feature view is a wafer feature group (`view:feature` is the
//!   group's `group:feature` ref); a push source is a group too.
//! - A feature service is a list of refs from the serving config, else the
//!   feature group of that name (all its features).
//! - Reads go through [`Wafer::read_online`] without fallback computation
//!   (Feast clients expect a store read); writes through
//!   [`Wafer::write_features`], so they are durable offline before they are
//!   served, and online keeps the newest event time per entity.
//!
//! Wire formats follow feast-dev/feast: the request models of
//! `sdk/python/feast/feature_server.py`, the response dict of
//! `feature_server_utils.py`, what `infra/online_stores/remote.py` sends and
//! parses, and the error classes of `errors.py`.

use super::ingest::FeatureWriteRow;
use super::serving::{EntityResult, Fallback, OnlineRequest, ServedValue};
use super::{ServiceError, Wafer};
use crate::model::registry::FreshnessStatus;
use crate::model::{FeatureGroup, FeatureRef, Producer, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use std::collections::HashMap;

/// The timestamp Feast answers for join keys and missing values (its
/// protobuf's zero timestamp).
const EPOCH: Timestamp = Timestamp(0);
/// The df column holding each row's event time, as the remote online store
/// client (`online_write_batch`) and Feast's push example name it.
pub const EVENT_TIMESTAMP: &str = "event_timestamp";
/// The df column holding each row's created time (optional).
pub const CREATED: &str = "created";

/// `POST /get-online-features`: Feast's `GetOnlineFeaturesRequest`. Other
/// fields (e.g. `include_feature_view_version_metadata`) are accepted and
/// ignored, as Feast's own model ignores unknown ones.
#[derive(Debug, Deserialize)]
pub struct GetOnlineFeaturesRequest {
    /// Column-major rows: each join key (or request field of an on-demand
    /// group) maps to one value per row.
    pub entities: Map<String, Json>,
    #[serde(default)]
    pub features: Vec<String>,
    /// Takes precedence over `features`, as in Feast.
    #[serde(default)]
    pub feature_service: Option<String>,
    /// Name features `view__feature` instead of `feature`.
    #[serde(default)]
    pub full_feature_names: bool,
}

/// Feast's response dict: one result per output column (join keys first,
/// then features in request order), each with one entry per row.
#[derive(Debug, Serialize)]
pub struct GetOnlineFeaturesResponse {
    pub metadata: ResponseMetadata,
    pub results: Vec<FeatureVector>,
}

#[derive(Debug, Serialize)]
pub struct ResponseMetadata {
    pub feature_names: Vec<String>,
}

/// One output column.
#[derive(Debug, Serialize)]
pub struct FeatureVector {
    pub values: Vec<Json>,
    pub statuses: Vec<FieldStatus>,
    pub event_timestamps: Vec<Timestamp>,
}

/// Feast's `FieldStatus` names, the ones the remote client maps back.
#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FieldStatus {
    /// `fresh` or `stale`: within max age.
    Present,
    /// `missing`.
    NotFound,
    /// `expired`; the value is still returned, as Feast's status allows.
    OutsideMaxAge,
}

/// `POST /write-to-online-store`: Feast's `WriteToFeatureStoreRequest`, as
/// the remote online store's `online_write_batch` sends it.
/// `allow_registry_cache` and `transform_on_write` are accepted and ignored.
#[derive(Debug, Deserialize)]
pub struct WriteToOnlineStoreRequest {
    pub feature_view_name: String,
    /// Column-major rows: join keys, features, `event_timestamp` and
    /// optionally `created`.
    pub df: Map<String, Json>,
}

/// `POST /push`: Feast's `PushFeaturesRequest`. `allow_registry_cache` and
/// `transform_on_write` are accepted and ignored.
#[derive(Debug, Deserialize)]
pub struct PushRequest {
    pub push_source_name: String,
    pub df: Map<String, Json>,
    #[serde(default)]
    pub to: PushMode,
}

/// Feast's `PushMode` names. wafer keeps every served value offline too
/// (durable, and in training data), so `online` writes both stores.
#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PushMode {
    #[default]
    Online,
    /// History only (e.g. a backfill): online serving is left as it is.
    Offline,
    OnlineAndOffline,
}

/// What goes wrong, each raised on the Feast client as the `feast.errors`
/// class [`FeastError::class`] names. Messages follow Feast's wording and
/// add what wafer offers instead.
#[derive(Debug, thiserror::Error)]
pub enum FeastError {
    #[error("Feature view {0} does not exist")]
    FeatureViewNotFound(String),
    #[error(
        "Feature service {name} does not exist; name a feature service of the serving config ({}) or a feature group",
        list_or_none(configured)
    )]
    FeatureServiceNotFound { name: String, configured: Vec<String> },
    #[error("Unable to find push source '{0}'; push sources are feature groups that store values (push or batch)")]
    PushSourceNotFound(String),
    #[error("Entity {0} does not exist")]
    EntityNotFound(String),
    #[error("Feature view {view} has no feature {}; it has: {}", missing.join(", "), available.join(", "))]
    FeaturesNotPresent { view: String, missing: Vec<String>, available: Vec<String> },
    #[error(
        "Required request data source features {} not found in the entity rows, but required by feature views {}",
        fields.join(", "),
        views.join(", ")
    )]
    RequestDataNotFound { fields: Vec<String>, views: Vec<String> },
    #[error("The columns must include {}, but {} were missing", expected.join(", "), missing.join(", "))]
    MissingColumns { expected: Vec<String>, missing: Vec<String> },
    #[error(
        "Duplicate features named {} found; set full_feature_names to true or request features with different names",
        .0.join(", ")
    )]
    NameCollision(Vec<String>),
    /// The request is well-formed JSON but not a valid request.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Service(ServiceError),
}

impl FeastError {
    /// The `feast.errors` class the client raises. A class Feast has no
    /// narrower one for is its base, `FeastError`.
    pub fn class(&self) -> &'static str {
        match self {
            FeastError::FeatureViewNotFound(_) => "FeatureViewNotFoundException",
            FeastError::FeatureServiceNotFound { .. } => "FeatureServiceNotFoundException",
            FeastError::PushSourceNotFound(_) => "PushSourceNotFoundException",
            FeastError::EntityNotFound(_) => "EntityNotFoundException",
            FeastError::FeaturesNotPresent { .. } => "SpecifiedFeaturesNotPresentError",
            FeastError::RequestDataNotFound { .. } => "RequestDataNotFoundInEntityRowsException",
            FeastError::MissingColumns { .. } => "FeastEntityDFMissingColumnsError",
            FeastError::NameCollision(_) => "FeatureNameCollisionError",
            FeastError::Invalid(_) | FeastError::Service(_) => "FeastError",
        }
    }
}

impl From<ServiceError> for FeastError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound { kind: "feature group", name } => FeastError::FeatureViewNotFound(name),
            ServiceError::NotFound { kind: "entity", name } => FeastError::EntityNotFound(name),
            other => FeastError::Service(other),
        }
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() { "none configured".to_string() } else { names.join(", ") }
}

/// The join keys and request fields the groups of a read need.
#[derive(Default)]
struct ReadPlan {
    /// Join keys of the stored groups read (requested, or inputs of an
    /// on-demand group): every row needs them.
    required: Vec<String>,
    /// Every join key of the groups involved: these request columns are
    /// echoed as the answer's first columns; other columns are request data.
    join_keys: Vec<String>,
    /// Request fields of the on-demand groups: request columns passed to
    /// their transforms, never echoed.
    request_fields: Vec<String>,
    /// The on-demand groups read, named when a request field is absent.
    on_demand: Vec<String>,
}

fn add_all(into: &mut Vec<String>, names: &[String]) {
    for name in names {
        if !into.contains(name) {
            into.push(name.clone());
        }
    }
}

impl Wafer {
    /// Answers `POST /get-online-features` from the stores, never computing
    /// a stored group (an on-demand group is computed over stored inputs, as
    /// Feast computes an on-demand feature view).
    pub async fn feast_online_features(
        &self,
        req: GetOnlineFeaturesRequest,
    ) -> Result<GetOnlineFeaturesResponse, FeastError> {
        let refs = self.feast_refs(&req)?;
        let feature_names = output_names(&refs, req.full_feature_names)?;
        let plan = self.read_plan(&refs)?;
        let (columns, rows) = entity_columns(&req.entities)?;
        let missing: Vec<String> = plan.required.iter().filter(|k| !req.entities.contains_key(*k)).cloned().collect();
        if !missing.is_empty() {
            return Err(FeastError::MissingColumns { expected: plan.required, missing });
        }
        let absent: Vec<String> =
            plan.request_fields.iter().filter(|f| !req.entities.contains_key(*f)).cloned().collect();
        if !absent.is_empty() {
            return Err(FeastError::RequestDataNotFound { fields: absent, views: plan.on_demand });
        }

        let keys: Vec<NamedColumn> =
            columns.iter().filter(|(name, _)| plan.join_keys.contains(name)).copied().collect();
        let entities = (0..rows)
            .map(|i| keys.iter().map(|(name, values)| ((*name).clone(), values[i].clone())).collect())
            .collect();
        let request_context = columns
            .iter()
            .filter(|(name, _)| plan.request_fields.contains(name))
            .map(|(name, values)| ((*name).clone(), Json::Array(values.to_vec())))
            .collect();
        let read = self
            .read_online(OnlineRequest {
                entities,
                features: refs.iter().map(FeatureRef::to_string).collect(),
                feature_groups: Vec::new(),
                request_context,
                fallback: Fallback::None,
                timeout_ms: None,
                include_provenance: false,
            })
            .await?;

        Ok(answer(&keys, feature_names, &read.results, rows))
    }

    /// The refs a request names: its feature service's, or its `features`;
    /// each checked, so an unknown view or feature gets Feast's error.
    fn feast_refs(&self, req: &GetOnlineFeaturesRequest) -> Result<Vec<FeatureRef>, FeastError> {
        let texts = match &req.feature_service {
            Some(name) => self.feature_service_refs(name)?,
            None if req.features.is_empty() => {
                return Err(FeastError::Invalid(
                    "name the features to read in \"features\" (as \"view:feature\") or a \"feature_service\"".into(),
                ));
            }
            None => req.features.clone(),
        };
        let refs = texts
            .iter()
            .map(|t| FeatureRef::parse(t).map_err(|e| FeastError::Invalid(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        for r in &refs {
            let group = self.feature_group(&r.group).map_err(|_| FeastError::FeatureViewNotFound(r.group.clone()))?;
            if group.feature(&r.feature).is_none() {
                let missing = refs
                    .iter()
                    .filter(|o| o.group == r.group && group.feature(&o.feature).is_none())
                    .map(|o| o.feature.clone())
                    .collect();
                return Err(FeastError::FeaturesNotPresent {
                    view: group.name.clone(),
                    missing,
                    available: group.feature_names(),
                });
            }
        }
        Ok(refs)
    }

    /// A feature service's refs: the serving config's list of that name,
    /// else every feature of the group of that name.
    fn feature_service_refs(&self, name: &str) -> Result<Vec<String>, FeastError> {
        if let Some(refs) = self.feature_services().get(name) {
            return Ok(refs.clone());
        }
        match self.feature_group(name) {
            Ok(group) => Ok(group.features.iter().map(|f| format!("{}:{}", group.name, f.name)).collect()),
            Err(_) => Err(FeastError::FeatureServiceNotFound {
                name: name.to_string(),
                configured: self.feature_services().keys().cloned().collect(),
            }),
        }
    }

    fn read_plan(&self, refs: &[FeatureRef]) -> Result<ReadPlan, FeastError> {
        let mut plan = ReadPlan::default();
        // A group named by several refs adds nothing the second time.
        for r in refs {
            let group = self.feature_group(&r.group)?;
            let own = &self.entity(&group.entity)?.join_keys;
            add_all(&mut plan.join_keys, own);
            let Producer::OnDemand { inputs, request_fields, .. } = &group.producer else {
                add_all(&mut plan.required, own);
                continue;
            };
            if plan.on_demand.contains(&group.name) {
                continue;
            }
            plan.on_demand.push(group.name.clone());
            for source in self.on_demand_sources(inputs)? {
                let keys = &self.entity(&source.group.entity)?.join_keys;
                add_all(&mut plan.required, keys);
                add_all(&mut plan.join_keys, keys);
            }
            let fields: Vec<String> = request_fields.iter().map(|f| f.name.clone()).collect();
            add_all(&mut plan.request_fields, &fields);
        }
        Ok(plan)
    }

    /// `POST /write-to-online-store`: the rows of `df` for the feature view.
    pub async fn feast_write_to_online_store(&self, req: WriteToOnlineStoreRequest) -> Result<(), FeastError> {
        let group = self
            .feature_group(&req.feature_view_name)
            .map_err(|_| FeastError::FeatureViewNotFound(req.feature_view_name.clone()))?;
        let rows = self.feast_rows(&group, &req.df)?;
        self.write_features(&group.name, rows).await?;
        Ok(())
    }

    /// `POST /push`: the rows of `df` for the push source's group.
    pub async fn feast_push(&self, req: PushRequest) -> Result<(), FeastError> {
        let group = self
            .feature_group(&req.push_source_name)
            .ok()
            .filter(|g| !matches!(g.producer, Producer::OnDemand { .. }))
            .ok_or_else(|| FeastError::PushSourceNotFound(req.push_source_name.clone()))?;
        let rows = self.feast_rows(&group, &req.df)?;
        match req.to {
            PushMode::Offline => self.write_offline_only(&group, rows).await,
            PushMode::Online | PushMode::OnlineAndOffline => {
                self.write_features(&group.name, rows).await?;
                Ok(())
            }
        }
    }

    /// Rows of a Feast `df` for `group`: join keys, `event_timestamp`
    /// (ISO 8601; without an offset it is UTC, as the remote client sends
    /// it), optional `created`, and features. A column that is none of
    /// these is refused rather than dropped, so a misspelt feature is not
    /// lost silently.
    fn feast_rows(&self, group: &FeatureGroup, df: &Map<String, Json>) -> Result<Vec<FeatureWriteRow>, FeastError> {
        let join_keys = &self.entity(&group.entity)?.join_keys;
        let unknown: Vec<String> = df
            .keys()
            .filter(|c| !join_keys.contains(c) && *c != EVENT_TIMESTAMP && *c != CREATED && group.feature(c).is_none())
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(FeastError::FeaturesNotPresent {
                view: group.name.clone(),
                missing: unknown,
                available: group.feature_names(),
            });
        }
        let expected: Vec<String> = join_keys.iter().cloned().chain([EVENT_TIMESTAMP.to_string()]).collect();
        let missing: Vec<String> = expected.iter().filter(|c| !df.contains_key(*c)).cloned().collect();
        if !missing.is_empty() {
            return Err(FeastError::MissingColumns { expected, missing });
        }
        let rows = df_rows(df)?;
        (0..rows)
            .map(|i| {
                let at = |column: &str| df.get(column).map(|c| cell(c, i));
                let entity = join_keys.iter().map(|k| (k.clone(), cell(&df[k.as_str()], i))).collect();
                let event_timestamp = match cell(&df[EVENT_TIMESTAMP], i) {
                    Json::Null => return Err(row_error(i, "event_timestamp is null")),
                    t => timestamp(&t).map_err(|e| row_error(i, format!("event_timestamp: {e}")))?,
                };
                let created_timestamp = match at(CREATED) {
                    Some(Json::Null) | None => None,
                    Some(t) => Some(timestamp(&t).map_err(|e| row_error(i, format!("created: {e}")))?),
                };
                let values = group.features.iter().filter_map(|f| Some((f.name.clone(), at(&f.name)?))).collect();
                Ok(FeatureWriteRow {
                    entity,
                    event_timestamp: event_timestamp.into(),
                    created_timestamp: created_timestamp.map(Into::into),
                    values,
                })
            })
            .collect()
    }

    /// `to: "offline"`: the rows land in the offline store only, validated
    /// as [`Wafer::write_features`] validates them.
    async fn write_offline_only(&self, group: &FeatureGroup, rows: Vec<FeatureWriteRow>) -> Result<(), FeastError> {
        let parsed = self.feature_rows(group, rows)?;
        if !parsed.is_empty() {
            let table = self.group_def(group)?;
            self.offline().write_feature_rows(&table, &parsed).await.map_err(ServiceError::from)?;
        }
        Ok(())
    }
}

/// The join-key columns as sent, then one column per feature from the
/// entities' served values (`features` is in the refs' order).
fn answer(
    keys: &[NamedColumn],
    feature_names: Vec<String>,
    served: &[EntityResult],
    rows: usize,
) -> GetOnlineFeaturesResponse {
    let mut names: Vec<String> = keys.iter().map(|(name, _)| (*name).clone()).collect();
    let mut results: Vec<FeatureVector> = keys
        .iter()
        .map(|(_, values)| FeatureVector {
            values: values.to_vec(),
            statuses: vec![FieldStatus::Present; rows],
            event_timestamps: vec![EPOCH; rows],
        })
        .collect();
    for (pos, name) in feature_names.into_iter().enumerate() {
        let (mut values, mut statuses, mut event_timestamps) = (Vec::new(), Vec::new(), Vec::new());
        for entity in served {
            let (value, status, at) = feast_value(&entity.features[pos].1);
            values.push(value);
            statuses.push(status);
            event_timestamps.push(at);
        }
        names.push(name);
        results.push(FeatureVector { values, statuses, event_timestamps });
    }
    GetOnlineFeaturesResponse { metadata: ResponseMetadata { feature_names: names }, results }
}

/// The answer's feature names, `view__feature` with full names; two alike
/// are refused, as Feast refuses them.
fn output_names(refs: &[FeatureRef], full: bool) -> Result<Vec<String>, FeastError> {
    let names: Vec<String> =
        refs.iter().map(|r| if full { format!("{}__{}", r.group, r.feature) } else { r.feature.clone() }).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for name in &names {
        *counts.entry(name.as_str()).or_default() += 1;
    }
    let mut duplicates: Vec<String> = names.iter().filter(|n| counts[n.as_str()] > 1).cloned().collect();
    duplicates.dedup();
    if duplicates.is_empty() { Ok(names) } else { Err(FeastError::NameCollision(duplicates)) }
}

/// A request column: its name and one value per row.
type NamedColumn<'a> = (&'a String, &'a Vec<Json>);

/// The `entities` columns in request order, and how many rows they hold.
/// Every column is a list, all of one length.
fn entity_columns(entities: &Map<String, Json>) -> Result<(Vec<NamedColumn<'_>>, usize), FeastError> {
    let mut columns = Vec::with_capacity(entities.len());
    for (name, column) in entities {
        let Json::Array(values) = column else {
            return Err(FeastError::Invalid(format!("entities.{name} must be a list with one value per row")));
        };
        columns.push((name, values));
    }
    let rows = columns.first().map_or(0, |(_, values)| values.len());
    if columns.iter().any(|(_, values)| values.len() != rows) {
        return Err(FeastError::Invalid(format!(
            "all entities columns must have the same length; got {}",
            lengths(&columns)
        )));
    }
    Ok((columns, rows))
}

/// How many rows a `df` holds: the length its list columns share. A scalar
/// column holds the same value for every row, as in the pandas DataFrame
/// Feast builds from it.
fn df_rows(df: &Map<String, Json>) -> Result<usize, FeastError> {
    let lists: Vec<NamedColumn> = df
        .iter()
        .filter_map(|(name, column)| match column {
            Json::Array(values) => Some((name, values)),
            _ => None,
        })
        .collect();
    let Some((_, first)) = lists.first() else {
        return Err(FeastError::Invalid("df needs list columns (column name -> one value per row)".into()));
    };
    if lists.iter().any(|(_, values)| values.len() != first.len()) {
        return Err(FeastError::Invalid(format!("all df columns must have the same length; got {}", lengths(&lists))));
    }
    Ok(first.len())
}

fn lengths(columns: &[NamedColumn]) -> String {
    columns.iter().map(|(name, values)| format!("{name}: {}", values.len())).collect::<Vec<_>>().join(", ")
}

/// Row `i` of a df column (a scalar column's value is every row's).
fn cell(column: &Json, i: usize) -> Json {
    match column {
        Json::Array(values) => values[i].clone(),
        scalar => scalar.clone(),
    }
}

/// A df timestamp: an ISO 8601 string, UTC when it has no offset (the
/// remote client sends naive UTC `isoformat()`; Python's `str(datetime)`
/// separates date and time with a space).
fn timestamp(json: &Json) -> Result<Timestamp, String> {
    match json {
        Json::String(text) => Timestamp::parse(text).map_err(|e| e.to_string()),
        Json::Number(n) => Err(format!(
            "expected an ISO 8601 string such as \"2021-04-12T10:59:42\", got {n}{}",
            crate::model::time::epoch_reading(
                n.as_f64().unwrap_or(f64::NAN),
                Timestamp::from_datetime(chrono::Utc::now())
            )
        )),
        other => Err(format!("expected an ISO 8601 string such as \"2021-04-12T10:59:42\", got {other}")),
    }
}

fn row_error(i: usize, msg: impl std::fmt::Display) -> FeastError {
    FeastError::Invalid(format!("df row {i}: {msg}"))
}

/// A served value in Feast's terms: `fresh` and `stale` are PRESENT,
/// `expired` is OUTSIDE_MAX_AGE with its value, `missing` NOT_FOUND at the
/// epoch.
fn feast_value(served: &ServedValue) -> (Json, FieldStatus, Timestamp) {
    let at = served.event_timestamp.unwrap_or(EPOCH);
    match served.status {
        FreshnessStatus::Fresh | FreshnessStatus::Stale => (served.value.to_json(), FieldStatus::Present, at),
        FreshnessStatus::Expired => (served.value.to_json(), FieldStatus::OutsideMaxAge, at),
        FreshnessStatus::Missing => (Json::Null, FieldStatus::NotFound, EPOCH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;
    use serde_json::json;

    fn refs(texts: &[&str]) -> Vec<FeatureRef> {
        texts.iter().map(|t| FeatureRef::parse(t).unwrap()).collect()
    }

    fn object(v: Json) -> Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn feature_names_are_bare_or_prefixed_with_the_view_and_must_not_collide() {
        let two_views = refs(&["driver_hourly_stats:conv_rate", "driver_daily:conv_rate", "driver_daily:trips"]);
        assert_eq!(
            output_names(&two_views, true).unwrap(),
            vec!["driver_hourly_stats__conv_rate", "driver_daily__conv_rate", "driver_daily__trips"]
        );
        match output_names(&two_views, false) {
            Err(e @ FeastError::NameCollision(_)) => {
                assert_eq!(e.class(), "FeatureNameCollisionError");
                assert!(e.to_string().contains("conv_rate"), "{e}");
            }
            other => panic!("expected a collision, got {other:?}"),
        }
        assert_eq!(output_names(&two_views[1..], false).unwrap(), vec!["conv_rate", "trips"]);
        assert!(output_names(&refs(&["a:x", "a:x"]), true).is_err(), "the same ref twice collides");
    }

    #[test]
    fn entity_columns_keep_request_order_and_must_share_one_length() {
        let entities = object(json!({"driver_id": [1001, 1002], "val_to_add": [1, 2]}));
        let (columns, rows) = entity_columns(&entities).unwrap();
        assert_eq!(rows, 2);
        assert_eq!(columns.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), vec!["driver_id", "val_to_add"]);
        let uneven = object(json!({"driver_id": [1001, 1002], "val_to_add": [1]}));
        let e = entity_columns(&uneven).unwrap_err().to_string();
        assert!(e.contains("driver_id: 2") && e.contains("val_to_add: 1"), "{e}");
        assert!(entity_columns(&object(json!({"driver_id": 1001}))).is_err(), "a scalar is not a column");
    }

    #[test]
    fn df_scalars_are_every_rows_value_and_lists_must_share_one_length() {
        let df = object(json!({"driver_id": [1, 2, 3], "string_feature": "test2"}));
        assert_eq!(df_rows(&df).unwrap(), 3);
        assert_eq!(cell(&df["string_feature"], 2), json!("test2"));
        assert_eq!(cell(&df["driver_id"], 1), json!(2));
        assert!(df_rows(&object(json!({"driver_id": [1, 2], "conv_rate": [0.5]}))).is_err());
        assert!(df_rows(&object(json!({"driver_id": 1}))).is_err(), "no list column: no row count");
    }

    #[test]
    fn df_timestamps_read_the_formats_feast_clients_send_as_utc() {
        let utc = Timestamp::parse("2021-04-12T10:59:42Z").unwrap();
        // online_write_batch: naive UTC isoformat(); the push docs: str(datetime), with or without offset.
        for text in
            ["2021-04-12T10:59:42", "2021-04-12 10:59:42", "2021-04-12 10:59:42+00:00", "2021-04-12 12:59:42+02:00"]
        {
            assert_eq!(timestamp(&json!(text)).unwrap(), utc, "{text}");
        }
        assert_eq!(timestamp(&json!("2021-04-12T10:59:42.250000")).unwrap(), Timestamp(utc.0 + 250_000));
        assert!(timestamp(&json!(1618225182)).unwrap_err().contains("ISO 8601"));
    }

    #[test]
    fn freshness_maps_to_feast_statuses_and_missing_values_to_the_epoch() {
        let at = Timestamp::parse("2021-12-31T23:00:00Z").unwrap();
        let served = |status, value: Value| ServedValue {
            value,
            status,
            event_timestamp: Some(at),
            age_seconds: Some(1.0),
            source: None,
        };
        for status in [FreshnessStatus::Fresh, FreshnessStatus::Stale] {
            assert_eq!(feast_value(&served(status, Value::Float64(0.5))), (json!(0.5), FieldStatus::Present, at));
        }
        assert_eq!(
            feast_value(&served(FreshnessStatus::Expired, Value::Int64(308))),
            (json!(308), FieldStatus::OutsideMaxAge, at)
        );
        // A row whose value is null is missing too, and reads as absent.
        assert_eq!(
            feast_value(&served(FreshnessStatus::Missing, Value::Null)),
            (Json::Null, FieldStatus::NotFound, EPOCH)
        );
        let statuses =
            serde_json::to_value([FieldStatus::Present, FieldStatus::NotFound, FieldStatus::OutsideMaxAge]).unwrap();
        assert_eq!(statuses, json!(["PRESENT", "NOT_FOUND", "OUTSIDE_MAX_AGE"]));
        assert_eq!(serde_json::to_value(EPOCH).unwrap(), json!("1970-01-01T00:00:00Z"));
    }

    #[test]
    fn not_found_service_errors_become_feasts_typed_not_found_errors() {
        let view: FeastError = ServiceError::not_found("feature group", "driver_stats").into();
        assert_eq!(
            (view.class(), view.to_string().as_str()),
            ("FeatureViewNotFoundException", "Feature view driver_stats does not exist")
        );
        let entity: FeastError = ServiceError::not_found("entity", "driver").into();
        assert_eq!(entity.class(), "EntityNotFoundException");
        let other: FeastError = ServiceError::Invalid("bad".into()).into();
        assert_eq!(other.class(), "FeastError");
    }
}
