//! Server configuration: flags and environment (see CONTRACT.md "CLI"),
//! with the documented defaults.

use crate::runtime::Limits;
use crate::service::ClusterSettings;
use std::net::SocketAddr;
use std::path::PathBuf;

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
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            data_dir: data_dir.into(),
            database_url: None,
            database_schema: None,
            online: None,
            online_key_prefix: "wafer:".into(),
            tokens: Vec::new(),
            insecure_no_auth: false,
            limits: Limits::default(),
            max_body_bytes: 64 << 20,
            cluster: ClusterSettings::default(),
        }
    }
}
