//! The document's rules, checked over the whole of it, the `enrich` and
//! `feast` parts included. Each failure names the path and method (or the
//! schema) it is about; each test reports every failure at once.

use super::check::{Direction, resolve, violations};
use super::common::{ERROR_CODES, METHODS};
use super::{document, parts};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every operation: (path, method, operation, path item).
fn operations(doc: &Value) -> Vec<(String, String, Value, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item is an object") {
            if METHODS.contains(&method.as_str()) {
                out.push((path.clone(), method.clone(), op.clone(), item.clone()));
            }
        }
    }
    out
}

/// `{"$ref": ...}` resolved, anything else as it is.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(doc, r).unwrap_or(&Value::Null),
        None => v,
    }
}

/// A media type's example: its own `example`, the first of its `examples`,
/// or the `example` of the component its schema refers to.
fn example_of<'a>(doc: &'a Value, media: &'a Value) -> Option<&'a Value> {
    media
        .get("example")
        .or_else(|| media["examples"].as_object().and_then(|e| e.values().find_map(|x| x.get("value"))))
        .or_else(|| deref(doc, &media["schema"]).get("example"))
}

fn is_json(media_type: &str) -> bool {
    media_type == "application/json" || media_type.ends_with("+json")
}

/// Checks each media type of a body or answer: a schema, an example, and
/// the example conforming to the schema (JSON) or being text (other types).
fn check_content(doc: &Value, content: &Value, direction: Direction, at: &str, failures: &mut Vec<String>) {
    let Some(media_types) = content.as_object().filter(|m| !m.is_empty()) else {
        failures.push(format!("{at}: no content"));
        return;
    };
    for (media_type, media) in media_types {
        let at = format!("{at} {media_type}");
        let Some(schema) = media.get("schema") else {
            failures.push(format!("{at}: no schema"));
            continue;
        };
        match example_of(doc, media) {
            None => failures.push(format!("{at}: no example")),
            Some(example) if is_json(media_type) => {
                for v in violations(doc, schema, example, direction) {
                    failures.push(format!("{at}: the example does not fit the schema: {v}"));
                }
            }
            Some(example) if !example.is_string() => failures.push(format!("{at}: a non-JSON example must be text")),
            Some(_) => {}
        }
    }
}

fn assert_none(failures: Vec<String>, what: &str) {
    assert!(failures.is_empty(), "{what}:\n  {}", failures.join("\n  "));
}

#[test]
fn every_operation_has_a_summary_and_responses_and_every_body_and_answer_a_schema_and_a_fitting_example() {
    let doc = document();
    let mut failures = Vec::new();
    for (path, method, op, _) in operations(&doc) {
        let at = format!("{} {path}", method.to_uppercase());
        if op["summary"].as_str().is_none_or(|s| s.trim().is_empty()) {
            failures.push(format!("{at}: no summary"));
        }
        let Some(responses) = op["responses"].as_object().filter(|r| !r.is_empty()) else {
            failures.push(format!("{at}: no responses"));
            continue;
        };
        if let Some(body) = op.get("requestBody") {
            check_content(
                &doc,
                &deref(&doc, body)["content"],
                Direction::Request,
                &format!("{at} request body"),
                &mut failures,
            );
        }
        for (status, response) in responses {
            let response = deref(&doc, response);
            if response["description"].as_str().is_none() {
                failures.push(format!("{at} {status}: no description"));
            }
            if !status.starts_with('2') {
                continue;
            }
            if status == "204" {
                if response.get("content").is_some() {
                    failures.push(format!("{at} 204: a 204 answer has no content"));
                }
                continue;
            }
            check_content(&doc, &response["content"], Direction::Response, &format!("{at} {status}"), &mut failures);
        }
    }
    assert_none(failures, "operations break the document's rules");
}

