//! The one `bindgen!` of the host, fenced here with everything that names
//! what it generates: the conversions between generated types and
//! `crate::model`'s, the `log` import, instantiation and the three calls.
//! The rest of the runtime speaks [`Request`], [`Response`] and model types.

use super::wasm::State;
use crate::model::{self, ColumnValues, TransformKind, ValueType};
use wasmtime::Store;
use wasmtime::component::{HasSelf, Linker};

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform-component",
        // Calls run on the async runtime's threads, yielding at every epoch
        // tick (`wasm.rs`); the `log` import stays synchronous.
        exports: { default: async },
    });
}

use generated::wafer::transform::log;
use generated::wafer::transform::types as wit;

pub(crate) use generated::TransformComponentPre as ComponentPre;

/// The interface every transform exports (the WIT `transform`).
pub(crate) const TRANSFORM_EXPORT: &str = "wafer:transform/transform@0.1.0";
/// The host interfaces of our own package a transform may import.
pub(crate) const WAFER_IMPORTS: [&str; 2] = ["wafer:transform/log@0.1.0", "wafer:transform/types@0.1.0"];

/// What the host asks of a component.
pub(crate) enum Request<'a> {
    Describe,
    Batch(&'a model::BatchInput),
    OnDemand(&'a model::OnDemandInput),
}

/// What it answered: a descriptor, or a table or the guest's refusal.
pub(crate) enum Response {
    Descriptor(model::Descriptor),
    Table(Result<model::Table, String>),
}

impl log::Host for State {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => tracing::Level::TRACE,
            log::Level::Debug => tracing::Level::DEBUG,
            log::Level::Info => tracing::Level::INFO,
            log::Level::Warn => tracing::Level::WARN,
            log::Level::Error => tracing::Level::ERROR,
        };
        self.guest_log(level, &message);
    }
}

/// The `types` interface has no functions; the trait only marks it linked.
impl wit::Host for State {}

/// Defines the `wafer:transform` imports (`log`) in `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    generated::TransformComponent::add_to_linker::<State, HasSelf<State>>(linker, |state| state)
}

/// A live instance of a transform in one store.
pub(crate) struct Instance(generated::TransformComponent);

impl Instance {
    pub async fn new<T: Send + 'static>(pre: &ComponentPre<T>, store: &mut Store<T>) -> wasmtime::Result<Instance> {
        pre.instantiate_async(store).await.map(Instance)
    }

    /// Calls the export `request` names. `Err` is a trap (or a host
    /// failure); the guest refusing its input is `Ok(Response::Table(Err))`.
    pub async fn call<T: Send + 'static>(
        &self,
        store: &mut Store<T>,
        request: Request<'_>,
    ) -> wasmtime::Result<Response> {
        let t = self.0.wafer_transform_transform();
        Ok(match request {
            Request::Describe => Response::Descriptor(descriptor_from_wit(t.call_describe(store).await?)),
            Request::Batch(input) => {
                Response::Table(t.call_batch(store, &batch_input_to_wit(input)).await?.map(table_from_wit))
            }
            Request::OnDemand(input) => {
                Response::Table(t.call_on_demand(store, &on_demand_input_to_wit(input)).await?.map(table_from_wit))
            }
        })
    }
}

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

fn column_to_wit(c: &model::Column) -> wit::Column {
    wit::Column { name: c.name.clone(), values: values_to_wit(&c.values), nulls: c.nulls.clone() }
}

fn table_to_wit(t: &model::Table) -> wit::Table {
    wit::Table { timestamps: t.timestamps.clone(), columns: t.columns.iter().map(column_to_wit).collect() }
}

