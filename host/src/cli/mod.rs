//! The `wafer` command line (CONTRACT.md "CLI"). `main.rs` parses and
//! dispatches here; server commands call into the library, client commands
//! talk to a running server over HTTP.

mod apply;
mod client;
mod dataset;
mod diff;
mod transform;

use crate::config::{Config, read_serving_config, read_tokens_file};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "wafer", version, about = "Feature store with WebAssembly transforms")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Start an embedded server with demo data, published first-party
    /// transforms and materialized features; keeps serving.
    Demo(DemoArgs),
    /// Manage transform plugins on a running server.
    #[command(subcommand)]
    Transform(TransformCommand),
    /// Materialize a feature group on a running server, showing progress.
    Materialize(MaterializeArgs),
    /// Write training data: the point-in-time feature values of a CSV
    /// file's entity rows, fetched from a running server, as CSV.
    Dataset(DatasetArgs),
    /// Registry as code: make the server match a YAML file.
    ///
    /// The file declares entities, sources, feature groups and the active
    /// version of transforms. Prints a diff per object and writes only what
    /// changed; objects the file does not mention are left alone.
    Apply(ApplyArgs),
    /// Offline table maintenance on a running server.
    #[command(subcommand)]
    Offline(OfflineCommand),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[arg(long, env = "WAFER_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    #[arg(long, env = "WAFER_DATA_DIR", default_value = "./wafer-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub stores: StoreArgs,
    /// Comma-separated role=token pairs (roles: read, write, admin).
    #[arg(long, env = "WAFER_API_TOKENS", hide_env_values = true)]
    pub api_tokens: Option<String>,
    /// File of API tokens, one role=token per line (`#` comments and blank
    /// lines ignored); used together with --api-tokens if both are given.
    /// Keep it readable by the server's user only.
    #[arg(long, env = "WAFER_API_TOKENS_FILE")]
    pub api_tokens_file: Option<PathBuf>,
    /// Serve without tokens on a non-loopback address.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// YAML (or JSON) file with the enrichment tasks (`enrichment:`) and
    /// Feast feature services (`feature_services:`); see the README.
    #[arg(long, env = "WAFER_SERVING_CONFIG")]
    pub serving_config: Option<PathBuf>,
    /// How far past the server's clock an event or created time may be
    /// (e.g. 90s, 15m, 1h); later times are refused with 400.
    #[arg(long, env = "WAFER_MAX_FUTURE_SKEW", default_value = "1h", value_parser = parse_skew)]
    pub max_future_skew: std::time::Duration,
    /// MiB of memory for each entity's source history, kept so that a
    /// value computed on a miss needs no offline read (least recently read
    /// dropped first; 0 turns the cache off).
    #[arg(long, env = "WAFER_SOURCE_CACHE_MIB", default_value_t = 256)]
    pub source_cache_mib: usize,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

fn parse_skew(text: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(text).map_err(|e| e.to_string())
}

fn parse_flush_age(text: &str) -> Result<std::time::Duration, String> {
    let age = crate::config::parse_duration(text).map_err(|e| e.to_string())?;
    if age.is_zero() {
        return Err("must be more than 0 (e.g. 1s)".into());
    }
    Ok(age)
}

fn parse_options(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
            _ => Err(format!("'{kv}' is not KEY=VALUE")),
        })
        .collect()
}