/// Every error answer is JSON; the `4XX` and `5XX` ranges every operation
/// has are the envelope (the Feast endpoints: Feast's error detail or the
/// envelope), and an operation with path or query parameters documents its
/// `400` as the envelope. (A specific status may have its own shape, as
/// `/readyz`'s 503 does.)
#[test]
fn every_error_answer_is_json_and_operations_with_parameters_document_the_400_envelope() {
    let doc = document();
    let envelope = json!({"$ref": "#/components/schemas/Error"});
    let mut failures = Vec::new();
    let mut with_parameters = 0;
    for (path, method, op, item) in operations(&doc) {
        let at = format!("{} {path}", method.to_uppercase());
        let responses = op["responses"].as_object().cloned().unwrap_or_default();
        for range in ["4XX", "5XX"] {
            if !responses.contains_key(range) {
                failures.push(format!("{at}: no {range} answer"));
            }
        }
        for (status, response) in &responses {
            if !(status.starts_with('4') || status.starts_with('5')) {
                continue;
            }
            let content = &deref(&doc, response)["content"];
            let types: Vec<&String> = content.as_object().map(|m| m.keys().collect()).unwrap_or_default();
            if types != ["application/json"] {
                failures.push(format!("{at} {status}: answered as {types:?}, not application/json alone"));
            }
            if !(status.ends_with("XX") || status == "400") {
                continue;
            }
            let schema = &content["application/json"]["schema"];
            let is_envelope = *schema == envelope
                || schema["oneOf"].as_array().is_some_and(|alternatives| alternatives.contains(&envelope));
            if !is_envelope {
                failures.push(format!("{at} {status}: the schema {schema} is not (or does not allow) the envelope"));
            }
        }
        let takes_parameters = item["parameters"]
            .as_array()
            .into_iter()
            .chain(op["parameters"].as_array())
            .flatten()
            .any(|p| matches!(deref(&doc, p)["in"].as_str(), Some("path" | "query")));
        if takes_parameters {
            with_parameters += 1;
            let answer = &op["responses"]["400"]["content"]["application/json"]["schema"];
            if *answer != envelope {
                failures.push(format!("{at}: takes path or query parameters but documents no 400 envelope"));
            }
        }
    }
    assert_none(failures, "error answers");
    assert!(with_parameters >= 20, "only {with_parameters} operations with parameters: the scan is broken");
}

#[test]
fn every_ref_resolves_to_an_existing_component() {
    fn walk(doc: &Value, v: &Value, at: &str, failures: &mut Vec<String>, count: &mut usize) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    if k == "$ref" {
                        *count += 1;
                        let target = child.as_str().and_then(|r| resolve(doc, r));
                        if target.is_none_or(|t| !t.is_object()) {
                            failures.push(format!("{at}: $ref {child} does not resolve"));
                        }
                    } else {
                        walk(doc, child, &format!("{at}/{k}"), failures, count);
                    }
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(doc, child, &format!("{at}/{i}"), failures, count);
                }
            }
            _ => {}
        }
    }
    let doc = document();
    let (mut failures, mut count) = (Vec::new(), 0);
    walk(&doc, &doc, "#", &mut failures, &mut count);
    assert_none(failures, "dangling $refs");
    assert!(count > 50, "only {count} $refs: the walk missed the document");
}

#[test]
fn every_path_parameter_is_declared_with_a_schema() {
    let doc = document();
    let mut failures = Vec::new();
    for (path, method, op, item) in operations(&doc) {
        let at = format!("{} {path}", method.to_uppercase());
        let in_path: BTreeSet<String> =
            path.split('{').skip(1).filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string())).collect();
        let params: Vec<&Value> = item["parameters"]
            .as_array()
            .into_iter()
            .chain(op["parameters"].as_array())
            .flatten()
            .map(|p| deref(&doc, p))
            .collect();
        let declared: BTreeSet<String> =
            params.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).map(String::from).collect();
        for name in in_path.difference(&declared) {
            failures.push(format!("{at}: path parameter {{{name}}} is not declared"));
        }
        for name in declared.difference(&in_path) {
            failures.push(format!("{at}: declares path parameter {name}, which the path does not have"));
        }
        for p in &params {
            let name = p["name"].as_str().unwrap_or("?");
            if p["in"] == "path" && p["required"] != json!(true) {
                failures.push(format!("{at}: path parameter {name} is not required: true"));
            }
            match p.get("schema") {
                None => failures.push(format!("{at}: parameter {name} has no schema")),
                Some(schema) => {
                    for example in p.get("example").into_iter().chain(schema.get("example")) {
                        for v in violations(&doc, schema, example, Direction::Request) {
                            failures.push(format!("{at}: parameter {name}'s example does not fit: {v}"));
                        }
                    }
                }
            }
        }
    }
    assert_none(failures, "path parameters");
}

