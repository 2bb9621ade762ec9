//! What a component must be to be published, and what its output must be
//! to be accepted. Pure functions over names and model types, so every rule
//! is unit-tested without a component.

use super::bindings::{TRANSFORM_EXPORT, WAFER_IMPORTS};
use super::limits::Limits;
use crate::model::FieldSpec;
use crate::model::registry::validate_name;
use crate::model::{Column, ColumnValues, Descriptor, Table, TimeWindow, TransformKind};
use std::collections::HashSet;

// Caps on what `describe` may return, checked at publish. Fixed, not
// `Limits` a transform may override: a descriptor is kept in memory for
// every loaded version, stored in the registry and sent in every listing of
// transforms, so its size is the server's concern, not the transform's.
// Each is far beyond a real transform (`indicators`, the largest bundled
// one, declares 12 outputs described in a sentence each); a component past
// one is a bug or an attack, refused with a message naming the cap.

/// Entries in each list: inputs, outputs, params, request fields and
/// related series. Every output becomes a feature and a column of every
/// stored row; a thousand is already far past any real transform, and the
/// cap keeps the registry's per-version checks and listings small.
const MAX_DESCRIPTOR_ITEMS: usize = 1024;
/// Bytes of a name (output, input, param, request field, related series,
/// its source and entity param): the registry's own name rule
/// (`validate_name`: 1-64 ASCII characters), which outputs must meet to be
/// features. Checked by length first, so a megabyte name is reported by its
/// size and not echoed back whole.
const MAX_NAME_BYTES: usize = 64;
/// An on-demand transform's inputs are `group:feature` references, each
/// part a registry name: two names and the colon.
const MAX_FEATURE_REF_BYTES: usize = 2 * MAX_NAME_BYTES + 1;
/// Bytes of one description (the transform's own, each field's and
/// param's): a few paragraphs for registry users; a manual belongs in the
/// transform's repository.
const MAX_DESCRIPTION_BYTES: usize = 4 << 10;
/// The whole descriptor, by [`descriptor_bytes`]'s estimate. 1,024 outputs
/// with 64-byte names and a 100-byte description each come to about 200
/// KiB, so any transform within the other caps that describes itself
/// sensibly fits; a hundred loaded versions then hold at most ~25 MiB of
/// descriptors. Checked first: the estimate is one pass over lengths, so a
/// descriptor of 200,000 outputs is refused before any per-entry work.
const MAX_DESCRIPTOR_BYTES: usize = 256 << 10;
/// What [`descriptor_bytes`] counts for each entry besides its strings: its
/// type, and the keys and punctuation it is stored with as JSON (about
/// `{"name":"","type":"float64"}`).
const DESCRIPTOR_ITEM_BYTES: usize = 32;
/// How much of an over-long name an error message shows.
const SHOWN_NAME_BYTES: usize = 32;

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
    check_caps(d)?;
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

/// The descriptor caps, cheapest first: the size estimate, the list
/// lengths, then each name and description.
fn check_caps(d: &Descriptor) -> Result<(), String> {
    let bytes = descriptor_bytes(d);
    if bytes > MAX_DESCRIPTOR_BYTES {
        return Err(format!("describe is about {bytes} bytes, over the cap of {MAX_DESCRIPTOR_BYTES}"));
    }
    let counts = [
        ("inputs", d.inputs.len()),
        ("outputs", d.outputs.len()),
        ("params", d.params.len()),
        ("request fields", d.request_fields.len()),
        ("related series", d.related.len()),
    ];
    if let Some((what, n)) = counts.into_iter().find(|&(_, n)| n > MAX_DESCRIPTOR_ITEMS) {
        return Err(format!("describe lists {n} {what}, over the cap of {MAX_DESCRIPTOR_ITEMS}"));
    }
    if d.description.len() > MAX_DESCRIPTION_BYTES {
        return Err(format!(
            "the transform's description is {} bytes, over the cap of {MAX_DESCRIPTION_BYTES}",
            d.description.len()
        ));
    }
    let input_cap = match d.kind {
        TransformKind::Batch => MAX_NAME_BYTES,
        TransformKind::OnDemand => MAX_FEATURE_REF_BYTES,
    };
    let fields = [
        ("input", &d.inputs, input_cap),
        ("request field", &d.request_fields, MAX_NAME_BYTES),
        ("output", &d.outputs, MAX_NAME_BYTES),
    ];
    for (what, list, cap) in fields {
        for f in list {
            check_name_bytes(what, &f.name, cap)?;
            check_description_bytes(what, &f.name, &f.description)?;
        }
    }
    for p in &d.params {
        check_name_bytes("param", &p.name, MAX_NAME_BYTES)?;
        check_description_bytes("param", &p.name, &p.description)?;
    }
    for r in &d.related {
        check_name_bytes("related series", &r.name, MAX_NAME_BYTES)?;
        check_name_bytes("related series source", &r.source, MAX_NAME_BYTES)?;
        check_name_bytes("related series entity param", &r.entity_param, MAX_NAME_BYTES)?;
    }
    Ok(())
}

