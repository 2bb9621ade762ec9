//! `wafer apply FILE.yaml`: the registry as code. The file declares
//! entities, sources and feature groups (each item a `name` plus the
//! fields `PUT /v1/{kind}/{name}` accepts) and which version of each
//! listed transform is active:
//!
//! ```yaml
//! entities:
//!   - name: ticker
//!     join_keys: [ticker]
//! sources:
//!   - name: prices
//!     entity: ticker
//!     timestamp_field: ts
//!     fields: [{name: close, type: float64}]
//! feature_groups:
//!   - name: technical
//!     entity: ticker
//!     features: [{name: sma_20, type: float64}]
//!     producer: {kind: batch, transform: indicators, version: 1.0.0, source: prices}
//! transforms:
//!   - name: indicators
//!     active: 1.0.0
//! ```
//!
//! Each declared object is read through the same model type the server
//! reads it with (so defaults are filled in the same way and unknown fields
//! are refused alike), then compared with the server's copy, read back
//! through that type too: only real differences show, field by field, and
//! only changed objects are written. Objects the server has and the file
//! does not are listed and left alone; nothing is ever deleted.
//!
//! Writes go in dependency order: entities, sources, transform
//! activations, feature groups. Activations come before the groups
//! because a group that follows a transform's active version is checked
//! against the version active when it is written.

use super::ApplyArgs;
use super::client::{Remote, segment};
use super::diff::{self, Change};
use crate::model::registry::validate_name;
use crate::model::{Entity, FeatureGroup, Source};
use anyhow::{Context, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

pub async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let declared = read_file(&args.file)?;
    let remote = Remote::new(&args.remote);
    let server = Current::fetch(&remote).await?;
    let plan = plan(&declared, &server)?;
    print!("{}", plan_text(&plan, &declared, &server));
    let counts = Counts::of(&plan);
    if args.dry_run {
        println!("dry run: {}; nothing was written", counts.text(true));
        return Ok(());
    }
    if counts.created + counts.changed == 0 {
        println!("nothing to apply: {}", counts.text(false));
        return Ok(());
    }
    execute(&remote, &plan).await?;
    println!("applied: {}", counts.text(false));
    Ok(())
}

/// The kinds of object a file declares, in the order they are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Entity,
    Source,
    Transform,
    FeatureGroup,
}

const KINDS: [Kind; 4] = [Kind::Entity, Kind::Source, Kind::Transform, Kind::FeatureGroup];

impl Kind {
    /// As printed, and as the file's list names it.
    fn label(self) -> &'static str {
        match self {
            Kind::Entity => "entity",
            Kind::Source => "source",
            Kind::Transform => "transform",
            Kind::FeatureGroup => "feature_group",
        }
    }

    fn list(self) -> &'static str {
        match self {
            Kind::Entity => "entities",
            Kind::Source => "sources",
            Kind::Transform => "transforms",
            Kind::FeatureGroup => "feature_groups",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::Entity => "/v1/entities",
            Kind::Source => "/v1/sources",
            Kind::Transform => "/v1/transforms",
            Kind::FeatureGroup => "/v1/feature-groups",
        }
    }
}

/// The file as written. Registry items stay YAML until their `name` is
/// taken out: the model types leave `name` to the URL.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    entities: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    sources: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    feature_groups: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    transforms: Vec<TransformDecl>,
}

/// `- name: indicators\n  active: 1.2.0`: the version to serve.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransformDecl {
    name: String,
    active: String,
}

/// One object of the file, as the API takes it.
#[derive(Debug, Clone, PartialEq)]
struct Declared {
    kind: Kind,
    name: String,
    /// The PUT body (registry objects) or the version to activate.
    body: Value,
}

/// A registry model type: read like the server reads it, and checked by
/// itself before anything is sent.
trait Definition: DeserializeOwned + serde::Serialize {
    fn set_name(&mut self, name: &str);
    fn validate(&self) -> Result<(), String>;
}

impl Definition for Entity {
    fn set_name(&mut self, name: &str) {
        self.name = name.to_string();
    }
    fn validate(&self) -> Result<(), String> {
        Entity::validate(self)
    }
}