/// Which stores to use; the default is embedded (SQLite + in-process).
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// postgres://... for the production registry and offline store.
    #[arg(long, env = "WAFER_DATABASE_URL")]
    pub database_url: Option<String>,
    /// PostgreSQL schema for wafer's tables (created if missing).
    #[arg(long, env = "WAFER_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// Where offline history lives: `delta` (tables under --offline-url;
    /// the default with SQLite or when --offline-url is given) or
    /// `postgres` (the default with a PostgreSQL database).
    #[arg(long, env = "WAFER_OFFLINE", value_enum)]
    pub offline: Option<crate::config::OfflineBackend>,
    /// Root of the offline Delta tables: a directory, file:///... or
    /// s3://bucket/prefix. Default: <data-dir>/offline.
    #[arg(long, env = "WAFER_OFFLINE_URL")]
    pub offline_url: Option<String>,
    /// Object-storage settings for the tables, KEY=VALUE separated by
    /// commas (e.g. AWS_ENDPOINT_URL=http://127.0.0.1:9000,AWS_ALLOW_HTTP=true).
    #[arg(long, env = "WAFER_OFFLINE_OPTIONS", value_parser = parse_options)]
    pub offline_options: Option<std::collections::BTreeMap<String, String>>,
    /// How long a small write may wait in the write log before it is
    /// flushed into its table (e.g. 5s, 2m); larger waits mean fewer,
    /// larger Parquet files. Writes are durable either way. [default: 5s]
    #[arg(long, env = "WAFER_OFFLINE_FLUSH_AGE", value_parser = parse_flush_age)]
    pub offline_flush_age: Option<std::time::Duration>,
    /// `memory` (default) or redis://...
    #[arg(long, env = "WAFER_ONLINE")]
    pub online: Option<String>,
    /// Prefix of every Redis key.
    #[arg(long, env = "WAFER_ONLINE_KEY_PREFIX", default_value = "wafer:")]
    pub online_key_prefix: String,
}

/// Several hosts on one store (see `ClusterSettings` for the defaults).
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// This host's name in job leases and progress [default: hostname:pid].
    #[arg(long, env = "WAFER_HOST_ID")]
    pub host_id: Option<String>,
    /// Entities per job task, the unit a host leases.
    #[arg(long, env = "WAFER_JOB_CHUNK_ENTITIES", default_value_t = 128)]
    pub job_chunk_entities: usize,
    /// Seconds a job task lease lasts without renewal.
    #[arg(long, env = "WAFER_JOB_LEASE_SECONDS", default_value_t = 30.0)]
    pub job_lease_seconds: f64,
    /// Seconds between full registry reloads on a shared store.
    #[arg(long, env = "WAFER_REGISTRY_RESYNC_SECONDS", default_value_t = 10.0)]
    pub registry_resync_seconds: f64,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[arg(long, env = "WAFER_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// Recreated on every start: the demo's data is generated fresh.
    #[arg(long, default_value = "./wafer-demo-data")]
    pub data_dir: PathBuf,
    /// The demo runs on PostgreSQL and Redis too; their data is kept
    /// (the demo upserts over it).
    #[command(flatten)]
    pub stores: StoreArgs,
}

/// Where a client command sends its requests, and the token it shows.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// The wafer server's base URL.
    #[arg(long, env = "WAFER_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// API token, sent as `Authorization: Bearer TOKEN`. Needed when the
    /// server was started with tokens: `read` for reading, `write` for
    /// ingest and materialization, `admin` for the registry and plugins.
    #[arg(long, env = "WAFER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum OfflineCommand {
    /// Compact every offline table: small files rewritten into large ones,
    /// files superseded over an hour ago deleted (admin).
    Compact(ServerArgs),
}

#[derive(Subcommand, Debug)]
pub enum TransformCommand {
    /// Upload a component as a new version.
    Publish(PublishArgs),
    /// List the transforms with their active version and call counts.
    List(ListArgs),
    /// One transform's versions, lifecycle, call statistics and limits.
    Show(NameArgs),
    /// Make a published version the active one.
    Activate(VersionArgs),
    /// Stop serving the transform: no version is active afterwards.
    Disable(NameArgs),
    /// Re-activate the version that was active before the current one.
    Rollback(NameArgs),
    /// Delete a published version (refused while it is active, the
    /// rollback target, or pinned by a feature group).
    Delete(VersionArgs),
    /// Make the shadowed candidate version the active one.
    Promote(NameArgs),
    /// Run a candidate version beside the active one and compare outputs.
    ///
    /// The candidate runs on the same calls as the active version; its
    /// outputs are compared and never served.
    Shadow(ShadowArgs),
    /// How the shadowed candidate compares with the active version so far.
    ShadowReport(NameArgs),
    /// Stop shadowing and print the final report.
    ShadowStop(NameArgs),
    /// Show the transform's per-call limits, or set them.
    ///
    /// Setting replaces the whole set: a limit not given goes back to the
    /// server's default. With no limit and no --reset, shows them.
    Limits(LimitsArgs),
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    pub file: PathBuf,
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub version: String,
    /// Make this version the active one.
    #[arg(long)]
    pub activate: bool,
    #[command(flatten)]
    pub remote: ServerArgs,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print the server's JSON answer as it is.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: ServerArgs,
}