#[test]
fn component_examples_fit_their_schemas() {
    let doc = document();
    let mut failures = Vec::new();
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        if let Some(example) = schema.get("example") {
            for v in violations(&doc, schema, example, Direction::Response) {
                failures.push(format!("components.schemas.{name}: {v}"));
            }
        }
    }
    assert_none(failures, "component examples");
}

#[test]
fn no_part_documents_a_path_or_a_schema_twice() {
    let (mut paths, mut schemas) = (BTreeMap::new(), BTreeMap::new());
    for (p, s) in parts() {
        for (path, _) in p {
            *paths.entry(path).or_insert(0) += 1;
        }
        for (name, _) in s {
            *schemas.entry(name).or_insert(0) += 1;
        }
    }
    let twice: Vec<String> = paths
        .iter()
        .chain(schemas.iter())
        .filter(|(_, n)| **n > 1)
        .map(|(name, n)| format!("{name} ({n} times): the later one replaces the earlier"))
        .collect();
    assert_none(twice, "documented more than once");
}

#[test]
fn operation_ids_are_unique() {
    let doc = document();
    let mut seen = BTreeMap::new();
    for (path, method, op, _) in operations(&doc) {
        if let Some(id) = op["operationId"].as_str() {
            seen.entry(id.to_string()).or_insert_with(Vec::new).push(format!("{} {path}", method.to_uppercase()));
        }
    }
    let twice: Vec<String> = seen
        .into_iter()
        .filter(|(_, ops)| ops.len() > 1)
        .map(|(id, ops)| format!("{id}: {}", ops.join(", ")))
        .collect();
    assert_none(twice, "operationIds used more than once");
}

/// The `.rs` files under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

fn api_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join("api")
}

/// The string literal at the start of `text` (after blanks), if any.
fn leading_literal(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix('"')?;
    rest.split_once('"').map(|(literal, _)| literal)
}

