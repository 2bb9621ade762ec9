//! Server configuration: flags and environment (see CONTRACT.md "CLI"),
//! with the documented defaults.

use crate::runtime::Limits;
use crate::service::ClusterSettings;
use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything `wafer serve` needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen. Default 127.0.0.1:7070.
    pub listen: SocketAddr,
    /// Holds `wafer.db` (embedded backend) and the compiled-module cache.
    pub data_dir: PathBuf,
    /// `postgres://...` for the production registry and offline store;
    /// `None` = SQLite at `<data_dir>/wafer.db`.
    pub database_url: Option<String>,
    /// PostgreSQL schema for all of wafer's tables (created if missing);
    /// `None` = the connection's default `search_path`.
    pub database_schema: Option<String>,
    /// Where offline history lives: [`OfflineBackend::Delta`] tables (the
    /// default with SQLite, or whenever `offline_url` is set) or PostgreSQL
    /// tables (the default with a PostgreSQL database, as before tables).
    pub offline: Option<OfflineBackend>,
    /// The root of the Delta tables: a directory or `file://` / `s3://`
    /// URL. `None` = `<data_dir>/offline`.
    pub offline_url: Option<String>,
    /// Object-storage settings for the tables (delta-rs / object_store
    /// keys, e.g. `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ALLOW_HTTP`).
    pub offline_options: BTreeMap<String, String>,
    /// How long a small write waits in the write log at most before its
    /// table's flusher moves it (`--offline-flush-age`). Default 5 s.
    pub offline_flush_age: std::time::Duration,
    /// `redis://...` for the production online store; `None` or `memory` =
    /// in-process.
    pub online: Option<String>,
    /// Prefix of every key in a Redis online store. Default `wafer:`.
    pub online_key_prefix: String,
    /// API tokens as (role, token) pairs; empty = no auth (loopback only).
    pub tokens: Vec<(String, String)>,
    /// Serve without tokens on a non-loopback address anyway.
    pub insecure_no_auth: bool,
    /// Per-call limits for transforms.
    pub limits: Limits,
    /// Largest accepted request body, in bytes (component uploads and CSV
    /// ingest are the big ones). Default 64 MiB.
    pub max_body_bytes: usize,
    /// How this host shares jobs and registry state with other hosts on
    /// the same stores.
    pub cluster: ClusterSettings,
    /// Agent-facing serving: the enrichment tasks and Feast feature
    /// services (`--serving-config FILE`). Default: the built-in tasks.
    pub serving: ServingConfig,
    /// How far past this server's clock an event or created time may be
    /// (`--max-future-skew`). Default 1 h: writers' clocks drift a little,
    /// but a time further ahead is a bug (often milliseconds sent as
    /// seconds) that would otherwise be served as the newest value forever.
    pub max_future_skew: std::time::Duration,
    /// Bytes of the source-history cache (`--source-cache-mib`).
    pub source_cache_bytes: usize,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            data_dir: data_dir.into(),
            database_url: None,
            database_schema: None,
            offline: None,
            offline_url: None,
            offline_options: BTreeMap::new(),
            offline_flush_age: crate::store::delta::FlushPolicy::default().age,
            online: None,
            online_key_prefix: "wafer:".into(),
            tokens: Vec::new(),
            insecure_no_auth: false,
            limits: Limits::default(),
            max_body_bytes: 64 << 20,
            cluster: ClusterSettings::default(),
            serving: ServingConfig::default(),
            max_future_skew: crate::model::TimeWindow::DEFAULT_SKEW,
            source_cache_bytes: crate::service::history::DEFAULT_BYTES,
        }
    }
}

/// Which store holds offline history (`--offline`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OfflineBackend {
    /// Delta Lake tables under `--offline-url`.
    Delta,
    /// Tables in the PostgreSQL database (needs `--database-url postgres://`).
    Postgres,
}

/// The serving file (`--serving-config`, YAML or JSON): which features
/// `POST /v1/enrich` adds per task type, how its monitor decides, and the
/// feature services Feast clients may name.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServingConfig {
    #[serde(default)]
    pub enrichment: crate::service::enrich::EnrichmentConfig,
    /// Feast feature services: name -> `group:feature` refs. A name that
    /// is not listed here resolves to the feature group of that name.
    #[serde(default)]
    pub feature_services: BTreeMap<String, Vec<String>>,
}