impl Definition for Source {
    fn set_name(&mut self, name: &str) {
        self.name = name.to_string();
    }
    fn validate(&self) -> Result<(), String> {
        Source::validate(self)
    }
}

impl Definition for FeatureGroup {
    fn set_name(&mut self, name: &str) {
        self.name = name.to_string();
    }
    fn validate(&self) -> Result<(), String> {
        FeatureGroup::validate(self)
    }
}

fn read_file(path: &Path) -> anyhow::Result<Vec<Declared>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("{}", path.display()))
}

/// The file's objects in the order they are written, each read through
/// its model type.
fn parse(text: &str) -> anyhow::Result<Vec<Declared>> {
    // Errors in the file's structure come with their line and column; an
    // empty document reads as an empty file.
    let file: RegistryFile = serde_yaml_ng::from_str(text)?;
    let mut out = Vec::new();
    for (i, item) in file.entities.into_iter().enumerate() {
        out.push(definition::<Entity>(Kind::Entity, i, item)?);
    }
    for (i, item) in file.sources.into_iter().enumerate() {
        out.push(definition::<Source>(Kind::Source, i, item)?);
    }
    for t in file.transforms {
        validate_name("transform", &t.name).map_err(anyhow::Error::msg)?;
        out.push(Declared { kind: Kind::Transform, name: t.name, body: json!(t.active) });
    }
    for (i, item) in file.feature_groups.into_iter().enumerate() {
        out.push(definition::<FeatureGroup>(Kind::FeatureGroup, i, item)?);
    }
    if out.is_empty() {
        bail!("declares nothing: list entities, sources, feature_groups or transforms");
    }
    let mut seen = HashSet::new();
    for d in &out {
        if !seen.insert((d.kind, d.name.as_str())) {
            bail!("{} {} is declared twice", d.kind.label(), d.name);
        }
    }
    Ok(out)
}

/// Item `index` of a list: its `name`, and the rest read as `T`.
fn definition<T: Definition>(kind: Kind, index: usize, item: serde_yaml_ng::Value) -> anyhow::Result<Declared> {
    let at = format!("{}[{index}]", kind.list());
    let serde_yaml_ng::Value::Mapping(mut map) = item else {
        bail!("{at} must be a mapping with a name and the {} fields", kind.label());
    };
    let name = match map.remove("name") {
        Some(serde_yaml_ng::Value::String(name)) => name,
        Some(_) => bail!("{at}: name must be a string"),
        None => bail!("{at} has no name"),
    };
    let which = format!("{} {name}", kind.label());
    let mut object: T =
        serde_yaml_ng::from_value(serde_yaml_ng::Value::Mapping(map)).with_context(|| format!("{which} ({at})"))?;
    object.set_name(&name);
    object.validate().map_err(anyhow::Error::msg).with_context(|| format!("{which} ({at})"))?;
    Ok(Declared { kind, name, body: body_of(&object)? })
}

/// A model object as the API's PUT body: the name is the URL's.
fn body_of<T: serde::Serialize>(object: &T) -> anyhow::Result<Value> {
    let mut body = serde_json::to_value(object)?;
    if let Some(map) = body.as_object_mut() {
        map.shift_remove("name");
    }
    Ok(body)
}

/// The server's copy of a registry object, read through the model type
/// like the file's (a newer server's unknown extras stay as they are).
fn normalized<T: Definition>(mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.shift_remove("name");
    }
    serde_json::from_value::<T>(object.clone()).ok().and_then(|t| body_of(&t).ok()).unwrap_or(object)
}

/// What the server has, per kind: name -> normalized object, or for
/// transforms the summary (with its active version and versions).
struct Current {
    objects: BTreeMap<(Kind, String), Value>,
}