/// `(path, method)` of every `.route("...", get(..).post(..))` in `source`.
fn routes_in(source: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (start, _) in source.match_indices(".route(") {
        let call = &source[start + ".route(".len()..];
        // The call's arguments: up to its closing parenthesis.
        let mut depth = 1;
        let end = call
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map_or(call.len(), |(i, _)| i);
        let args = &call[..end];
        let Some(path) = leading_literal(args) else { continue };
        for method in ["get", "post", "put", "delete", "patch", "head", "options"] {
            let called = args
                .match_indices(&format!("{method}("))
                .any(|(i, _)| !args[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_'));
            if called {
                out.push((path.to_string(), method.to_string()));
            }
        }
    }
    out
}

#[test]
fn every_route_the_routers_serve_is_documented() {
    let doc = document();
    let mut routes = Vec::new();
    // This file's own examples of routes are no routes.
    for file in rust_files(&api_dir()).into_iter().filter(|f| !f.ends_with("openapi/tests.rs")) {
        let source = std::fs::read_to_string(&file).expect("reading an api source file");
        routes.extend(routes_in(&source).into_iter().map(|r| (r, file.clone())));
    }
    assert!(routes.len() >= 40, "found only {} routes: the scan of src/api is broken", routes.len());
    let missing: Vec<String> = routes
        .iter()
        .filter(|((path, method), _)| doc["paths"][path.as_str()][method.as_str()].is_null())
        .map(|((path, method), file)| format!("{} {path} (routed in {})", method.to_uppercase(), file.display()))
        .collect();
    assert_none(missing, "routes served but not documented");
}

#[test]
fn the_route_scan_reads_chained_methods() {
    let source = r#"Router::new().route("/a/{name}", get(get_a).put(put_a)).route("/b", post(|| async { x() }))"#;
    let mut routes = routes_in(source);
    routes.sort();
    let expected = [("/a/{name}", "get"), ("/a/{name}", "put"), ("/b", "post")];
    assert_eq!(routes, expected.map(|(p, m)| (p.to_string(), m.to_string())));
}

/// Every error code the API can produce: the literals of `error.rs`'s
/// mapping arms (`status()` and the runtime errors' codes) and of every
/// `ApiError::new("...")` under `src/api`.
fn codes_in_the_source() -> BTreeSet<String> {
    let is_code = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    let mut codes = BTreeSet::new();
    let error_rs = std::fs::read_to_string(api_dir().join("error.rs")).expect("reading api/error.rs");
    for line in error_rs.lines().filter(|l| l.contains("=>")) {
        codes.extend(line.split('"').skip(1).step_by(2).filter(|s| is_code(s)).map(String::from));
    }
    for file in rust_files(&api_dir()) {
        if file.components().any(|c| c.as_os_str() == "openapi") {
            continue;
        }
        let source = std::fs::read_to_string(&file).expect("reading an api source file");
        for (i, _) in source.match_indices("ApiError::new(") {
            if let Some(code) = leading_literal(&source[i + "ApiError::new(".len()..]).filter(|s| is_code(s)) {
                codes.insert(code.to_string());
            }
        }
    }
    codes
}

#[test]
fn the_error_code_enum_lists_every_code_the_api_produces_and_no_other() {
    let doc = document();
    let documented: BTreeSet<String> =
        doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
            .as_array()
            .expect("the Error schema's code enum")
            .iter()
            .map(|c| c.as_str().expect("codes are strings").to_string())
            .collect();
    let produced = codes_in_the_source();
    assert!(produced.len() >= 15, "found only {produced:?}: the scan of src/api is broken");
    for code in ["unauthorized", "forbidden", "invalid_json", "unsupported_media_type", "internal"] {
        assert!(produced.contains(code), "the scan missed {code}");
    }
    let undocumented: Vec<_> = produced.difference(&documented).collect();
    assert!(undocumented.is_empty(), "codes the API produces but the Error schema does not list: {undocumented:?}");
    let stale: Vec<_> = documented.difference(&produced).collect();
    assert!(stale.is_empty(), "codes the Error schema lists but nothing produces: {stale:?}");
    assert_eq!(documented.len(), ERROR_CODES.len(), "ERROR_CODES lists a code twice");
}

#[test]
fn each_operation_names_the_role_the_auth_middleware_requires() {
    let doc = document();
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    assert_eq!(op("/healthz", "get")["security"], json!([]));
    assert_eq!(op("/openapi.json", "get")["security"], json!([]));
    assert_eq!(op("/v1/audit", "get")["x-wafer-role"], "admin");
    assert_eq!(op("/v1/features/online", "post")["x-wafer-role"], "read");
    assert_eq!(op("/v1/sources/{name}/rows", "post")["x-wafer-role"], "write");
    assert_eq!(op("/v1/entities/{name}", "put")["x-wafer-role"], "admin");
    assert_eq!(op("/v1/entities/{name}", "put")["security"], json!([{"bearer": []}]));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

/// The examples are what the server sends and reads: the component
/// examples of types that derive serde read back as the real types and
/// write out exactly as given (so a renamed or skipped field shows), and
/// the request examples parse as the request types.
mod real_shapes {
    use super::*;
    use crate::model::registry::FreshnessStatus;
    use crate::model::{
        Entity, FeatureGroup, Freshness, Job, LimitOverrides, Producer, Provenance, ShadowSpec, Source,
    };
    use crate::model::{FeatureSpec, FeatureStatistics, FreshnessCounts, Timestamp, Value as FeatureValue};
    use crate::service::breaker::{BreakerState, BreakerStatus};
    use crate::service::materialize::MaterializeRequest;
    use crate::service::monitoring::{GroupFreshness, GroupStatistics};
    use crate::service::serving::{OnlineRequest, ServedValue, ValueSource};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    fn component_example(name: &str) -> Value {
        document()["components"]["schemas"][name]["example"].clone()
    }

    fn request_example(path: &str, method: &str) -> Value {
        document()["paths"][path][method]["requestBody"]["content"]["application/json"]["example"].clone()
    }

    /// Reads `example` as `T` and writes it back; registry objects take
    /// their name from the path, so it is set apart.
    fn round_trip<T: DeserializeOwned + Serialize>(example: &Value, name: Option<fn(&mut T, String)>) -> Value {
        let mut sent = example.clone();
        let given = sent.as_object_mut().and_then(|o| o.remove("name")).filter(|_| name.is_some());
        let mut parsed: T = serde_json::from_value(if name.is_some() { sent } else { example.clone() })
            .unwrap_or_else(|e| panic!("the example {example} does not read as the real type: {e}"));
        if let (Some(set), Some(Value::String(n))) = (name, given) {
            set(&mut parsed, n);
        }
        serde_json::to_value(parsed).expect("serializing")
    }

    #[test]
    fn registry_examples_are_what_the_server_answers() {
        let entity = component_example("Entity");
        assert_eq!(round_trip::<Entity>(&entity, Some(|e, n| e.name = n)), entity);
        let source = component_example("Source");
        assert_eq!(round_trip::<Source>(&source, Some(|s, n| s.name = n)), source);
        let group = component_example("FeatureGroup");
        assert_eq!(round_trip::<FeatureGroup>(&group, Some(|g, n| g.name = n)), group);
        for name in ["Producer", "PushProducer", "BatchProducer", "OnDemandProducer"] {
            let example = component_example(name);
            assert_eq!(round_trip::<Producer>(&example, None), example, "{name}");
        }
        let freshness = component_example("Freshness");
        assert_eq!(round_trip::<Freshness>(&freshness, None), freshness);
        let field = component_example("Field");
        assert_eq!(round_trip::<FeatureSpec>(&field, None), field);
    }

    #[test]
    fn job_transform_and_provenance_examples_are_what_the_server_answers() {
        let job = component_example("Job");
        assert_eq!(round_trip::<Job>(&job, None), job);
        for job in component_example("JobList")["jobs"].as_array().expect("jobs") {
            assert_eq!(&round_trip::<Job>(job, None), job);
        }
        let provenance = component_example("Provenance");
        assert_eq!(round_trip::<Provenance>(&provenance, None), provenance);
        let limits = component_example("LimitOverrides");
        assert_eq!(round_trip::<LimitOverrides>(&limits, None), limits);
        let shadow = component_example("ShadowSpec");
        assert_eq!(round_trip::<ShadowSpec>(&shadow, None), shadow);
    }

    #[test]
    fn serving_and_monitoring_examples_are_what_the_server_answers() {
        let ts = |s: &str| Some(Timestamp::parse(s).expect("timestamp"));
        let served = ServedValue {
            value: FeatureValue::Float64(189.21),
            status: FreshnessStatus::Fresh,
            event_timestamp: ts("2024-05-01T00:00:00Z"),
            age_seconds: Some(812.4),
            source: Some(ValueSource::Online),
        };
        assert_eq!(serde_json::to_value(&served).unwrap(), component_example("ServedValue"));
        let missing = ServedValue {
            value: FeatureValue::Null,
            status: FreshnessStatus::Missing,
            event_timestamp: None,
            age_seconds: None,
            source: None,
        };
        let result = &component_example("EntityResult");
        assert_eq!(serde_json::to_value(&missing).unwrap(), result["features"]["technical:rsi_14"]);

        let counts = FreshnessCounts {
            entities: 3,
            fresh: 2,
            stale: 1,
            expired: 0,
            newest_event_timestamp: ts("2024-05-01T12:00:00Z"),
            oldest_event_timestamp: ts("2024-05-01T10:30:00Z"),
        };
        let group = GroupFreshness {
            feature_group: "technical".into(),
            expected_interval_seconds: Some(3600),
            max_age_seconds: Some(7200),
            counts,
        };
        assert_eq!(serde_json::to_value(&group).unwrap(), component_example("GroupFreshness"));

        let stats = FeatureStatistics {
            count: 466,
            nulls: 38,
            mean: Some(181.2),
            std: Some(9.8),
            min: Some(160.1),
            max: Some(199.7),
            p50: Some(180.9),
            p95: Some(196.3),
        };
        assert_eq!(serde_json::to_value(&stats).unwrap(), component_example("FeatureStatistics"));
        let all =
            GroupStatistics { feature_group: "technical".into(), rows: 504, features: vec![("sma_20".into(), stats)] };
        assert_eq!(serde_json::to_value(&all).unwrap(), component_example("GroupStatistics"));

        let breaker = BreakerStatus {
            state: BreakerState::Open,
            consecutive_failures: 5,
            threshold: 5,
            times_opened: 1,
            opened_at: ts("2024-05-01T12:00:00Z"),
            retry_at: ts("2024-05-01T12:00:30Z"),
            last_error: Some("transform trapped: unreachable".into()),
        };
        assert_eq!(serde_json::to_value(&breaker).unwrap(), component_example("BreakerStatus"));
    }

    #[test]
    fn request_examples_parse_as_the_request_types() {
        let parse = |what: &str, example: Value, ok: &dyn Fn(&Value) -> Result<(), String>| {
            assert!(!example.is_null(), "{what}: no example");
            ok(&example).unwrap_or_else(|e| panic!("{what}: {example} does not parse: {e}"));
        };
        fn as_type<T: DeserializeOwned>(v: &Value) -> Result<(), String> {
            serde_json::from_value::<T>(v.clone()).map(drop).map_err(|e| e.to_string())
        }
        parse("PUT entity", request_example("/v1/entities/{name}", "put"), &as_type::<Entity>);
        parse("PUT source", request_example("/v1/sources/{name}", "put"), &as_type::<Source>);
        parse("PUT feature group", request_example("/v1/feature-groups/{name}", "put"), &as_type::<FeatureGroup>);
        parse("online read", request_example("/v1/features/online", "post"), &as_type::<OnlineRequest>);
        parse("OnlineRequest", component_example("OnlineRequest"), &as_type::<OnlineRequest>);
        parse("materialize", request_example("/v1/materialize", "post"), &as_type::<MaterializeRequest>);
        parse("MaterializeRequest", component_example("MaterializeRequest"), &as_type::<MaterializeRequest>);
        parse("limits", request_example("/v1/transforms/{name}/limits", "put"), &as_type::<LimitOverrides>);
        let rows = request_example("/v1/features/write", "post")["rows"].clone();
        parse("feature write rows", rows, &as_type::<Vec<crate::service::ingest::FeatureWriteRow>>);
    }
}

/// The checker the rules rely on must catch what it is there to catch.
#[test]
fn the_checker_catches_undocumented_missing_and_mistyped_fields() {
    let doc = document();
    let entity = json!({"$ref": "#/components/schemas/Entity"});
    let good = json!({"name": "ticker", "join_keys": ["ticker"], "description": ""});
    assert_eq!(violations(&doc, &entity, &good, Direction::Response), Vec::<String>::new());
    let found = |value: Value, direction| violations(&doc, &entity, &value, direction).join("; ");
    assert!(
        found(json!({"name": "t", "join_keys": ["t"], "extra": 1}), Direction::Response)
            .contains("$.extra: not a documented property")
    );
    assert!(found(json!({"name": "t"}), Direction::Response).contains("required property \"join_keys\""));
    assert!(found(json!({"name": "t", "join_keys": "t"}), Direction::Response).contains("$.join_keys: expected array"));
    assert!(found(json!({"name": "t", "join_keys": ["t"]}), Direction::Request).contains("$.name: is read-only"));
    assert!(found(json!({"join_keys": ["t"]}), Direction::Request).is_empty(), "name is not required in a request");

    let producer = json!({"$ref": "#/components/schemas/Producer"});
    let bad_kind = violations(&doc, &producer, &json!({"kind": "stream", "transform": "x"}), Direction::Request);
    assert!(bad_kind.iter().any(|v| v.contains("matches none of oneOf")), "{bad_kind:?}");
    let served = json!({"$ref": "#/components/schemas/ServedValue"});
    let bad =
        json!({"value": 1.0, "status": "old", "event_timestamp": "yesterday", "age_seconds": null, "source": null});
    let problems = violations(&doc, &served, &bad, Direction::Response).join("; ");
    assert!(problems.contains("\"old\" is not one of"), "{problems}");
    assert!(problems.contains("not an RFC 3339 date-time"), "{problems}");
    let dangling = violations(&doc, &json!({"$ref": "#/components/schemas/Nope"}), &json!(1), Direction::Response);
    assert_eq!(dangling, vec!["$: $ref #/components/schemas/Nope does not resolve".to_string()]);
}
