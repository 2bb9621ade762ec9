//! The `wafer` command line (CONTRACT.md "CLI"). `main.rs` parses and
//! dispatches here; server commands call into the library, client commands
//! talk to a running server over HTTP.

mod client;
mod dataset;

use crate::config::Config;
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
    /// Serve without tokens on a non-loopback address.
    #[arg(long)]
    pub insecure_no_auth: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
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
    #[arg(long, env = "WAFER_JOB_CHUNK_ENTITIES", default_value_t = 32)]
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

#[derive(Subcommand, Debug)]
pub enum TransformCommand {
    /// Upload a component as a new version.
    Publish(PublishArgs),
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
    #[arg(long, env = "WAFER_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
}

#[derive(Args, Debug)]
pub struct MaterializeArgs {
    pub group: String,
    /// Comma-separated entity keys; default all.
    #[arg(long, value_delimiter = ',')]
    pub entities: Vec<String>,
    #[arg(long)]
    pub incremental: bool,
    #[arg(long, env = "WAFER_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
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
    /// Written as `<out>.partial` and renamed once every row has arrived.
    #[arg(long)]
    pub out: PathBuf,
    /// Leave out feature rows created after an entity row's event_timestamp.
    #[arg(long)]
    pub created_cutoff: bool,
    /// Entity rows per request. The server holds a request's rows while it
    /// streams the answer (about 300 bytes a CSV row) and limits request
    /// bodies to 64 MiB by default.
    #[arg(long, default_value_t = 250_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_rows: u64,
    #[arg(long, env = "WAFER_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
}

impl ServeArgs {
    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut config = Config::new(self.data_dir);
        config.listen = self.listen;
        self.stores.apply(&mut config);
        config.insecure_no_auth = self.insecure_no_auth;
        if let Some(tokens) = self.api_tokens {
            config.tokens = parse_tokens(&tokens)?;
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
        config.online = self.online;
        config.online_key_prefix = self.online_key_prefix;
    }
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<std::time::Duration> {
    anyhow::ensure!(value.is_finite() && value >= 0.1, "{flag} must be at least 0.1 (got {value})");
    Ok(std::time::Duration::from_secs_f64(value))
}

/// `admin=s3cret,read=r3ad` -> [("admin", "s3cret"), ("read", "r3ad")].
pub fn parse_tokens(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (role, token) =
                pair.split_once('=').ok_or_else(|| anyhow::anyhow!("API token '{pair}' must be role=token"))?;
            let role = role.trim();
            anyhow::ensure!(["read", "write", "admin"].contains(&role), "unknown API token role '{role}'");
            anyhow::ensure!(!token.trim().is_empty(), "empty API token for role '{role}'");
            Ok((role.to_string(), token.trim().to_string()))
        })
        .collect()
}

pub use client::{materialize, publish};
pub use dataset::dataset;