fn table_from_wit(t: wit::Table) -> model::Table {
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

fn batch_input_to_wit(i: &model::BatchInput) -> wit::BatchInput {
    wit::BatchInput {
        entity: i.entity.clone(),
        sources: named_to_wit(&i.sources),
        related: named_to_wit(&i.related),
        params: params_to_wit(&i.params),
    }
}

fn on_demand_input_to_wit(i: &model::OnDemandInput) -> wit::OnDemandInput {
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

fn descriptor_from_wit(d: wit::Descriptor) -> model::Descriptor {
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
            columns: vec![
                model::Column { name: "x".into(), values: ColumnValues::Float64(vec![1.0, 2.0]), nulls: vec![1] },
                model::Column { name: "n".into(), values: ColumnValues::Int64(vec![3, 4]), nulls: vec![] },
                model::Column { name: "b".into(), values: ColumnValues::Bool(vec![true, false]), nulls: vec![] },
                model::Column {
                    name: "s".into(),
                    values: ColumnValues::Text(vec!["a".into(), "b".into()]),
                    nulls: vec![],
                },
                model::Column {
                    name: "xs".into(),
                    values: ColumnValues::Float64List(vec![vec![1.0], vec![]]),
                    nulls: vec![],
                },
                model::Column {
                    name: "ss".into(),
                    values: ColumnValues::TextList(vec![vec![], vec!["c".into()]]),
                    nulls: vec![0],
                },
            ],
        };
        assert_eq!(table_from_wit(table_to_wit(&t)), t);
    }

    #[test]
    fn batch_input_keeps_its_sources_related_series_and_params_in_order() {
        let table = |x: f64| model::Table {
            timestamps: vec![7],
            columns: vec![model::Column {
                name: "close".into(),
                values: ColumnValues::Float64(vec![x]),
                nulls: vec![],
            }],
        };
        let input = model::BatchInput {
            entity: "AAPL".into(),
            sources: vec![
                model::NamedTable { name: "prices".into(), table: table(1.0) },
                model::NamedTable { name: "other".into(), table: table(2.0) },
            ],
            related: vec![model::NamedTable { name: "benchmark".into(), table: table(3.0) }],
            params: vec![("window".into(), "20".into()), ("mode".into(), "ok".into())],
        };
        let w = batch_input_to_wit(&input);
        assert_eq!(w.entity, "AAPL");
        let names: Vec<&str> = w.sources.iter().chain(&w.related).map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["prices", "other", "benchmark"]);
        assert_eq!(table_from_wit(w.related[0].table.clone()), table(3.0));
        let params: Vec<(&str, &str)> = w.params.iter().map(|p| (p.name.as_str(), p.value.as_str())).collect();
        assert_eq!(params, [("window", "20"), ("mode", "ok")]);
    }

    #[test]
    fn descriptors_map_every_wit_type_to_the_model_type_of_the_same_meaning() {
        let field = |name: &str, value_type| wit::Field { name: name.into(), value_type, description: String::new() };
        let d = descriptor_from_wit(wit::Descriptor {
            kind: wit::TransformKind::OnDemand,
            inputs: vec![field("g:a", wit::ValueType::Float64), field("g:b", wit::ValueType::Int64)],
            request_fields: vec![field("c", wit::ValueType::Boolean)],
            outputs: vec![
                field("d", wit::ValueType::Text),
                field("e", wit::ValueType::Float64List),
                field("f", wit::ValueType::TextList),
            ],
            params: vec![wit::ParamSpec {
                name: "p".into(),
                value_type: wit::ValueType::Int64,
                default_value: Some("3".into()),
                description: "a knob".into(),
            }],
            min_history: 5,
            related: vec![],
            description: "test".into(),
        });
        assert_eq!(d.kind, TransformKind::OnDemand);
        let types: Vec<ValueType> =
            d.inputs.iter().chain(&d.request_fields).chain(&d.outputs).map(|f| f.value_type).collect();
        assert_eq!(
            types,
            [
                ValueType::Float64,
                ValueType::Int64,
                ValueType::Bool,
                ValueType::String,
                ValueType::Float64List,
                ValueType::StringList
            ]
        );
        assert_eq!((d.params[0].default.as_deref(), d.min_history), (Some("3"), 5));
    }
}