#[derive(Args, Debug)]
pub struct NameArgs {
    /// The transform's name.
    pub name: String,
    /// Print the server's JSON answer as it is.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: ServerArgs,
}

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// The transform's name.
    pub name: String,
    /// A published version, e.g. 1.1.0.
    pub version: String,
    #[command(flatten)]
    pub remote: ServerArgs,
}

#[derive(Args, Debug)]
pub struct ShadowArgs {
    /// The transform's name.
    pub name: String,
    /// The candidate: a published version other than the active one.
    pub version: String,
    /// Largest absolute difference between two floats that still counts
    /// as a match [default: the server's].
    #[arg(long)]
    pub tolerance: Option<f64>,
    #[command(flatten)]
    pub remote: ServerArgs,
}

#[derive(Args, Debug)]
pub struct LimitsArgs {
    /// The transform's name.
    pub name: String,
    /// Wall-clock deadline of one call, in milliseconds.
    #[arg(long)]
    pub call_timeout_ms: Option<u64>,
    /// Cap on a call's linear memory, in MiB.
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// Largest accepted component, in MiB.
    #[arg(long)]
    pub module_mib: Option<u64>,
    /// Largest output of one call, in MiB.
    #[arg(long)]
    pub output_mib: Option<u64>,
    /// Consecutive failures that open the version's circuit breaker.
    #[arg(long)]
    pub breaker_failures: Option<u64>,
    /// Put every limit back to the server's default.
    #[arg(long, conflicts_with_all = ["call_timeout_ms", "memory_mib", "module_mib", "output_mib", "breaker_failures"])]
    pub reset: bool,
    #[command(flatten)]
    pub remote: ServerArgs,
}

#[derive(Args, Debug)]
pub struct MaterializeArgs {
    pub group: String,
    /// Comma-separated entity keys; default all.
    #[arg(long, value_delimiter = ',')]
    pub entities: Vec<String>,
    #[arg(long)]
    pub incremental: bool,
    #[command(flatten)]
    pub remote: ServerArgs,
}

#[derive(Args, Debug)]
pub struct DatasetArgs {
    /// Comma-separated feature refs (`group:feature`), one output column each.
    #[arg(long, value_delimiter = ',', required = true)]
    pub features: Vec<String>,
    /// CSV with a header row: the entity's join keys, `event_timestamp` and
    /// any other columns, which are copied to the output.
    #[arg(long)]
    pub entities: PathBuf,
    /// Written as `<out>.partial` and renamed once every row has arrived:
    /// CSV, or Parquet when it ends in `.parquet`.
    #[arg(long)]
    pub out: PathBuf,
    /// Leave out feature rows created after an entity row's event_timestamp.
    #[arg(long)]
    pub created_cutoff: bool,
    /// Add a `<group>:__provenance` column per group: the transform version
    /// (`name@version#sha256`) that computed each value.
    #[arg(long)]
    pub include_provenance: bool,
    /// Entity rows per request. The server holds a request's rows while it
    /// streams the answer (about 300 bytes a CSV row) and limits request
    /// bodies to 64 MiB by default.
    #[arg(long, default_value_t = 250_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_rows: u64,
    #[command(flatten)]
    pub remote: ServerArgs,
}

/// `wafer apply`: see [`apply`].
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// YAML with `entities:`, `sources:`, `feature_groups:` and
    /// `transforms:` lists; each item has a `name` and the fields the API
    /// accepts for that object (`transforms` items: `name` and `active`).
    pub file: PathBuf,
    /// Print what would change and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub remote: ServerArgs,
}

