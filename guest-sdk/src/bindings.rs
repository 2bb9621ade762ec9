//! The one place that names generated WIT bindings (wasm32 only).
//!
//! `wit_bindgen::generate!` runs over `wit/` (world `transform-component`).
//! The export macro it generates is public so that [`crate::export!`],
//! expanded in the author's crate, can use it; the conversions below are the
//! only code that touches generated types, so the rest of the SDK stays plain
//! Rust that also compiles natively.

#![allow(missing_docs, unsafe_code, clippy::all)]

wit_bindgen::generate!({
    path: "../wit",
    world: "transform-component",
    pub_export_macro: true,
    export_macro_name: "__export_wafer_transform",
    default_bindings_module: "wafer_guest::bindings",
});

use self::exports::wafer::transform::transform::Guest;
use self::wafer::transform::types as wit;
use crate::descriptor::{Descriptor, Field, Kind, ParamSpec, RelatedSeries};
use crate::input::{BatchInput, OnDemandInput, Param};
use crate::table::{Column, NamedTable, Table, ValueType, Values};
use crate::transform::{Adapter, Transform};

impl<T: Transform> Guest for Adapter<T> {
    fn describe() -> wit::Descriptor {
        T::describe().into()
    }

    fn batch(input: wit::BatchInput) -> Result<wit::Table, String> {
        T::batch(input.into()).map(Into::into)
    }

    fn on_demand(input: wit::OnDemandInput) -> Result<wit::Table, String> {
        T::on_demand(input.into()).map(Into::into)
    }
}

impl From<ValueType> for wit::ValueType {
    fn from(t: ValueType) -> Self {
        match t {
            ValueType::Float64 => Self::Float64,
            ValueType::Int64 => Self::Int64,
            ValueType::Boolean => Self::Boolean,
            ValueType::Text => Self::Text,
            ValueType::Float64List => Self::Float64List,
            ValueType::TextList => Self::TextList,
        }
    }
}

impl From<wit::Values> for Values {
    fn from(v: wit::Values) -> Self {
        match v {
            wit::Values::Float64(v) => Self::Float64(v),
            wit::Values::Int64(v) => Self::Int64(v),
            wit::Values::Boolean(v) => Self::Boolean(v),
            wit::Values::Text(v) => Self::Text(v),
            wit::Values::Float64List(v) => Self::Float64List(v),
            wit::Values::TextList(v) => Self::TextList(v),
        }
    }
}

impl From<Values> for wit::Values {
    fn from(v: Values) -> Self {
        match v {
            Values::Float64(v) => Self::Float64(v),
            Values::Int64(v) => Self::Int64(v),
            Values::Boolean(v) => Self::Boolean(v),
            Values::Text(v) => Self::Text(v),
            Values::Float64List(v) => Self::Float64List(v),
            Values::TextList(v) => Self::TextList(v),
        }
    }
}

impl From<wit::Column> for Column {
    fn from(c: wit::Column) -> Self {
        Column::new(c.name, c.values.into(), c.nulls)
    }
}

impl From<Column> for wit::Column {
    fn from(c: Column) -> Self {
        let (name, values, nulls) = c.into_parts();
        Self { name, values: values.into(), nulls }
    }
}

impl From<wit::Table> for Table {
    fn from(t: wit::Table) -> Self {
        Table { timestamps: t.timestamps, columns: t.columns.into_iter().map(Into::into).collect() }
    }
}

impl From<Table> for wit::Table {
    fn from(t: Table) -> Self {
        Self { timestamps: t.timestamps, columns: t.columns.into_iter().map(Into::into).collect() }
    }
}

impl From<wit::NamedTable> for NamedTable {
    fn from(t: wit::NamedTable) -> Self {
        NamedTable { name: t.name, table: t.table.into() }
    }
}

impl From<wit::Param> for Param {
    fn from(p: wit::Param) -> Self {
        Param { name: p.name, value: p.value }
    }
}

impl From<wit::BatchInput> for BatchInput {
    fn from(i: wit::BatchInput) -> Self {
        BatchInput {
            entity: i.entity,
            sources: i.sources.into_iter().map(Into::into).collect(),
            related: i.related.into_iter().map(Into::into).collect(),
            params: i.params.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<wit::OnDemandInput> for OnDemandInput {
    fn from(i: wit::OnDemandInput) -> Self {
        OnDemandInput {
            features: i.features.into_iter().map(Into::into).collect(),
            request: i.request.into_iter().map(Into::into).collect(),
            params: i.params.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Field> for wit::Field {
    fn from(f: Field) -> Self {
        Self { name: f.name, value_type: f.value_type.into(), description: f.description }
    }
}

impl From<ParamSpec> for wit::ParamSpec {
    fn from(p: ParamSpec) -> Self {
        Self {
            name: p.name,
            value_type: p.value_type.into(),
            default_value: p.default_value,
            description: p.description,
        }
    }
}

impl From<RelatedSeries> for wit::RelatedSeries {
    fn from(r: RelatedSeries) -> Self {
        Self { name: r.name, source: r.source, entity_param: r.entity_param }
    }
}

impl From<Descriptor> for wit::Descriptor {
    fn from(d: Descriptor) -> Self {
        fn all<A: Into<B>, B>(v: Vec<A>) -> Vec<B> {
            v.into_iter().map(Into::into).collect()
        }
        Self {
            kind: match d.kind {
                Kind::Batch => wit::TransformKind::Batch,
                Kind::OnDemand => wit::TransformKind::OnDemand,
            },
            inputs: all(d.inputs),
            request_fields: all(d.request_fields),
            outputs: all(d.outputs),
            params: all(d.params),
            min_history: d.min_history,
            related: all(d.related),
            description: d.description,
        }
    }
}

/// Sends one line to the host's log for this transform.
pub(crate) fn log(level: crate::log::Level, message: &str) {
    use self::wafer::transform::log as host;
    use crate::log::Level;
    let level = match level {
        Level::Trace => host::Level::Trace,
        Level::Debug => host::Level::Debug,
        Level::Info => host::Level::Info,
        Level::Warn => host::Level::Warn,
        Level::Error => host::Level::Error,
    };
    host::log(level, message);
}
