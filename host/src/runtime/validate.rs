//! What a component must be to be published, and what its output must be
//! to be accepted. Pure functions over names and model types, so every rule
//! is unit-tested without a component.

use super::bindings::{TRANSFORM_EXPORT, WAFER_IMPORTS};
use super::limits::Limits;
use crate::model::registry::validate_name;
use crate::model::{Descriptor, Table, TransformKind};
use std::collections::HashSet;

/// WASI interfaces a transform may import. They are linked with an empty
/// context: no preopened directories (so `wasi:filesystem` reaches nothing),
/// no environment or arguments, closed stdin, stdout/stderr captured.
/// Sockets and HTTP are not linked at all; anything else is unknown.
const WASI_IMPORTS: [&str; 5] = ["wasi:cli/", "wasi:io/", "wasi:clocks/", "wasi:random/", "wasi:filesystem/"];

/// The first eight bytes tell a component from a core module (or garbage):
/// `\0asm`, then version 1 layer 0 for a core module, or the component
/// encoding's version and layer 1.
pub(crate) fn check_binary(bytes: &[u8]) -> Result<(), String> {
    match bytes {
        [0, b'a', b's', b'm', _, _, 1, 0, ..] => Ok(()),
        [0, b'a', b's', b'm', 1, 0, 0, 0, ..] => {
            Err("this is a core WebAssembly module, not a component; build it for `wasm32-wasip2` \
             (`cargo build --target wasm32-wasip2`), which produces a component"
                .into())
        }
        [0, b'a', b's', b'm', ..] => Err("a WebAssembly binary of an unknown version or layer".into()),
        _ => Err(format!(
            "not a WebAssembly binary: it starts with {:02x?}, not the `\\0asm` magic number",
            &bytes[..bytes.len().min(4)]
        )),
    }
}

fn import_allowed(name: &str) -> bool {
    WAFER_IMPORTS.contains(&name) || WASI_IMPORTS.iter().any(|prefix| name.starts_with(prefix))
}

/// Every import must be one the sandbox provides; the error names the first
/// that is not.
pub(crate) fn check_imports<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    match names.into_iter().find(|name| !import_allowed(name)) {
        None => Ok(()),
        Some(bad) => Err(format!(
            "imports '{bad}', which the sandbox does not provide (allowed: {}, {}*)",
            WAFER_IMPORTS.join(", "),
            WASI_IMPORTS.join("*, ")
        )),
    }
}

/// The component must export our `transform` interface, at our version.
pub(crate) fn check_exports<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let names: Vec<&str> = names.into_iter().collect();
    if names.contains(&TRANSFORM_EXPORT) {
        return Ok(());
    }
    let found = if names.is_empty() { "nothing".to_string() } else { names.join(", ") };
    Err(format!("does not export '{TRANSFORM_EXPORT}' (it exports {found}); build it with the wafer-guest SDK"))
}

/// Publish-time checks of what the component says about itself.
pub(crate) fn check_descriptor(d: &Descriptor) -> Result<(), String> {
    if d.outputs.is_empty() {
        return Err("describe lists no outputs".into());
    }
    for o in &d.outputs {
        validate_name("output", &o.name)?;
    }
    unique("output", d.outputs.iter().map(|f| f.name.as_str()))?;
    if d.inputs.iter().any(|f| f.name.trim().is_empty()) {
        return Err("describe lists an input with an empty name".into());
    }
    unique("input", d.inputs.iter().map(|f| f.name.as_str()))?;
    if d.kind == TransformKind::Batch && !d.request_fields.is_empty() {
        return Err("a batch transform cannot declare request fields".into());
    }
    for f in &d.request_fields {
        validate_name("request field", &f.name)?;
    }
    unique("request field", d.request_fields.iter().map(|f| f.name.as_str()))?;
    for p in &d.params {
        validate_name("param", &p.name)?;
    }
    unique("param", d.params.iter().map(|p| p.name.as_str()))?;
    if d.kind == TransformKind::OnDemand && !d.related.is_empty() {
        return Err("an on-demand transform cannot declare related series".into());
    }
    unique("related series", d.related.iter().map(|r| r.name.as_str()))?;
    for r in &d.related {
        if !d.params.iter().any(|p| p.name == r.entity_param) {
            return Err(format!(
                "related series '{}' reads its entity from param '{}', which is not declared",
                r.name, r.entity_param
            ));
        }
    }
    Ok(())
}