/// Reads and checks the serving file; errors name the file and, for YAML
/// errors, the line and column.
pub fn read_serving_config(path: &Path) -> anyhow::Result<ServingConfig> {
    let name = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading serving config {name}"))?;
    let config: ServingConfig =
        serde_yaml_ng::from_str(&text).map_err(|e| anyhow::anyhow!("serving config {name}: {e}"))?;
    config.enrichment.validate().map_err(|e| anyhow::anyhow!("serving config {name}: {e}"))?;
    for (service, refs) in &config.feature_services {
        anyhow::ensure!(!refs.is_empty(), "serving config {name}: feature service '{service}' lists no feature");
        for r in refs {
            crate::model::FeatureRef::parse(r)
                .map_err(|e| anyhow::anyhow!("serving config {name}: feature service '{service}': {e}"))?;
        }
    }
    Ok(config)
}

/// A duration such as `90s`, `15m`, `1h`, `2d` or `3600` (seconds), for
/// flags like `--max-future-skew`.
pub fn parse_duration(text: &str) -> anyhow::Result<std::time::Duration> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len());
    let unit = if unit.is_empty() { "s" } else { unit };
    let n: f64 =
        number.trim().parse().map_err(|_| anyhow::anyhow!("'{text}' is not a duration (e.g. 90s, 15m, 1h)"))?;
    let per_unit = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => anyhow::bail!("'{text}': unknown unit '{other}' (use ms, s, m, h or d, e.g. 1h)"),
    };
    anyhow::ensure!(n.is_finite() && n >= 0.0, "'{text}': a duration cannot be negative");
    std::time::Duration::try_from_secs_f64(n * per_unit).map_err(|_| anyhow::anyhow!("'{text}' is too long a duration"))
}

/// API tokens from `--api-tokens` / `WAFER_API_TOKENS`:
/// `admin=s3cret,read=r3ad` -> [("admin", "s3cret"), ("read", "r3ad")].
pub fn parse_tokens(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    text.split(',').filter(|p| !p.trim().is_empty()).map(parse_token_pair).collect()
}

/// One `role=token` pair; roles are `read`, `write` and `admin`.
fn parse_token_pair(pair: &str) -> anyhow::Result<(String, String)> {
    let (role, token) = pair.split_once('=').ok_or_else(|| anyhow::anyhow!("API token must be role=token"))?;
    let role = role.trim();
    anyhow::ensure!(["read", "write", "admin"].contains(&role), "unknown API token role '{role}'");
    anyhow::ensure!(!token.trim().is_empty(), "empty API token for role '{role}'");
    Ok((role.to_string(), token.trim().to_string()))
}

/// API tokens from a file: one `role=token` a line, lines starting with `#`
/// and blank lines ignored. A file others may read is allowed (containers
/// often mount secrets that way) but warned about.
pub fn read_tokens_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let name = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading API tokens file {name}"))?;
    warn_if_shared(path);
    let tokens =
        parse_tokens_lines(&text).map_err(|(line, e)| anyhow::anyhow!("API tokens file {name}, line {line}: {e}"))?;
    anyhow::ensure!(!tokens.is_empty(), "API tokens file {name} holds no token");
    Ok(tokens)
}

/// The pairs of a tokens file's text, or the first bad line's number
/// (from 1) and what is wrong with it.
fn parse_tokens_lines(text: &str) -> Result<Vec<(String, String)>, (usize, anyhow::Error)> {
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // In a file a comma is most likely a --api-tokens list pasted whole,
        // which would otherwise become one token with commas in it.
        if line.contains(',') {
            return Err((
                i + 1,
                anyhow::anyhow!("one role=token per line; commas separate pairs only in --api-tokens"),
            ));
        }
        tokens.push(parse_token_pair(line).map_err(|e| (i + 1, e))?);
    }
    Ok(tokens)
}

