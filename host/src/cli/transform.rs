//! `wafer transform ...`: the plugin lifecycle on a running server
//! (CONTRACT.md "Transforms (admin)"): publish, list, show, activate,
//! disable, roll back, delete, and shadow a candidate version before
//! promoting it. Answers are printed for people; `--json` prints the
//! server's own JSON where a script may want it. Fields a server does not
//! send (an older one has no breakers or limits) are left out, not errors.

use super::client::{Remote, segment};
use super::{LimitsArgs, NameArgs, PublishArgs, ShadowArgs, TransformCommand, VersionArgs};
use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

pub async fn run(command: TransformCommand) -> anyhow::Result<()> {
    match command {
        TransformCommand::Publish(args) => publish(args).await,
        TransformCommand::List(args) => {
            let all = Remote::new(&args.remote).get("/v1/transforms").await?;
            if args.json {
                return print_json(&all);
            }
            print!("{}", list_text(&all));
            Ok(())
        }
        TransformCommand::Show(args) => show(args).await,
        TransformCommand::Activate(args) => activate(args).await,
        TransformCommand::Disable(args) => lifecycle(args, "disable").await,
        TransformCommand::Rollback(args) => lifecycle(args, "rollback").await,
        TransformCommand::Promote(args) => lifecycle(args, "promote").await,
        TransformCommand::Delete(args) => delete(args).await,
        TransformCommand::Shadow(args) => shadow(args).await,
        TransformCommand::ShadowReport(args) => report(args, false).await,
        TransformCommand::ShadowStop(args) => report(args, true).await,
        TransformCommand::Limits(args) => limits(args).await,
    }
}

fn transform_path(name: &str) -> String {
    format!("/v1/transforms/{}", segment(name))
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let remote = Remote::new(&args.remote);
    let path = format!("{}/versions/{}", transform_path(&args.name), segment(&args.version));
    let req = remote.request(Method::PUT, &path).header("content-type", "application/wasm").body(bytes);
    let resp = remote.send(req).await?;
    let created = resp.status() == StatusCode::CREATED;
    let body: Value = resp.json().await.context("reading the server's answer")?;
    println!(
        "{} {}@{} sha256 {} ({} outputs)",
        if created { "published" } else { "already published" },
        args.name,
        args.version,
        body["sha256"].as_str().unwrap_or("?"),
        body["outputs"].as_array().map_or(0, Vec::len)
    );
    if args.activate {
        remote.post(&format!("{}/activate", transform_path(&args.name)), &json!({"version": args.version})).await?;
        println!("activated {}@{}", args.name, args.version);
    }
    Ok(())
}

async fn show(args: NameArgs) -> anyhow::Result<()> {
    let t = Remote::new(&args.remote).get(&transform_path(&args.name)).await?;
    if args.json {
        return print_json(&t);
    }
    print!("{}", show_text(&t));
    Ok(())
}

async fn activate(args: VersionArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote);
    let path = format!("{}/activate", transform_path(&args.name));
    let t = remote.post(&path, &json!({"version": args.version})).await?;
    println!("activated {}@{}{}", args.name, args.version, previous_note(&t));
    Ok(())
}

/// `disable`, `rollback` and `promote`: a POST without a body that
/// answers the transform's new state.
async fn lifecycle(args: NameArgs, action: &str) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote);
    let t = remote.json(remote.request(Method::POST, &format!("{}/{action}", transform_path(&args.name)))).await?;
    if args.json {
        return print_json(&t);
    }
    let name = &args.name;
    match action {
        "disable" => println!("disabled {name}: no version is active{}", previous_note(&t)),
        "rollback" => println!("rolled {name} back to {}{}", text(&t["active_version"]), previous_note(&t)),
        _ => {
            println!("promoted {name}@{} to active{}", text(&t["active_version"]), previous_note(&t));
            if let Some(verdict) = t["shadow_report"]["verdict"].as_str() {
                println!("the shadow comparison it was based on: {verdict}");
            }
        }
    }
    Ok(())
}