impl ServeArgs {
    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut config = Config::new(self.data_dir);
        config.listen = self.listen;
        self.stores.apply(&mut config);
        config.insecure_no_auth = self.insecure_no_auth;
        config.max_future_skew = self.max_future_skew;
        config.source_cache_bytes = self.source_cache_mib << 20;
        if let Some(tokens) = self.api_tokens {
            config.tokens = parse_tokens(&tokens)?;
        }
        if let Some(path) = self.api_tokens_file {
            config.tokens.extend(read_tokens_file(&path)?);
        }
        if let Some(path) = self.serving_config {
            config.serving = read_serving_config(&path)?;
        }
        let cluster = &mut config.cluster;
        if let Some(host_id) = self.cluster.host_id {
            cluster.host_id = host_id;
        }
        anyhow::ensure!(self.cluster.job_chunk_entities > 0, "--job-chunk-entities must be at least 1");
        cluster.job_chunk_entities = self.cluster.job_chunk_entities;
        cluster.job_lease = seconds("--job-lease-seconds", self.cluster.job_lease_seconds)?;
        cluster.registry_resync = seconds("--registry-resync-seconds", self.cluster.registry_resync_seconds)?;
        Ok(config)
    }
}

impl StoreArgs {
    pub fn apply(self, config: &mut Config) {
        config.database_url = self.database_url;
        config.database_schema = self.database_schema;
        config.offline = self.offline;
        config.offline_url = self.offline_url;
        config.offline_options = self.offline_options.unwrap_or_default();
        if let Some(age) = self.offline_flush_age {
            config.offline_flush_age = age;
        }
        config.online = self.online;
        config.online_key_prefix = self.online_key_prefix;
    }
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<std::time::Duration> {
    anyhow::ensure!(value.is_finite() && value >= 0.1, "{flag} must be at least 0.1 (got {value})");
    Ok(std::time::Duration::from_secs_f64(value))
}

/// Runs a client command: everything but `serve` and `demo`, which
/// `main.rs` starts itself.
pub async fn run_client(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Transform(command) => transform::run(command).await,
        Command::Materialize(args) => client::materialize(args).await,
        Command::Dataset(args) => dataset::dataset(args).await,
        Command::Apply(args) => apply::apply(args).await,
        Command::Offline(OfflineCommand::Compact(args)) => client::compact(args).await,
        Command::Serve(_) | Command::Demo(_) => anyhow::bail!("not a client command"),
    }
}

pub use crate::config::parse_tokens;
pub use apply::apply;
pub use client::materialize;
pub use dataset::dataset;
pub use transform::publish;

#[cfg(test)]
mod tests {
    use super::{Cli, Command};
    use clap::Parser;
    use std::time::Duration;

    fn flush_age(args: &[&str]) -> Result<Duration, String> {
        let cli = Cli::try_parse_from([&["wafer", "serve"], args].concat()).map_err(|e| e.to_string())?;
        let Command::Serve(serve) = cli.command else { unreachable!("parsed as serve") };
        Ok(serve.into_config().map_err(|e| e.to_string())?.offline_flush_age)
    }

    #[test]
    fn the_flush_age_defaults_to_five_seconds_and_takes_units_but_not_zero() {
        assert_eq!(flush_age(&[]), Ok(Duration::from_secs(5)));
        assert_eq!(flush_age(&["--offline-flush-age", "2m"]), Ok(Duration::from_secs(120)));
        assert_eq!(flush_age(&["--offline-flush-age", "500ms"]), Ok(Duration::from_millis(500)));
        let zero = flush_age(&["--offline-flush-age", "0s"]).unwrap_err();
        assert!(zero.contains("must be more than 0"), "{zero}");
        let bad = flush_age(&["--offline-flush-age", "soon"]).unwrap_err();
        assert!(bad.contains("is not a duration"), "{bad}");
    }
}