#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the API tokens file is readable by group or others; chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_or_mean_seconds() {
        use std::time::Duration;
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration(" 90s ").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("3600").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("1w").unwrap_err().to_string().contains("unknown unit 'w'"));
        assert!(parse_duration("-5m").unwrap_err().to_string().contains("cannot be negative"));
        assert!(parse_duration("soon").unwrap_err().to_string().contains("is not a duration"));
        assert!(parse_duration("1e300d").unwrap_err().to_string().contains("too long"));
    }

    #[test]
    fn token_lists_name_roles_and_tokens() {
        let tokens = parse_tokens("admin=s3cret, read=r3ad ,").unwrap();
        assert_eq!(tokens, [("admin".to_string(), "s3cret".to_string()), ("read".into(), "r3ad".into())]);
        assert!(parse_tokens("root=x").unwrap_err().to_string().contains("unknown API token role 'root'"));
        assert!(parse_tokens("admin=").unwrap_err().to_string().contains("empty API token"));
        assert!(parse_tokens("s3cret").unwrap_err().to_string().contains("role=token"));
    }

    #[test]
    fn tokens_files_skip_comments_and_blank_lines() {
        let text = "# tokens for the team\n\nadmin=s3cret\n  # indented comment\nwrite = w#1 \r\n";
        let tokens = parse_tokens_lines(text).unwrap();
        assert_eq!(tokens, [("admin".to_string(), "s3cret".to_string()), ("write".into(), "w#1".into())]);
    }

    #[test]
    fn a_bad_tokens_file_line_is_named_by_number() {
        let (line, e) = parse_tokens_lines("# ok\nadmin=a\nsuperuser=b\n").unwrap_err();
        assert_eq!(line, 3);
        assert!(e.to_string().contains("unknown API token role 'superuser'"), "{e}");
        let (line, e) = parse_tokens_lines("admin=a,read=b").unwrap_err();
        assert_eq!(line, 1);
        assert!(e.to_string().contains("one role=token per line"), "{e}");
        assert_eq!(parse_tokens_lines("\nread\n").unwrap_err().0, 2);
    }

    #[test]
    fn reading_a_tokens_file_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "admin=a\nread=\n").unwrap();
        let e = read_tokens_file(&path).unwrap_err().to_string();
        assert!(e.contains(&format!("{}, line 2: empty API token for role 'read'", path.display())), "{e}");
        let e = format!("{:#}", read_tokens_file(&dir.path().join("missing")).unwrap_err());
        assert!(e.starts_with("reading API tokens file ") && e.contains("missing"), "{e}");
        std::fs::write(&path, "# nothing yet\n").unwrap();
        assert!(read_tokens_file(&path).unwrap_err().to_string().contains("holds no token"));
        std::fs::write(&path, "admin=a\nread=r\n").unwrap();
        assert_eq!(read_tokens_file(&path).unwrap().len(), 2);
    }

    #[test]
    fn serving_files_are_read_and_checked_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serving.yaml");
        let yaml = "enrichment:\n  builtin_tasks: false\n  tasks:\n    briefing:\n      features: [technical:rsi_14]\n  \
                    monitor:\n    min_samples: 5\nfeature_services:\n  overview: [technical:rsi_14, risk:beta]\n";
        std::fs::write(&path, yaml).unwrap();
        let config = read_serving_config(&path).unwrap();
        assert_eq!(config.enrichment.effective_tasks().keys().collect::<Vec<_>>(), ["briefing"]);
        assert_eq!(config.enrichment.monitor.min_samples, 5);
        assert_eq!(config.enrichment.monitor.window, 200, "unset monitor fields keep their defaults");
        assert_eq!(config.feature_services["overview"], ["technical:rsi_14", "risk:beta"]);

        let refused = |text: &str| {
            std::fs::write(&path, text).unwrap();
            read_serving_config(&path).unwrap_err().to_string()
        };
        let e = refused("feature_services:\n  overview: [rsi_14]\n");
        assert!(e.starts_with(&format!("serving config {}: feature service 'overview': ", path.display())), "{e}");
        assert!(refused("feature_services:\n  empty: []\n").contains("feature service 'empty' lists no feature"));
        assert!(
            refused("enrichment:\n  monitor:\n    min_samples: 0\n")
                .contains("enrichment monitor: need 1 <= min_samples")
        );
        let e = refused("enrichment:\n  task: {}\n");
        assert!(e.contains("unknown field `task`") && e.contains("line 2"), "{e}");
        let e = format!("{:#}", read_serving_config(&dir.path().join("missing.yaml")).unwrap_err());
        assert!(e.starts_with("reading serving config ") && e.contains("missing.yaml"), "{e}");
    }
}