fn previous_note(t: &Value) -> String {
    match t["previous_version"].as_str() {
        Some(previous) => format!(" (previous: {previous}, the rollback target)"),
        None => String::new(),
    }
}

async fn delete(args: VersionArgs) -> anyhow::Result<()> {
    let path = format!("{}/versions/{}", transform_path(&args.name), segment(&args.version));
    Remote::new(&args.remote).delete(&path).await?;
    println!("deleted {}@{}", args.name, args.version);
    Ok(())
}

async fn shadow(args: ShadowArgs) -> anyhow::Result<()> {
    let mut body = json!({"version": args.version});
    if let Some(tolerance) = args.tolerance {
        anyhow::ensure!(tolerance.is_finite() && tolerance >= 0.0, "--tolerance must be a number >= 0");
        body["tolerance"] = json!(tolerance);
    }
    let remote = Remote::new(&args.remote);
    let report = remote.post(&format!("{}/shadow", transform_path(&args.name)), &body).await?;
    println!(
        "shadowing {}: candidate {} runs beside active {} (tolerance {}); see `wafer transform shadow-report {}`",
        args.name,
        text(&report["candidate_version"]),
        text(&report["active_version"]),
        text(&report["tolerance"]),
        args.name
    );
    Ok(())
}

/// `shadow-report` (GET) or `shadow-stop` (DELETE, the final report).
async fn report(args: NameArgs, stop: bool) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote);
    let path = format!("{}/shadow", transform_path(&args.name));
    let report = if stop { remote.delete(&path).await? } else { remote.get(&path).await? };
    if args.json {
        return print_json(&report);
    }
    if stop {
        println!("stopped shadowing {}; the final report:", args.name);
    }
    print!("{}", report_text(&report));
    Ok(())
}

async fn limits(args: LimitsArgs) -> anyhow::Result<()> {
    let remote = Remote::new(&args.remote);
    let mib = |v: Option<u64>| v.map(|m| m.saturating_mul(1 << 20));
    let fields = [
        ("call_timeout_ms", args.call_timeout_ms),
        ("memory_bytes", mib(args.memory_mib)),
        ("module_bytes", mib(args.module_mib)),
        ("output_bytes", mib(args.output_mib)),
        ("breaker_failures", args.breaker_failures),
    ];
    let body: Map<String, Value> = fields.iter().filter_map(|(k, v)| Some((k.to_string(), json!((*v)?)))).collect();
    if body.is_empty() && !args.reset {
        let t = remote.get(&transform_path(&args.name)).await?;
        let text = limits_text(&t);
        if text.is_empty() {
            println!("the server reports no limits for {}", args.name);
        }
        print!("{text}");
        return Ok(());
    }
    let t = remote.put(&format!("{}/limits", transform_path(&args.name)), &Value::Object(body.clone())).await?;
    if args.reset {
        println!("limits of {} reset to the server's defaults", args.name);
    } else {
        println!("limits of {} set: {} (others at the server's defaults)", args.name, pairs(&Value::Object(body)));
    }
    print!("{}", limits_text(&t));
    Ok(())
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A JSON value as a person reads it: strings bare, nothing as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `{"a": 1, "b": {"c": true}}` -> `a=1, b.c=true`; byte counts that are
/// whole MiB say so.
fn pairs(v: &Value) -> String {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            Value::Number(n)
                if prefix.ends_with("_bytes") && n.as_u64().is_some_and(|b| b > 0 && b % (1 << 20) == 0) =>
            {
                out.push(format!("{prefix}={n} ({} MiB)", n.as_u64().unwrap_or(0) >> 20));
            }
            other => out.push(format!("{prefix}={}", text(other))),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.join(", ")
}

fn micros(v: &Value) -> String {
    match v.as_f64() {
        Some(m) if m >= 1000.0 => format!("{:.2} ms", m / 1000.0),
        Some(m) => format!("{m:.0} µs"),
        None => "-".into(),
    }
}

/// Rows as columns two spaces apart, each as wide as its widest cell.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(&format!("{indent}{}\n", cells.join("  ").trim_end()));
    }
    out
}