fn check_name_bytes(what: &str, name: &str, cap: usize) -> Result<(), String> {
    if name.len() <= cap {
        return Ok(());
    }
    let shown = &name[..name.floor_char_boundary(SHOWN_NAME_BYTES)];
    Err(format!("{what} name '{shown}…' is {} bytes, over the cap of {cap}", name.len()))
}

/// `name` is within its cap already, so the message shows it whole.
fn check_description_bytes(what: &str, name: &str, description: &str) -> Result<(), String> {
    if description.len() <= MAX_DESCRIPTION_BYTES {
        return Ok(());
    }
    Err(format!(
        "{what} '{name}' has a description of {} bytes, over the cap of {MAX_DESCRIPTION_BYTES}",
        description.len()
    ))
}

/// The host's estimate of a descriptor's size, the measure of
/// [`MAX_DESCRIPTOR_BYTES`]: the bytes of every string in it (names,
/// descriptions, param defaults, related series' sources and entity params)
/// plus [`DESCRIPTOR_ITEM_BYTES`] per input, output, param, request field
/// and related series. Like [`output_bytes`], a rule simple enough for an
/// author to predict, not the in-memory layout.
pub(crate) fn descriptor_bytes(d: &Descriptor) -> usize {
    let field = |f: &FieldSpec| DESCRIPTOR_ITEM_BYTES + f.name.len() + f.description.len();
    let fields: usize = d.inputs.iter().chain(&d.request_fields).chain(&d.outputs).map(field).sum();
    let params: usize = d
        .params
        .iter()
        .map(|p| DESCRIPTOR_ITEM_BYTES + p.name.len() + p.default.as_ref().map_or(0, String::len) + p.description.len())
        .sum();
    let related: usize =
        d.related.iter().map(|r| DESCRIPTOR_ITEM_BYTES + r.name.len() + r.source.len() + r.entity_param.len()).sum();
    d.description.len() + fields + params + related
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
/// input row), within the row and byte limits, only declared outputs of
/// their declared types, and every float finite.
///
/// NaN and infinity are refused rather than turned into nulls: JSON cannot
/// carry them, and a consumer reading a model feature cannot tell "not
/// computable" from a number that happens to be odd. A transform says
/// "missing" with a null (the SDK's `Column::float64` does this for it), so
/// a non-finite value is a bug worth failing loudly, naming where it is.
/// Rows listed as null are skipped: their value is a placeholder (the SDK
/// puts NaN there).
pub(crate) fn check_output(
    descriptor: &Descriptor,
    table: &Table,
    expected_rows: Option<usize>,
    limits: &Limits,
) -> Result<(), String> {
    let rows = match expected_rows {
        None => {
            table.check_shape()?;
            check_times(&table.timestamps, &limits.output_times)?;
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
    let bytes = output_bytes(table);
    if bytes > limits.output_bytes {
        return Err(format!("output is {bytes} bytes, over the limit of {}", limits.output_bytes));
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
        check_finite(c)?;
    }
    Ok(())
}

/// A batch output's timestamps are strictly ascending (the WIT contract's
/// order, which the SDK keeps but a hand-made component need not) and lie
/// in `window`. Out-of-order or repeated rows would be stored as
/// corrections of each other and served in the wrong order; a row far in
/// the future would be served `fresh` forever and hide every later write.
/// The error names the first offending row (0-based).
pub(crate) fn check_times(timestamps: &[i64], window: &TimeWindow) -> Result<(), String> {
    window.check_series(timestamps).map_err(|(_, message)| message)
}

/// The host's estimate of an output's size, the measure of
/// [`Limits::output_bytes`]: 8 bytes per timestamp and per numeric or
/// boolean cell, a string's length in bytes, and a list's elements summed by
/// the same rule. Null rows count like any other (their placeholders crossed
/// the boundary all the same). An estimate, not the in-memory layout: a rule
/// simple enough to document lets a transform author predict the limit.
pub(crate) fn output_bytes(table: &Table) -> usize {
    const CELL: usize = 8;
    let text = |v: &[String]| v.iter().map(String::len).sum::<usize>();
    let columns: usize = table
        .columns
        .iter()
        .map(|c| match &c.values {
            ColumnValues::Float64(v) => v.len() * CELL,
            ColumnValues::Int64(v) => v.len() * CELL,
            ColumnValues::Bool(v) => v.len() * CELL,
            ColumnValues::Text(v) => text(v),
            ColumnValues::Float64List(v) => v.iter().map(|l| l.len() * CELL).sum(),
            ColumnValues::TextList(v) => v.iter().map(|l| text(l)).sum(),
        })
        .sum();
    table.timestamps.len() * CELL + columns
}

/// Every float of a non-null row is finite (see [`check_output`] for why);
/// the error names the column, the row (0-based, as in `nulls`) and, in a
/// list, the element.
fn check_finite(c: &Column) -> Result<(), String> {
    let is_null = |row: usize| c.nulls.binary_search(&(row as u32)).is_ok();
    let problem = match &c.values {
        ColumnValues::Float64(v) => v
            .iter()
            .enumerate()
            .find(|(row, x)| !x.is_finite() && !is_null(*row))
            .map(|(row, x)| (format!("row {row}"), *x)),
        ColumnValues::Float64List(v) => v.iter().enumerate().filter(|(row, _)| !is_null(*row)).find_map(|(row, l)| {
            l.iter().position(|x| !x.is_finite()).map(|i| (format!("row {row} element {i}"), l[i]))
        }),
        _ => None,
    };
    match problem {
        None => Ok(()),
        Some((at, x)) => {
            let what = if x.is_nan() {
                "NaN"
            } else if x > 0.0 {
                "+infinity"
            } else {
                "-infinity"
            };
            Err(format!("column '{}' {at} is {what}; return null for a missing value", c.name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FieldSpec, ParamSpec, RelatedSeries, Timestamp, ValueType};

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

    fn on_demand() -> Descriptor {
        Descriptor {
            kind: TransformKind::OnDemand,
            inputs: vec![field("technical:sma_20")],
            related: vec![],
            ..descriptor()
        }
    }

    fn param(name: &str) -> ParamSpec {
        ParamSpec { name: name.into(), value_type: ValueType::Int64, default: None, description: String::new() }
    }

    fn fields(prefix: &str, n: usize) -> Vec<FieldSpec> {
        (0..n).map(|i| field(&format!("{prefix}{i}"))).collect()
    }

    /// What a cap test varies, and how a descriptor gets that much of it.
    type Case<T> = (&'static str, fn(T) -> Descriptor);

    /// `at` (a descriptor at a cap) passes; `over` (one past it) is refused
    /// with `message`.
    #[track_caller]
    fn at_and_over_the_cap(at: Descriptor, over: Descriptor, message: &str) {
        assert_eq!(check_descriptor(&at), Ok(()));
        assert_eq!(check_descriptor(&over).unwrap_err(), message);
    }

    #[test]
    fn descriptor_size_is_estimated_per_string_byte_and_entry() {
        let mut d = descriptor();
        d.description = "abc".into();
        d.params[0].default = Some("SPY".into());
        // description 3 + close 37 + sma_20 38 + rsi_14 38 + benchmark and
        // its default 44 + bench from prices by benchmark 52.
        assert_eq!(descriptor_bytes(&d), 212);
    }

    #[test]
    fn descriptors_over_256_kib_are_refused_first_with_their_estimated_size() {
        // A param default is a string like any other: it fills the descriptor
        // to the cap exactly.
        let mut at = descriptor();
        at.params[0].default = Some(String::new());
        at.params[0].default = Some("d".repeat(MAX_DESCRIPTOR_BYTES - descriptor_bytes(&at)));
        let mut over = at.clone();
        over.params[0].default.as_mut().unwrap().push('d');
        at_and_over_the_cap(at, over, "describe is about 262145 bytes, over the cap of 262144");

        // Before any other check: 200,000 outputs, all with one invalid name.
        let bloated = Descriptor { outputs: vec![field("not a name"); 200_000], ..descriptor() };
        let bytes = descriptor_bytes(&bloated);
        assert!(bytes > 200_000 * DESCRIPTOR_ITEM_BYTES, "{bytes}");
        assert_eq!(
            check_descriptor(&bloated).unwrap_err(),
            format!("describe is about {bytes} bytes, over the cap of 262144")
        );
    }

    #[test]
    fn descriptors_list_at_most_1024_of_each_kind_of_entry() {
        let cases: [Case<usize>; 5] = [
            ("inputs", |n| Descriptor { inputs: fields("in_", n), ..descriptor() }),
            ("outputs", |n| Descriptor { outputs: fields("out_", n), ..descriptor() }),
            ("params", |n| {
                let mut d = descriptor();
                d.params.extend((1..n).map(|i| param(&format!("p{i}"))));
                d
            }),
            ("request fields", |n| Descriptor { request_fields: fields("req_", n), ..on_demand() }),
            ("related series", |n| Descriptor {
                related: (0..n)
                    .map(|i| RelatedSeries {
                        name: format!("r{i}"),
                        source: "prices".into(),
                        entity_param: "benchmark".into(),
                    })
                    .collect(),
                ..descriptor()
            }),
        ];
        for (what, with) in cases {
            at_and_over_the_cap(with(1024), with(1025), &format!("describe lists 1025 {what}, over the cap of 1024"));
        }
    }

    #[test]
    fn names_are_at_most_64_bytes_and_on_demand_inputs_two_names_and_a_colon() {
        let name = |n: usize| "n".repeat(n);
        let over = |what: &str, n: usize, cap: usize| {
            format!("{what} name '{}…' is {n} bytes, over the cap of {cap}", "n".repeat(32))
        };
        let cases: [Case<String>; 6] = [
            ("output", |s| Descriptor { outputs: vec![field(&s)], ..descriptor() }),
            ("input", |s| Descriptor { inputs: vec![field(&s)], ..descriptor() }),
            ("param", |s| {
                let mut d = descriptor();
                d.params.push(param(&s));
                d
            }),
            ("request field", |s| Descriptor { request_fields: vec![field(&s)], ..on_demand() }),
            ("related series", |s| {
                let mut d = descriptor();
                d.related[0].name = s;
                d
            }),
            ("related series source", |s| {
                let mut d = descriptor();
                d.related[0].source = s;
                d
            }),
        ];
        for (what, with) in cases {
            at_and_over_the_cap(with(name(64)), with(name(65)), &over(what, 65, 64));
        }

        // The entity param is capped before it is looked up among the params.
        let mut at = descriptor();
        at.params[0].name = name(64);
        at.related[0].entity_param = name(64);
        let mut too_long = descriptor();
        too_long.related[0].entity_param = name(65);
        at_and_over_the_cap(at, too_long, &over("related series entity param", 65, 64));

        // An on-demand input is a `group:feature` reference of two names.
        let reference = |n: usize| format!("{}:{}", name(64), name(n - 65));
        at_and_over_the_cap(
            Descriptor { inputs: vec![field(&reference(129))], ..on_demand() },
            Descriptor { inputs: vec![field(&reference(130))], ..on_demand() },
            &over("input", 130, 129),
        );

        // A multi-byte name is shown cut at a character boundary.
        let err = check_descriptor(&Descriptor { outputs: vec![field(&"é".repeat(40))], ..descriptor() }).unwrap_err();
        assert_eq!(err, format!("output name '{}…' is 80 bytes, over the cap of 64", "é".repeat(16)));
        // Within the cap the registry's name rule still applies.
        let err = check_descriptor(&Descriptor { outputs: vec![field("9lives")], ..descriptor() }).unwrap_err();
        assert!(err.contains("output name '9lives' is invalid"), "{err}");
    }

    #[test]
    fn descriptions_are_at_most_4_kib() {
        let text = |n: usize| "d".repeat(n);
        at_and_over_the_cap(
            Descriptor { description: text(4096), ..descriptor() },
            Descriptor { description: text(4097), ..descriptor() },
            "the transform's description is 4097 bytes, over the cap of 4096",
        );
        let cases: [Case<usize>; 4] = [
            ("output 'sma_50'", |n| {
                let mut d = descriptor();
                d.outputs.push(FieldSpec { description: "d".repeat(n), ..field("sma_50") });
                d
            }),
            ("input 'open'", |n| {
                let mut d = descriptor();
                d.inputs.push(FieldSpec { description: "d".repeat(n), ..field("open") });
                d
            }),
            ("request field 'qty'", |n| Descriptor {
                request_fields: vec![FieldSpec { description: "d".repeat(n), ..field("qty") }],
                ..on_demand()
            }),
            ("param 'benchmark'", |n| {
                let mut d = descriptor();
                d.params[0].description = "d".repeat(n);
                d
            }),
        ];
        for (whose, with) in cases {
            let message = format!("{whose} has a description of 4097 bytes, over the cap of 4096");
            at_and_over_the_cap(with(4096), with(4097), &message);
        }
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

    fn floats(values: Vec<f64>, nulls: Vec<u32>) -> Table {
        let timestamps = (0..values.len() as i64).collect();
        Table {
            timestamps,
            columns: vec![Column { name: "sma_20".into(), values: ColumnValues::Float64(values), nulls }],
        }
    }

    #[test]
    fn nan_and_infinity_are_refused_naming_the_column_and_row() {
        let (d, limits) = (descriptor(), Limits::default());
        let check = |t: &Table| check_output(&d, t, None, &limits);
        assert_eq!(
            check(&floats(vec![1.0, 2.0, 3.0, f64::NAN], vec![])).unwrap_err(),
            "column 'sma_20' row 3 is NaN; return null for a missing value"
        );
        assert_eq!(
            check(&floats(vec![f64::INFINITY, 1.0], vec![])).unwrap_err(),
            "column 'sma_20' row 0 is +infinity; return null for a missing value"
        );
        assert!(check(&floats(vec![1.0, f64::NEG_INFINITY], vec![])).unwrap_err().contains("row 1 is -infinity"));
        // On-demand output is checked the same way.
        assert!(check_output(&d, &floats(vec![f64::NAN], vec![]), Some(1), &limits).unwrap_err().contains("NaN"));
    }

    #[test]
    fn a_non_finite_placeholder_in_a_null_row_is_fine() {
        // The SDK fills null rows with NaN; only the nulls list is read there.
        let (d, limits) = (descriptor(), Limits::default());
        let t = floats(vec![f64::NAN, 1.0, f64::INFINITY], vec![0, 2]);
        assert_eq!(check_output(&d, &t, None, &limits), Ok(()));
        let t = floats(vec![f64::NAN, 1.0, f64::INFINITY], vec![0]);
        assert!(check_output(&d, &t, None, &limits).unwrap_err().contains("row 2 is +infinity"));
    }

    #[test]
    fn non_finite_list_elements_are_refused_naming_the_element() {
        let mut d = descriptor();
        d.outputs.push(FieldSpec {
            name: "weights".into(),
            value_type: ValueType::Float64List,
            description: String::new(),
        });
        let list = |nulls| Table {
            timestamps: vec![1, 2],
            columns: vec![Column {
                name: "weights".into(),
                values: ColumnValues::Float64List(vec![vec![0.5, 0.5], vec![1.0, f64::NAN]]),
                nulls,
            }],
        };
        assert_eq!(
            check_output(&d, &list(vec![]), None, &Limits::default()).unwrap_err(),
            "column 'weights' row 1 element 1 is NaN; return null for a missing value"
        );
        assert_eq!(check_output(&d, &list(vec![1]), None, &Limits::default()), Ok(()));
    }

    #[test]
    fn batch_timestamps_must_ascend_strictly_and_lie_in_the_window() {
        let now = Timestamp::parse("2026-12-01T12:00:00Z").unwrap();
        let window = TimeWindow::until(now, std::time::Duration::from_secs(3600));
        let day = 86_400 * Timestamp::MICROS_PER_SECOND;
        let t0 = now.0 - 10 * day;
        assert_eq!(check_times(&[t0, t0 + day, now.0 + 3600 * Timestamp::MICROS_PER_SECOND], &window), Ok(()));
        let reversed = check_times(&[t0 + day, t0], &window).unwrap_err();
        assert!(
            reversed.starts_with(
                "row 1: timestamp 2026-11-21T12:00:00Z is before row 0's (2026-11-22T12:00:00Z); rows must be"
            ),
            "{reversed}"
        );
        let repeated = check_times(&[t0, t0 + day, t0 + day], &window).unwrap_err();
        assert!(repeated.starts_with("row 2: timestamp 2026-11-22T12:00:00Z repeats row 1's"), "{repeated}");
        let future = check_times(&[t0, now.0 + 3601 * Timestamp::MICROS_PER_SECOND], &window).unwrap_err();
        assert!(future.starts_with("row 1: timestamp 2026-12-01T13:00:01Z is after 2026-12-01T13:00:00Z"), "{future}");
        let max = check_times(&[t0, i64::MAX - 3], &window).unwrap_err();
        assert!(max.starts_with("row 1: timestamp 9223372036854775804 microseconds since the epoch is after"), "{max}");
        let min = check_times(&[i64::MIN + 3, t0], &window).unwrap_err();
        assert!(
            min.starts_with("row 0: timestamp -9223372036854775805 microseconds since the epoch is before year 1000"),
            "{min}"
        );
        // The same rule through check_output, which names the row.
        let d = descriptor();
        let limits = Limits { output_times: window, ..Limits::default() };
        let t =
            Table { timestamps: vec![t0, t0], columns: vec![column("sma_20", ColumnValues::Float64(vec![1.0, 2.0]))] };
        assert!(check_output(&d, &t, None, &limits).unwrap_err().contains("row 1: timestamp"));
        // On-demand timestamps are the host's to stamp: not checked.
        assert_eq!(check_output(&d, &t, Some(2), &limits), Ok(()));
    }

    #[test]
    fn output_size_is_estimated_per_cell_string_byte_and_list_element() {
        let t = Table {
            timestamps: vec![1, 2],
            columns: vec![
                column("a", ColumnValues::Float64(vec![1.0, 2.0])),
                column("b", ColumnValues::Int64(vec![1, 2])),
                column("c", ColumnValues::Bool(vec![true, false])),
                column("d", ColumnValues::Text(vec!["abc".into(), String::new()])),
                column("e", ColumnValues::Float64List(vec![vec![1.0; 3], vec![]])),
                column("f", ColumnValues::TextList(vec![vec!["xy".into(), "z".into()], vec!["".into()]])),
            ],
        };
        // timestamps 16 + a 16 + b 16 + c 16 + d 3 + e 24 + f 3.
        assert_eq!(output_bytes(&t), 94);
        assert_eq!(output_bytes(&Table::default()), 0);
    }

    #[test]
    fn output_over_the_byte_limit_is_refused_with_its_size_and_the_limit() {
        let d = descriptor();
        // 4 timestamps and 4 floats: 64 bytes.
        let t = floats(vec![1.0, 2.0, 3.0, 4.0], vec![]);
        assert_eq!(check_output(&d, &t, None, &Limits { output_bytes: 64, ..Limits::default() }), Ok(()));
        assert_eq!(
            check_output(&d, &t, None, &Limits { output_bytes: 63, ..Limits::default() }).unwrap_err(),
            "output is 64 bytes, over the limit of 63"
        );
        // On-demand timestamps are ignored but still count: they crossed over.
        let mut padded = floats(vec![1.0], vec![]);
        padded.timestamps = vec![0; 1000];
        let err = check_output(&d, &padded, Some(1), &Limits { output_bytes: 1024, ..Limits::default() }).unwrap_err();
        assert_eq!(err, "output is 8008 bytes, over the limit of 1024");
    }
}