impl Current {
    async fn fetch(remote: &Remote) -> anyhow::Result<Current> {
        let mut objects = BTreeMap::new();
        for kind in KINDS {
            let answer =
                remote.get(kind.path()).await.with_context(|| format!("listing the server's {}", kind.list()))?;
            for item in answer[kind.list()].as_array().map_or(&[][..], Vec::as_slice) {
                let Some(name) = item["name"].as_str() else { continue };
                let value = match kind {
                    Kind::Entity => normalized::<Entity>(item.clone()),
                    Kind::Source => normalized::<Source>(item.clone()),
                    Kind::FeatureGroup => normalized::<FeatureGroup>(item.clone()),
                    Kind::Transform => item.clone(),
                };
                objects.insert((kind, name.to_string()), value);
            }
        }
        Ok(Current { objects })
    }

    fn get(&self, kind: Kind, name: &str) -> Option<&Value> {
        self.objects.get(&(kind, name.to_string()))
    }
}

#[derive(Debug, PartialEq)]
enum Action {
    Create,
    Update(Vec<Change>),
    Same,
}

/// What to do with one declared object.
#[derive(Debug)]
struct Step<'a> {
    object: &'a Declared,
    action: Action,
}

fn plan<'a>(declared: &'a [Declared], server: &Current) -> anyhow::Result<Vec<Step<'a>>> {
    declared
        .iter()
        .map(|object| {
            let current = server.get(object.kind, &object.name);
            let action = match (object.kind, current) {
                (Kind::Transform, summary) => activation(object, summary)?,
                (_, None) => Action::Create,
                (_, Some(current)) => match diff::changes(current, &object.body) {
                    changes if changes.is_empty() => Action::Same,
                    changes => Action::Update(changes),
                },
            };
            Ok(Step { object, action })
        })
        .collect()
}

/// A transform's declared active version against the server's summary.
/// Versions are published, not applied, so one the server lacks stops the
/// plan before anything is written.
fn activation(object: &Declared, summary: Option<&Value>) -> anyhow::Result<Action> {
    let name = &object.name;
    let Some(summary) = summary else {
        bail!("transform {name} is not published on the server; publish it first (wafer transform publish)");
    };
    let wanted = object.body.as_str().unwrap_or_default();
    let published: Vec<&str> = summary["versions"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|v| v["version"].as_str())
        .collect();
    if !published.contains(&wanted) {
        bail!("transform {name} has no version {wanted} on the server; published: {}", published.join(", "));
    }
    let active = summary["active_version"].as_str();
    if active == Some(wanted) {
        return Ok(Action::Same);
    }
    let before = active.map(|v| json!(v));
    Ok(Action::Update(vec![Change { path: "active".into(), before, after: Some(object.body.clone()) }]))
}

/// `+ entity ticker`, `~ feature_group technical` with its changed fields
/// indented below, `= source prices`, then what the file leaves alone.
fn plan_text(plan: &[Step], declared: &[Declared], server: &Current) -> String {
    let mut out = String::new();
    for step in plan {
        let (kind, name) = (step.object.kind.label(), &step.object.name);
        match &step.action {
            Action::Create => out.push_str(&format!("+ {kind} {name}\n")),
            Action::Same => out.push_str(&format!("= {kind} {name}\n")),
            Action::Update(changes) => {
                out.push_str(&format!("~ {kind} {name}\n"));
                for change in changes {
                    out.push_str(&format!("    {change}\n"));
                }
            }
        }
    }
    let in_file: HashSet<(Kind, &str)> = declared.iter().map(|d| (d.kind, d.name.as_str())).collect();
    for (kind, name) in server.objects.keys() {
        if !in_file.contains(&(*kind, name.as_str())) {
            out.push_str(&format!("  {} {name}: not in file, left alone\n", kind.label()));
        }
    }
    out
}

struct Counts {
    created: usize,
    changed: usize,
    same: usize,
}

impl Counts {
    fn of(plan: &[Step]) -> Counts {
        let count = |f: fn(&Action) -> bool| plan.iter().filter(|s| f(&s.action)).count();
        Counts {
            created: count(|a| *a == Action::Create),
            changed: count(|a| matches!(a, Action::Update(_))),
            same: count(|a| *a == Action::Same),
        }
    }

