//! `wafer apply`: the registry as code, against a real `wafer serve` with
//! tokens. The audit trail (one entry per write) proves which applies
//! wrote and which did not.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;

mod support;

use support::{Server, run, send, start_server, text};

const ADMIN: &str = "adm1n";
const EXAMPLE: &str = include_str!("data/registry.yaml");

/// A server with an admin token and the `indicators` transform published
/// as 1.0.0 and 1.1.0 (the same component, so both produce the same).
async fn server_with_indicators(dir: &Path) -> Server {
    let server = start_server(&dir.join("data"), &["--api-tokens".into(), format!("admin={ADMIN},read=r3ad")]).await;
    let client = reqwest::Client::new();
    for version in ["1.0.0", "1.1.0"] {
        let url = server.url(&format!("/v1/transforms/indicators/versions/{version}"));
        let req = client.put(url).bearer_auth(ADMIN).header("content-type", "application/wasm");
        send(req.body(wafer_host::bundled::INDICATORS)).await;
    }
    server
}

async fn get(server: &Server, path: &str) -> Value {
    send(reqwest::Client::new().get(server.url(path)).bearer_auth(ADMIN)).await
}

async fn audit_entries(server: &Server) -> usize {
    get(server, "/v1/audit?limit=1000").await.as_array().expect("audit entries").len()
}

fn write(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("writing the registry file");
    path
}

async fn apply(server: &Server, file: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["apply".to_string(), file.to_str().expect("utf-8 path").to_string()];
    args.extend(["--server", &server.base, "--token", ADMIN].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    run(args).await
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_the_registry_then_changes_only_what_the_file_changes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = server_with_indicators(tmp.path()).await;
    let file = write(tmp.path(), "registry.yaml", EXAMPLE);
    let published = audit_entries(&server).await;

    // A dry run shows the whole plan and writes nothing.
    let out = apply(&server, &file, &["--dry-run"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stdout(&out),
        "+ entity ticker\n+ source prices\n~ transform indicators\n    active: (none) -> 1.0.0\n\
         + feature_group technical\ndry run: 3 to create, 1 to change; nothing was written\n"
    );
    assert_eq!(audit_entries(&server).await, published);
    assert_eq!(get(&server, "/v1/entities").await, json!({"entities": []}));

    let out = apply(&server, &file, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).ends_with("applied: 3 created, 1 changed\n"), "{}", text(&out));
    assert_eq!(audit_entries(&server).await, published + 4);
    let group = get(&server, "/v1/feature-groups/technical").await;
    assert_eq!(group["producer"]["version"], json!("1.0.0"));
    assert_eq!(group["features"][1]["description"], json!("Wilder's 14-day RSI"));
    assert_eq!(get(&server, "/v1/transforms/indicators").await["active_version"], json!("1.0.0"));

    // Objects the file does not name are listed and left alone; applying
    // the same file again writes nothing at all.
    let user = json!({"join_keys": ["user_id"]});
    send(reqwest::Client::new().put(server.url("/v1/entities/user")).bearer_auth(ADMIN).json(&user)).await;
    let before = audit_entries(&server).await;
    let out = apply(&server, &file, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stdout(&out),
        "= entity ticker\n= source prices\n= transform indicators\n= feature_group technical\n\
         \x20 entity user: not in file, left alone\nnothing to apply: 4 unchanged\n"
    );
    assert_eq!(audit_entries(&server).await, before, "a second apply wrote");
    get(&server, "/v1/entities/user").await;

    // A new pin is one changed field, and the only write.
    let pinned = write(tmp.path(), "pinned.yaml", &EXAMPLE.replace("version: 1.0.0 ", "version: 1.1.0 "));
    let out = apply(&server, &pinned, &["--dry-run"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains(
            "~ feature_group technical\n    producer.version: 1.0.0 -> 1.1.0\n  entity user: not in file, left alone\n\
             dry run: 1 to change, 3 unchanged; nothing was written\n"
        ),
        "{}",
        text(&out)
    );
    assert_eq!(audit_entries(&server).await, before);
    let out = apply(&server, &pinned, &[]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).ends_with("applied: 1 changed, 3 unchanged\n"), "{}", text(&out));
    assert_eq!(audit_entries(&server).await, before + 1);
    let group = get(&server, "/v1/feature-groups/technical").await;
    assert_eq!(group["producer"]["version"], json!("1.1.0"));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_bad_files_before_writing_and_stops_at_the_first_refusal() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = server_with_indicators(tmp.path()).await;
    let published = audit_entries(&server).await;

    let syntax = write(tmp.path(), "syntax.yaml", "entities:\n  - name: ticker\n    join_keys: [ticker\n");
    let out = apply(&server, &syntax, &[]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with(&format!("error: {}: ", syntax.display())), "{stderr}");
    assert!(stderr.contains("line 4 column 1"), "no position: {stderr}");

    let unknown =
        write(tmp.path(), "unknown.yaml", "entities:\n  - name: ticker\n    join_keys: [ticker]\n    colour: red\n");
    let out = apply(&server, &unknown, &[]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("entity ticker (entities[0]): unknown field `colour`"), "{}", text(&out));
    assert_eq!(audit_entries(&server).await, published, "a bad file wrote");

    // The server refuses the group (its source does not exist): the
    // entity before it stays applied, and the output says so.
    let refused = write(
        tmp.path(),
        "refused.yaml",
        &EXAMPLE
            .replace("source: prices", "source: quotes")
            .replace("transforms:\n  - name: indicators\n    active: 1.0.0\n", ""),
    );
    let out = apply(&server, &refused, &[]).await;
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: feature_group technical was refused: source 'quotes' not found"), "{stderr}");
    assert!(stderr.contains("already applied: entity ticker, source prices"), "{stderr}");
    assert!(stderr.contains("not applied: feature_group technical"), "{stderr}");
    assert_eq!(audit_entries(&server).await, published + 2);

    // Without the admin token nothing is written either.
    let file = write(tmp.path(), "registry.yaml", EXAMPLE);
    let out =
        run(vec!["apply".into(), file.to_str().expect("utf-8").into(), "--server".into(), server.base.clone()]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("needs a token"), "{}", text(&out));
    drop(server);
}
