//! The vocabulary every other module speaks: registry objects, values,
//! timestamps, entity keys, columnar tables and jobs. Plain data, no I/O.

pub mod audit;
pub mod entity_frame;
pub mod entity_key;
pub mod feature_ref;
pub mod job;
pub mod provenance;
pub mod registry;
pub mod stats;
pub mod table;
pub mod time;
pub mod transform;
pub mod value;

pub use audit::{Actor, AuditEntry};
pub use entity_key::EntityKey;
pub use feature_ref::FeatureRef;
pub use job::{Job, JobState, JobTask, LeasedTask, TaskOutcome};
pub use provenance::Provenance;
pub use registry::{Entity, FeatureGroup, FeatureSpec, Freshness, Producer, Source, SourceField};
pub use stats::{FeatureStatistics, FreshnessCounts};
pub use table::{BatchInput, Column, ColumnValues, NamedTable, OnDemandInput, Table};
pub use time::{TimeWindow, TimeWindowError, Timestamp};
pub use transform::{
    Descriptor, FieldSpec, LimitOverrides, ParamSpec, RelatedSeries, ShadowSpec, TransformKind, TransformSettings,
    TransformSummary, TransformVersion,
};
pub use value::{Value, ValueType};

use std::collections::BTreeMap;

/// One raw, time-stamped row of a source for one entity. `values` holds the
/// source's declared fields by name; absent fields are null.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceRow {
    pub entity: EntityKey,
    pub ts: Timestamp,
    pub values: BTreeMap<String, Value>,
}

/// One row of a feature group for one entity at one event time.
///
/// `created` is when the row was written; rows with the same entity and event
/// time are corrections of each other and the latest `created` wins.
/// `created_given` says whether the writer gave that time (a pushed row's
/// `created_timestamp`, Feast's `created` column) rather than the server
/// stamping its own clock: only given created times are compared against a
/// point-in-time read's `created_cutoff`, as in Feast, where only sources
/// with a created-timestamp column are filtered by it.
/// `provenance` names the transform version that computed the row; rows
/// pushed by clients (and rows stored before provenance was recorded) have
/// none.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureRow {
    pub entity: EntityKey,
    pub event_ts: Timestamp,
    pub created: Timestamp,
    pub created_given: bool,
    pub values: BTreeMap<String, Value>,
    pub provenance: Option<Provenance>,
}

/// Of `n` rows of one group, written in order, the indices of those an
/// online store keeps: per entity the latest event, then the latest
/// created, the later row among equals (the online stores' newest-wins
/// rule, row by row), in order of each entity's first row. `at(i)` is row
/// `i`'s entity, event time and created time. Writing only these leaves
/// the online store as writing every row would.
pub fn newest_per_entity<K: std::hash::Hash + Eq>(n: usize, at: impl Fn(usize) -> (K, i64, i64)) -> Vec<usize> {
    use std::collections::hash_map::{Entry, HashMap};
    // Per entity (by its first row's place) the row winning so far.
    let mut slots: HashMap<K, usize> = HashMap::new();
    let mut winners: Vec<(usize, (i64, i64))> = Vec::new();
    for i in 0..n {
        let (key, event, created) = at(i);
        match slots.entry(key) {
            Entry::Occupied(slot) => {
                let winner = &mut winners[*slot.get()];
                if (event, created) >= winner.1 {
                    *winner = (i, (event, created));
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(winners.len());
                winners.push((i, (event, created)));
            }
        }
    }
    winners.into_iter().map(|(i, _)| i).collect()
}