    /// `2 to create, 1 unchanged` / `2 created, 1 unchanged`: the counts
    /// that are not zero.
    fn text(&self, planned: bool) -> String {
        let (create, change) = if planned { ("to create", "to change") } else { ("created", "changed") };
        let parts = [(self.created, create), (self.changed, change), (self.same, "unchanged")];
        let parts: Vec<String> = parts.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect();
        parts.join(", ")
    }
}

/// Writes each changed object in order; the first refusal stops, naming
/// the object, the server's reason and what was already written.
async fn execute(remote: &Remote, plan: &[Step<'_>]) -> anyhow::Result<()> {
    let mut applied: Vec<String> = Vec::new();
    let pending: Vec<&Step> = plan.iter().filter(|s| s.action != Action::Same).collect();
    for (i, step) in pending.iter().enumerate() {
        let object = step.object;
        let path = format!("{}/{}", object.kind.path(), segment(&object.name));
        let written = match object.kind {
            Kind::Transform => remote.post(&format!("{path}/activate"), &json!({"version": object.body})).await,
            _ => remote.put(&path, &object.body).await,
        };
        let label = format!("{} {}", object.kind.label(), object.name);
        if let Err(e) = written {
            let not_applied: Vec<String> =
                pending[i..].iter().map(|s| format!("{} {}", s.object.kind.label(), s.object.name)).collect();
            let applied = if applied.is_empty() { "nothing".to_string() } else { applied.join(", ") };
            bail!(
                "{label} was refused: {e:#}\n  already applied: {applied}\n  not applied: {}",
                not_applied.join(", ")
            );
        }
        applied.push(label);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "
entities:
  - name: ticker
    join_keys: [ticker]
sources:
  - name: prices
    entity: ticker
    timestamp_field: ts
    fields:
      - {name: close, type: float64}
feature_groups:
  - name: technical
    entity: ticker
    features: [{name: sma_20, type: float64}]
    producer: {kind: batch, transform: indicators, version: 1.0.0, source: prices}
transforms:
  - name: indicators
    active: 1.0.0
";

    fn server(objects: &[(Kind, &str, Value)]) -> Current {
        Current { objects: objects.iter().map(|(k, n, v)| ((*k, n.to_string()), v.clone())).collect() }
    }

    fn indicators(active: Option<&str>) -> Value {
        json!({"name": "indicators", "active_version": active, "versions": [{"version": "1.0.0"}, {"version": "1.1.0"}]})
    }

    #[test]
    fn a_file_is_read_through_the_model_types_with_defaults_filled() {
        let declared = parse(FILE).unwrap();
        let order: Vec<(Kind, &str)> = declared.iter().map(|d| (d.kind, d.name.as_str())).collect();
        assert_eq!(
            order,
            [
                (Kind::Entity, "ticker"),
                (Kind::Source, "prices"),
                (Kind::Transform, "indicators"),
                (Kind::FeatureGroup, "technical")
            ]
        );
        assert_eq!(declared[0].body, json!({"join_keys": ["ticker"], "description": ""}));
        assert_eq!(declared[3].body["producer"]["lookback"], json!(252));
        assert_eq!(declared[3].body["freshness"], json!({}));
        assert_eq!(declared[2].body, json!("1.0.0"));
    }

    #[test]
    fn defaults_written_out_or_left_out_compare_equal() {
        let declared = parse(FILE).unwrap();
        let stored = normalized::<FeatureGroup>(json!({"name": "technical", "entity": "ticker", "description": "",
            "features": [{"name": "sma_20", "type": "float64"}], "freshness": {},
            "producer": {"kind": "batch", "transform": "indicators", "version": "1.0.0", "source": "prices",
                         "lookback": 252, "params": {}}}));
        let entity = normalized::<Entity>(json!({"name": "ticker", "join_keys": ["ticker"], "description": ""}));
        let server = server(&[
            (Kind::Entity, "ticker", entity),
            (Kind::FeatureGroup, "technical", stored),
            (Kind::Transform, "indicators", indicators(Some("1.0.0"))),
        ]);
        let plan = plan(&declared, &server).unwrap();
        let actions: Vec<&Action> = plan.iter().map(|s| &s.action).collect();
        assert_eq!(actions, [&Action::Same, &Action::Create, &Action::Same, &Action::Same]);
        assert_eq!(
            plan_text(&plan, &declared, &server),
            "= entity ticker\n+ source prices\n= transform indicators\n= feature_group technical\n"
        );
    }

    #[test]
    fn a_changed_pin_and_activation_show_their_fields() {
        let declared =
            parse(&FILE.replace("version: 1.0.0", "version: 1.1.0").replace("active: 1.0.0", "active: 1.1.0")).unwrap();
        let old = parse(FILE).unwrap();
        let server = server(&[
            (Kind::FeatureGroup, "technical", old[3].body.clone()),
            (Kind::Transform, "indicators", indicators(Some("1.0.0"))),
            (Kind::Entity, "other", json!({"join_keys": ["id"], "description": ""})),
        ]);
        let plan = plan(&declared, &server).unwrap();
        assert_eq!(
            plan_text(&plan, &declared, &server),
            "+ entity ticker\n+ source prices\n~ transform indicators\n    active: 1.0.0 -> 1.1.0\n\
             ~ feature_group technical\n    producer.version: 1.0.0 -> 1.1.0\n  entity other: not in file, left alone\n"
        );
        let counts = Counts::of(&plan);
        assert_eq!(counts.text(true), "2 to create, 2 to change");
        assert_eq!(counts.text(false), "2 created, 2 changed");
    }

    #[test]
    fn a_transform_the_server_lacks_stops_the_plan() {
        let declared = parse(FILE).unwrap();
        let e = plan(&declared, &server(&[])).unwrap_err().to_string();
        assert!(e.contains("transform indicators is not published on the server"), "{e}");
        let declared = parse(&FILE.replace("active: 1.0.0", "active: 2.0.0")).unwrap();
        let e = plan(&declared, &server(&[(Kind::Transform, "indicators", indicators(None))])).unwrap_err().to_string();
        assert_eq!(e, "transform indicators has no version 2.0.0 on the server; published: 1.0.0, 1.1.0");
    }

    #[test]
    fn yaml_syntax_errors_name_line_and_column() {
        let e = format!("{:#}", parse("entities:\n  - name: ticker\n    join_keys: [ticker\n").unwrap_err());
        assert!(e.contains("at line 4 column 1"), "{e}");
        let e = format!("{:#}", parse("entitys: []\n").unwrap_err());
        assert!(e.starts_with("unknown field `entitys`, expected one of `entities`"), "{e}");
    }

    #[test]
    fn unknown_and_invalid_fields_name_the_object() {
        let e = format!(
            "{:#}",
            parse("entities:\n  - name: ticker\n    join_keys: [ticker]\n    colour: red\n").unwrap_err()
        );
        assert!(e.starts_with("entity ticker (entities[0]): unknown field `colour`"), "{e}");
        let e = format!(
            "{:#}",
            parse("sources:\n  - name: prices\n    entity: ticker\n    timestamp_field: ts\n    fields: []\n")
                .unwrap_err()
        );
        assert_eq!(e, "source prices (sources[0]): a source needs at least one field");
        let e = format!("{:#}", parse("entities:\n  - join_keys: [ticker]\n").unwrap_err());
        assert_eq!(e, "entities[0] has no name");
        let e = format!("{:#}", parse("transforms:\n  - name: x\n    active: 1.0.0\n    pinned: true\n").unwrap_err());
        assert!(e.starts_with("transforms[0]: unknown field `pinned`") && e.contains("at line 4 column 5"), "{e}");
        let twice = "entities:\n  - {name: a, join_keys: [a]}\n  - {name: a, join_keys: [b]}\n";
        assert_eq!(format!("{:#}", parse(twice).unwrap_err()), "entity a is declared twice");
        assert!(format!("{:#}", parse("# nothing\n").unwrap_err()).starts_with("declares nothing"));
    }
}