fn versions(t: &Value) -> &[Value] {
    t["versions"].as_array().map_or(&[], Vec::as_slice)
}

/// A version's count of `stat`, or 0 when the server keeps none.
fn stat(v: &Value, stat: &str) -> u64 {
    v["stats"][stat].as_u64().unwrap_or(0)
}

fn list_text(all: &Value) -> String {
    let transforms = all["transforms"].as_array().map_or(&[][..], Vec::as_slice);
    if transforms.is_empty() {
        return "no transforms published\n".into();
    }
    let mut rows =
        vec![["NAME", "STATUS", "ACTIVE", "PREVIOUS", "VERSIONS", "CALLS", "ERRORS"].map(String::from).to_vec()];
    for t in transforms {
        let sum = |s: &str| versions(t).iter().map(|v| stat(v, s)).sum::<u64>();
        rows.push(vec![
            text(&t["name"]),
            text(&t["status"]),
            text(&t["active_version"]),
            text(&t["previous_version"]),
            versions(t).len().to_string(),
            sum("calls").to_string(),
            (sum("errors") + sum("traps") + sum("timeouts")).to_string(),
        ]);
    }
    table(&rows, "")
}

fn show_text(t: &Value) -> String {
    let mut out = format!(
        "transform {}: {} (active {}, previous {})\n",
        text(&t["name"]),
        text(&t["status"]),
        text(&t["active_version"]),
        text(&t["previous_version"])
    );
    let active = t["active_version"].as_str();
    let previous = t["previous_version"].as_str();
    let mut rows = vec![
        ["VERSION", "ROLE", "SHA256", "KIND", "CALLS", "ERRORS", "TRAPS", "TIMEOUTS", "MEAN", "PUBLISHED"]
            .map(String::from)
            .to_vec(),
    ];
    for v in versions(t) {
        let version = v["version"].as_str();
        let role = if version.is_some() && version == active {
            "active"
        } else if version.is_some() && version == previous {
            "previous"
        } else {
            ""
        };
        let sha: String = v["sha256"].as_str().unwrap_or("-").chars().take(12).collect();
        let has_calls = stat(v, "calls") > 0;
        rows.push(vec![
            text(&v["version"]),
            role.into(),
            sha,
            text(&v["kind"]),
            stat(v, "calls").to_string(),
            stat(v, "errors").to_string(),
            stat(v, "traps").to_string(),
            stat(v, "timeouts").to_string(),
            if has_calls { micros(&v["stats"]["mean_micros"]) } else { "-".into() },
            text(&v["created_at"]),
        ]);
    }
    out.push_str(&table(&rows, "  "));
    for v in versions(t) {
        for key in ["breaker", "limits"] {
            if v[key].is_object() {
                out.push_str(&format!("  {} {key}: {}\n", text(&v["version"]), pairs(&v[key])));
            }
        }
    }
    out.push_str(&limits_text(t));
    out.push_str(&shadow_text(t));
    out
}

/// The transform's `limits`: the effective ones, each the server's
/// default unless marked `(set)`. A server that sends another shape gets
/// its fields printed as they are.
fn limits_text(t: &Value) -> String {
    let limits = &t["limits"];
    let Some(effective) = limits["effective"].as_object() else {
        return match limits.as_object() {
            Some(map) if !map.is_empty() => format!("limits: {}\n", pairs(limits)),
            _ => String::new(),
        };
    };
    let items: Vec<String> = effective
        .iter()
        .map(|(k, v)| {
            let set = if limits["overrides"][k].is_null() { "" } else { " (set)" };
            format!("{}{set}", pairs(&json!({k: v})))
        })
        .collect();
    format!("limits: {}\n", items.join(", "))
}

/// The shadow candidate in a transform summary, if one runs.
fn shadow_text(t: &Value) -> String {
    let shadow = &t["shadow"];
    match shadow["version"].as_str() {
        Some(version) => format!(
            "shadow: candidate {version} (tolerance {}) since {}\n",
            text(&shadow["tolerance"]),
            text(&shadow["started_at"])
        ),
        None if shadow.is_object() => format!("shadow: {}\n", pairs(shadow)),
        None => String::new(),
    }
}