fn unique<'a>(what: &str, names: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let mut seen = HashSet::new();
    match names.into_iter().find(|n| !seen.insert(*n)) {
        None => Ok(()),
        Some(dup) => Err(format!("describe lists {what} '{dup}' twice")),
    }
}

/// Output must have the shape the transform promised: rows consistent
/// (batch: one value per timestamp; on-demand: `expected_rows`, one per
/// input row), within the row limit, and only declared outputs of their
/// declared types.
pub(crate) fn check_output(
    descriptor: &Descriptor,
    table: &Table,
    expected_rows: Option<usize>,
    limits: &Limits,
) -> Result<(), String> {
    let rows = match expected_rows {
        None => {
            table.check_shape()?;
            table.rows()
        }
        // On-demand timestamps are ignored (the host stamps request time).
        Some(rows) => {
            if let Some(c) = table.columns.iter().find(|c| c.len() != rows) {
                return Err(format!("column '{}' has {} rows, expected one per input row ({rows})", c.name, c.len()));
            }
            rows
        }
    };
    if rows > limits.output_rows {
        return Err(format!("{rows} rows, over the limit of {}", limits.output_rows));
    }
    unique("output column", table.columns.iter().map(|c| c.name.as_str()))
        .map_err(|_| "the same column appears twice".to_string())?;
    for c in &table.columns {
        match descriptor.output(&c.name) {
            None => return Err(format!("column '{}' is not a declared output", c.name)),
            Some(o) if o.value_type != c.values.value_type() => {
                return Err(format!(
                    "column '{}' has type {} but is declared {}",
                    c.name,
                    c.values.value_type(),
                    o.value_type
                ));
            }
            Some(_) => {}
        }
        if c.nulls.iter().any(|&i| i as usize >= rows) || c.nulls.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("column '{}' lists null rows out of range or out of order", c.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Column, ColumnValues, FieldSpec, ParamSpec, RelatedSeries, ValueType};

    #[test]
    fn only_component_binaries_pass_the_header_check() {
        assert_eq!(check_binary(b"\0asm\x0d\0\x01\0"), Ok(()));
        assert!(check_binary(b"\0asm\x01\0\0\0").unwrap_err().contains("core WebAssembly module, not a component"));
        assert!(check_binary(b"\0asm\x01\0").unwrap_err().contains("unknown version"));
        assert!(check_binary(b"PK\x03\x04zip").unwrap_err().contains("[50, 4b, 03, 04]"));
        assert!(check_binary(b"").unwrap_err().starts_with("not a WebAssembly binary"));
    }

    #[test]
    fn only_sandbox_imports_are_allowed() {
        let ok = ["wasi:cli/stdout@0.2.6", "wasi:io/streams@0.2.6", "wasi:clocks/monotonic-clock@0.2.6"];
        assert_eq!(
            check_imports(ok.into_iter().chain(["wasi:random/random@0.2.6", "wasi:filesystem/types@0.2.6"])),
            Ok(())
        );
        assert_eq!(check_imports(["wafer:transform/log@0.1.0", "wafer:transform/types@0.1.0"]), Ok(()));
        for bad in [
            "wasi:sockets/tcp@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
            "wafer:transform/log@0.2.0",
            "wafer:transform/transform@0.1.0",
            "acme:secrets/vault",
            "wasi:clis/evil",
        ] {
            let err = check_imports(["wasi:io/streams@0.2.6", bad]).unwrap_err();
            assert!(err.starts_with(&format!("imports '{bad}'")), "{err}");
        }
    }

    #[test]
    fn a_component_must_export_the_transform_interface_at_our_version() {
        assert_eq!(check_exports(["wafer:transform/transform@0.1.0"]), Ok(()));
        let err = check_exports(["wafer:transform/transform@0.2.0"]).unwrap_err();
        assert!(err.contains("it exports wafer:transform/transform@0.2.0"), "{err}");
        assert!(check_exports([]).unwrap_err().contains("it exports nothing"));
    }

    fn field(name: &str) -> FieldSpec {
        FieldSpec { name: name.into(), value_type: ValueType::Float64, description: String::new() }
    }

    fn descriptor() -> Descriptor {
        Descriptor {
            kind: TransformKind::Batch,
            inputs: vec![field("close")],
            request_fields: vec![],
            outputs: vec![field("sma_20"), field("rsi_14")],
            params: vec![ParamSpec {
                name: "benchmark".into(),
                value_type: ValueType::String,
                default: None,
                description: String::new(),
            }],
            min_history: 20,
            related: vec![RelatedSeries {
                name: "bench".into(),
                source: "prices".into(),
                entity_param: "benchmark".into(),
            }],
            description: String::new(),
        }
    }

    #[test]
    fn descriptors_must_name_their_outputs_once_each_with_valid_names() {
        assert_eq!(check_descriptor(&descriptor()), Ok(()));
        let mut d = descriptor();
        d.outputs.push(field("sma_20"));
        assert_eq!(check_descriptor(&d).unwrap_err(), "describe lists output 'sma_20' twice");
        d.outputs = vec![];
        assert_eq!(check_descriptor(&d).unwrap_err(), "describe lists no outputs");
        d.outputs = vec![field("sma 20")];
        assert!(check_descriptor(&d).unwrap_err().contains("output name 'sma 20' is invalid"));
    }

    #[test]
    fn descriptors_must_be_consistent_with_their_kind_and_params() {
        let mut d = descriptor();
        d.params.push(d.params[0].clone());
        assert_eq!(check_descriptor(&d).unwrap_err(), "describe lists param 'benchmark' twice");
        let mut d = descriptor();
        d.related[0].entity_param = "nope".into();
        assert!(check_descriptor(&d).unwrap_err().contains("param 'nope', which is not declared"));
        let mut d = descriptor();
        d.request_fields.push(field("qty"));
        assert!(check_descriptor(&d).unwrap_err().contains("batch transform cannot declare request fields"));
        let mut d = descriptor();
        d.kind = TransformKind::OnDemand;
        assert!(check_descriptor(&d).unwrap_err().contains("cannot declare related series"));
        d.related.clear();
        d.inputs = vec![field("technical:sma_20"), field("technical:sma_20")];
        assert_eq!(check_descriptor(&d).unwrap_err(), "describe lists input 'technical:sma_20' twice");
    }

    fn column(name: &str, values: ColumnValues) -> Column {
        Column { name: name.into(), values, nulls: vec![] }
    }

    #[test]
    fn output_must_match_the_declared_outputs_and_the_row_count() {
        let limits = Limits::default();
        let d = descriptor();
        let ok =
            Table { timestamps: vec![1, 2], columns: vec![column("sma_20", ColumnValues::Float64(vec![1.0, 2.0]))] };
        assert_eq!(check_output(&d, &ok, None, &limits), Ok(()));

        let long = Table { timestamps: vec![1], ..ok.clone() };
        assert!(check_output(&d, &long, None, &limits).unwrap_err().contains("has 2 rows, expected 1"));
        assert!(check_output(&d, &ok, Some(3), &limits).unwrap_err().contains("expected one per input row (3)"));

        let undeclared = Table { columns: vec![column("x", ColumnValues::Float64(vec![1.0, 2.0]))], ..ok.clone() };
        assert_eq!(check_output(&d, &undeclared, None, &limits).unwrap_err(), "column 'x' is not a declared output");

        let mistyped = Table { columns: vec![column("sma_20", ColumnValues::Int64(vec![1, 2]))], ..ok.clone() };
        assert!(check_output(&d, &mistyped, None, &limits).unwrap_err().contains("has type int64"));

        let twice = Table { columns: vec![ok.columns[0].clone(), ok.columns[0].clone()], ..ok.clone() };
        assert!(check_output(&d, &twice, None, &limits).unwrap_err().contains("twice"));

        let small = Limits { output_rows: 1, ..Limits::default() };
        assert_eq!(check_output(&d, &ok, None, &small).unwrap_err(), "2 rows, over the limit of 1");

        let mut bad_nulls = ok.clone();
        bad_nulls.columns[0].nulls = vec![1, 0];
        assert!(check_output(&d, &bad_nulls, Some(2), &limits).unwrap_err().contains("out of order"));
    }
}
