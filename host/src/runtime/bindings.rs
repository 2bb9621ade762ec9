//! The one `bindgen!` of the host, fenced here with the conversions between
//! the generated types and `crate::model`'s. Nothing else names generated
//! paths.

use crate::model::{self, ColumnValues, TransformKind, ValueType};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "transform-component",
});

pub(crate) use wafer::transform::log;
pub(crate) use wafer::transform::types as wit;

pub(crate) use self::TransformComponent as Component;
pub(crate) use self::TransformComponentPre as ComponentPre;

fn values_to_wit(v: &ColumnValues) -> wit::Values {
    match v {
        ColumnValues::Float64(x) => wit::Values::Float64(x.clone()),
        ColumnValues::Int64(x) => wit::Values::Int64(x.clone()),
        ColumnValues::Bool(x) => wit::Values::Boolean(x.clone()),
        ColumnValues::Text(x) => wit::Values::Text(x.clone()),
        ColumnValues::Float64List(x) => wit::Values::Float64List(x.clone()),
        ColumnValues::TextList(x) => wit::Values::TextList(x.clone()),
    }
}

fn values_from_wit(v: wit::Values) -> ColumnValues {
    match v {
        wit::Values::Float64(x) => ColumnValues::Float64(x),
        wit::Values::Int64(x) => ColumnValues::Int64(x),
        wit::Values::Boolean(x) => ColumnValues::Bool(x),
        wit::Values::Text(x) => ColumnValues::Text(x),
        wit::Values::Float64List(x) => ColumnValues::Float64List(x),
        wit::Values::TextList(x) => ColumnValues::TextList(x),
    }
}

pub(crate) fn column_to_wit(c: &model::Column) -> wit::Column {
    wit::Column { name: c.name.clone(), values: values_to_wit(&c.values), nulls: c.nulls.clone() }
}

pub(crate) fn table_to_wit(t: &model::Table) -> wit::Table {
    wit::Table { timestamps: t.timestamps.clone(), columns: t.columns.iter().map(column_to_wit).collect() }
}

pub(crate) fn table_from_wit(t: wit::Table) -> model::Table {
    model::Table {
        timestamps: t.timestamps,
        columns: t
            .columns
            .into_iter()
            .map(|c| model::Column { name: c.name, values: values_from_wit(c.values), nulls: c.nulls })
            .collect(),
    }
}

fn params_to_wit(params: &[(String, String)]) -> Vec<wit::Param> {
    params.iter().map(|(name, value)| wit::Param { name: name.clone(), value: value.clone() }).collect()
}

fn named_to_wit(tables: &[model::NamedTable]) -> Vec<wit::NamedTable> {
    tables.iter().map(|t| wit::NamedTable { name: t.name.clone(), table: table_to_wit(&t.table) }).collect()
}

pub(crate) fn batch_input_to_wit(i: &model::BatchInput) -> wit::BatchInput {
    wit::BatchInput {
        entity: i.entity.clone(),
        sources: named_to_wit(&i.sources),
        related: named_to_wit(&i.related),
        params: params_to_wit(&i.params),
    }
}

pub(crate) fn on_demand_input_to_wit(i: &model::OnDemandInput) -> wit::OnDemandInput {
    wit::OnDemandInput {
        features: i.features.iter().map(column_to_wit).collect(),
        request: i.request.iter().map(column_to_wit).collect(),
        params: params_to_wit(&i.params),
    }
}

fn type_from_wit(t: wit::ValueType) -> ValueType {
    match t {
        wit::ValueType::Float64 => ValueType::Float64,
        wit::ValueType::Int64 => ValueType::Int64,
        wit::ValueType::Boolean => ValueType::Bool,
        wit::ValueType::Text => ValueType::String,
        wit::ValueType::Float64List => ValueType::Float64List,
        wit::ValueType::TextList => ValueType::StringList,
    }
}

fn field_from_wit(f: wit::Field) -> model::FieldSpec {
    model::FieldSpec { name: f.name, value_type: type_from_wit(f.value_type), description: f.description }
}

pub(crate) fn descriptor_from_wit(d: wit::Descriptor) -> model::Descriptor {
    model::Descriptor {
        kind: match d.kind {
            wit::TransformKind::Batch => TransformKind::Batch,
            wit::TransformKind::OnDemand => TransformKind::OnDemand,
        },
        inputs: d.inputs.into_iter().map(field_from_wit).collect(),
        request_fields: d.request_fields.into_iter().map(field_from_wit).collect(),
        outputs: d.outputs.into_iter().map(field_from_wit).collect(),
        params: d
            .params
            .into_iter()
            .map(|p| model::ParamSpec {
                name: p.name,
                value_type: type_from_wit(p.value_type),
                default: p.default_value,
                description: p.description,
            })
            .collect(),
        min_history: d.min_history,
        related: d
            .related
            .into_iter()
            .map(|r| model::RelatedSeries { name: r.name, source: r.source, entity_param: r.entity_param })
            .collect(),
        description: d.description,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_survive_the_round_trip_through_wit_types() {
        let t = model::Table {
            timestamps: vec![1, 2],
            columns: vec![model::Column {
                name: "x".into(),
                values: ColumnValues::Float64(vec![1.0, 2.0]),
                nulls: vec![1],
            }],
        };
        assert_eq!(table_from_wit(table_to_wit(&t)), t);
    }
}