fn verdict_meaning(verdict: &str) -> &'static str {
    match verdict {
        "match" => "the candidate's outputs match the active version's within the tolerance",
        "mismatch" => "the candidate's outputs differ from the active version's",
        "candidate_errors" => "the candidate failed on some calls",
        "no_data" => "no calls compared yet",
        _ => "",
    }
}

fn report_text(r: &Value) -> String {
    let mut out = format!(
        "shadow of {}: candidate {} against active {}, tolerance {}, since {}\n",
        text(&r["transform"]),
        text(&r["candidate_version"]),
        text(&r["active_version"]),
        text(&r["tolerance"]),
        text(&r["started_at"])
    );
    let verdict = text(&r["verdict"]);
    match verdict_meaning(&verdict) {
        "" => out.push_str(&format!("verdict: {verdict}\n")),
        meaning => out.push_str(&format!("verdict: {verdict} ({meaning})\n")),
    }
    let calls = &r["calls"];
    out.push_str(&format!(
        "calls: {} shadowed, {} compared, {} candidate errors, {} skipped\n",
        text(&calls["shadowed"]),
        text(&calls["compared"]),
        text(&calls["candidate_errors"]),
        text(&calls["skipped"])
    ));
    let latency = &r["latency"];
    if latency.is_object() {
        let relative = match latency["candidate_relative"].as_f64() {
            Some(x) => format!(" (x{x:.2})"),
            None => String::new(),
        };
        out.push_str(&format!(
            "mean latency: active {}, candidate {}{relative}\n",
            micros(&latency["active_mean_micros"]),
            micros(&latency["candidate_mean_micros"])
        ));
    }
    let features = r["features"].as_array().map_or(&[][..], Vec::as_slice);
    if !features.is_empty() {
        let mut rows =
            vec![["FEATURE", "COMPARED", "MATCHES", "MISMATCHES", "MAX ABS DIFF"].map(String::from).to_vec()];
        for f in features {
            rows.push(vec![
                text(&f["name"]),
                text(&f["compared"]),
                text(&f["matches"]),
                text(&f["mismatches"]),
                text(&f["max_abs_diff"]),
            ]);
        }
        out.push_str(&table(&rows, "  "));
        for f in features {
            for e in f["examples"].as_array().map_or(&[][..], Vec::as_slice) {
                out.push_str(&format!(
                    "  {} differs for {} at {}: active {}, candidate {}\n",
                    text(&f["name"]),
                    text(&e["entity"]),
                    text(&e["event_timestamp"]),
                    text(&e["active"]),
                    text(&e["candidate"])
                ));
            }
        }
    }
    if r["suspended"] == json!(true) {
        out.push_str("suspended: the candidate failed too often in a row and no longer runs\n");
    }
    let errors = r["recent_errors"].as_array().map_or(&[][..], Vec::as_slice);
    if !errors.is_empty() {
        out.push_str("recent candidate errors:\n");
        for e in errors {
            out.push_str(&format!("  {}\n", text(e)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Value {
        json!({"name": "indicators", "status": "active", "active_version": "1.1.0", "previous_version": "1.0.0",
            "versions": [
                {"version": "1.0.0", "sha256": "0123456789abcdef0123", "kind": "batch", "created_at": "2026-01-01T00:00:00Z",
                 "stats": {"calls": 0, "errors": 0, "traps": 0, "timeouts": 0, "mean_micros": 0.0}},
                {"version": "1.1.0", "sha256": "fedcba9876543210fedc", "kind": "batch", "created_at": "2026-01-02T00:00:00Z",
                 "stats": {"calls": 4, "errors": 1, "traps": 0, "timeouts": 2, "mean_micros": 1530.0},
                 "breaker": {"state": "closed", "consecutive_failures": 0}}],
            "shadow": {"version": "1.2.0", "tolerance": 1e-9, "started_at": "2026-01-03T00:00:00Z"},
            "limits": {"overrides": {"call_timeout_ms": 500},
                       "effective": {"call_timeout_ms": 500, "memory_bytes": 33554432, "breaker_failures": 5}}})
    }

    #[test]
    fn show_names_each_versions_role_counts_and_limits() {
        let out = show_text(&summary());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "transform indicators: active (active 1.1.0, previous 1.0.0)");
        assert!(lines[1].starts_with("  VERSION  ROLE      SHA256"), "{out}");
        assert!(lines[2].starts_with("  1.0.0    previous  0123456789ab  batch  0"), "{out}");
        assert!(lines[2].ends_with("  -        2026-01-01T00:00:00Z"), "{out}");
        assert!(
            lines[3].starts_with("  1.1.0    active    fedcba987654  batch  4      1       0      2         1.53 ms"),
            "{out}"
        );
        assert_eq!(lines[4], "  1.1.0 breaker: state=closed, consecutive_failures=0");
        assert_eq!(lines[5], "limits: call_timeout_ms=500 (set), memory_bytes=33554432 (32 MiB), breaker_failures=5");
        assert_eq!(lines[6], "shadow: candidate 1.2.0 (tolerance 1e-9) since 2026-01-03T00:00:00Z");
        let other = limits_text(&json!({"limits": {"memory_bytes": 1048576}}));
        assert_eq!(other, "limits: memory_bytes=1048576 (1 MiB)\n");
    }

    #[test]
    fn show_tolerates_a_server_without_stats_or_limits() {
        let t = json!({"name": "x", "status": "inactive", "versions": [{"version": "1.0.0"}]});
        let out = show_text(&t);
        assert!(out.starts_with("transform x: inactive (active -, previous -)\n"), "{out}");
        assert!(out.contains("\n  1.0.0          -       -     0      0"), "{out}");
        assert!(!out.contains("limits"), "{out}");
    }

    #[test]
    fn list_sums_calls_and_failures_over_versions() {
        let out = list_text(&json!({"transforms": [summary()]}));
        assert_eq!(
            out,
            "NAME        STATUS  ACTIVE  PREVIOUS  VERSIONS  CALLS  ERRORS\n\
             indicators  active  1.1.0   1.0.0     2         4      3\n"
        );
        assert_eq!(list_text(&json!({"transforms": []})), "no transforms published\n");
    }

    #[test]
    fn a_shadow_report_reads_as_text() {
        let report = json!({"transform": "indicators", "active_version": "1.0.0", "candidate_version": "1.1.0",
            "tolerance": 1e-9, "started_at": "2026-01-01T00:00:00Z",
            "calls": {"shadowed": 10, "compared": 9, "candidate_errors": 1, "skipped": 0},
            "latency": {"active_mean_micros": 800.0, "candidate_mean_micros": 1200.0, "candidate_relative": 1.5},
            "features": [{"name": "sma_20", "compared": 9, "matches": 8, "mismatches": 1, "max_abs_diff": 0.5,
                "examples": [{"entity": "AAPL", "event_timestamp": "2026-01-01T00:00:00Z", "active": 1.0, "candidate": 1.5}]}],
            "recent_errors": ["guest error: boom"], "verdict": "mismatch"});
        let out = report_text(&report);
        assert_eq!(
            out,
            "shadow of indicators: candidate 1.1.0 against active 1.0.0, tolerance 1e-9, since 2026-01-01T00:00:00Z\n\
             verdict: mismatch (the candidate's outputs differ from the active version's)\n\
             calls: 10 shadowed, 9 compared, 1 candidate errors, 0 skipped\n\
             mean latency: active 800 µs, candidate 1.20 ms (x1.50)\n\
             \x20 FEATURE  COMPARED  MATCHES  MISMATCHES  MAX ABS DIFF\n\
             \x20 sma_20   9         8        1           0.5\n\
             \x20 sma_20 differs for AAPL at 2026-01-01T00:00:00Z: active 1.0, candidate 1.5\n\
             recent candidate errors:\n\
             \x20 guest error: boom\n"
        );
        let empty = report_text(&json!({"verdict": "no_data"}));
        assert!(empty.contains("verdict: no_data (no calls compared yet)"), "{empty}");
    }
}
