//! Assembles stores, runtime and API from a [`Config`] and serves until
//! shutdown. `run` takes an already-bound listener and a shutdown future,
//! which is what makes the server easy to start in tests.

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, OfflineBackend};
use crate::runtime::WasmRuntime;
use crate::service::{Wafer, WaferSettings};
use crate::store::delta::{DeltaOffline, FlushPolicy};
use crate::store::memory::MemoryOnlineStore;
use crate::store::postgres::PostgresStore;
use crate::store::redis::RedisOnlineStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{OfflineStore, OnlineStore, Registry, WriteLog};
use anyhow::{Context, bail};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A ready-to-serve wafer: the service handle and the HTTP router.
pub struct App {
    pub wafer: Wafer,
    pub config: Config,
}

impl App {
    /// Opens (or creates) the stores named by `config` and loads the
    /// registry. Time comes from `clock`.
    pub async fn open(config: Config, clock: SharedClock) -> anyhow::Result<App> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        let (registry, offline, offline_summary) = open_database(&config).await?;
        let online = open_online(&config, clock.clone()).await?;
        let runtime = Arc::new(
            WasmRuntime::new(Some(config.data_dir.join("modules")), config.limits.clone())
                .context("starting the Wasm runtime")?,
        );
        tracing::info!(offline = %offline_summary, online = %online.summary(), "stores ready");
        let settings = WaferSettings {
            cluster: config.cluster.clone(),
            serving: config.serving.clone(),
            max_future_skew: config.max_future_skew,
            source_cache_bytes: config.source_cache_bytes,
        };
        let wafer = Wafer::new(registry, offline, online, runtime, clock, settings).await?;
        Ok(App { wafer, config })
    }

    pub fn router(&self) -> axum::Router {
        crate::api::router(
            self.wafer.clone(),
            self.config.max_body_bytes,
            crate::api::auth::Tokens::new(&self.config.tokens),
        )
    }
}

/// The registry (with the write log) and the offline store: PostgreSQL for
/// `postgres://` URLs, otherwise SQLite (`sqlite:PATH`, or
/// `<data dir>/wafer.db` by default); offline history in Delta tables
/// unless it stays in PostgreSQL (see [`Config::offline`]).
async fn open_database(config: &Config) -> anyhow::Result<(Arc<dyn Registry>, Arc<dyn OfflineStore>, String)> {
    match config.database_url.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let pg = Arc::new(
                PostgresStore::connect(url, config.database_schema.as_deref())
                    .await
                    .with_context(|| format!("connecting to PostgreSQL at {}", redact(url)))?,
            );
            let tables = config.offline == Some(OfflineBackend::Delta)
                || (config.offline.is_none() && config.offline_url.is_some());
            if tables {
                let delta = open_tables(config, pg.clone())?;
                let summary = format!("{} (write log in PostgreSQL at {})", delta.summary(), redact(url));
                return Ok((pg, delta, summary));
            }
            Ok((pg.clone(), pg, format!("PostgreSQL at {}", redact(url))))
        }
        Some(url) if !url.starts_with("sqlite:") => {
            bail!("database URL '{}' is not supported; use postgres://... or sqlite:PATH", redact(url))
        }
        url => {
            let path = match url.map(|u| u.trim_start_matches("sqlite:").trim_start_matches("//")) {
                Some(p) if !p.is_empty() => std::path::PathBuf::from(p),
                _ => config.data_dir.join("wafer.db"),
            };
            if config.offline == Some(OfflineBackend::Postgres) {
                bail!("--offline postgres needs a PostgreSQL database (--database-url postgres://...)");
            }
            let sqlite =
                Arc::new(SqliteStore::open(&path).await.with_context(|| format!("opening {}", path.display()))?);
            let delta = open_tables(config, sqlite.clone())?;
            // A SQLite registry serves one process: nothing else writes
            // its log or (as wafer runs) its tables.
            delta.set_exclusive(true);
            let imported = delta.import_sqlite(&sqlite).await.context("importing offline rows into the tables")?;
            if imported.source_rows + imported.feature_rows > 0 || !imported.skipped.is_empty() {
                tracing::info!(
                    source_rows = imported.source_rows,
                    feature_rows = imported.feature_rows,
                    skipped = ?imported.skipped,
                    "moved the offline rows of {} into the tables",
                    path.display()
                );
            }
            let summary = format!("{} (write log in SQLite at {})", delta.summary(), path.display());
            Ok((sqlite, delta, summary))
        }
    }
}

/// The Delta tables under `--offline-url` (default `<data dir>/offline`),
/// logging writes to `log`, with this host's flusher running.
fn open_tables(config: &Config, log: Arc<dyn WriteLog>) -> anyhow::Result<Arc<DeltaOffline>> {
    let root = match &config.offline_url {
        Some(url) => url.clone(),
        None => config.data_dir.join("offline").to_string_lossy().into_owned(),
    };
    let options = config.offline_options.clone().into_iter().collect();
    let policy = FlushPolicy { age: config.offline_flush_age, ..FlushPolicy::default() };
    let delta = DeltaOffline::open(&root, options, log, &config.cluster.host_id, policy)
        .with_context(|| format!("opening the offline tables at {}", redact(&root)))?;
    delta.spawn_flusher();
    Ok(delta)
}

/// The online store: Redis for `redis://` (or `rediss://`) URLs, else the
/// in-process store.
async fn open_online(config: &Config, clock: SharedClock) -> anyhow::Result<Arc<dyn OnlineStore>> {
    match config.online.as_deref() {
        None | Some("memory") => Ok(Arc::new(MemoryOnlineStore::new(clock))),
        Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => Ok(Arc::new(
            RedisOnlineStore::connect(url, &config.online_key_prefix)
                .await
                .with_context(|| format!("connecting to Redis at {}", redact(url)))?,
        )),
        Some(other) => bail!("online store '{}' is not supported; use memory or redis://...", redact(other)),
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes
/// in-flight requests.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    check_exposure(&app.config, addr)?;
    tracing::info!(%addr, host = %app.config.cluster.host_id, "wafer serving");
    let served = axum::serve(listener, app.router()).with_graceful_shutdown(shutdown).await;
    app.wafer.shutdown().await;
    served?;
    Ok(())
}

/// Opens the stores with the system clock and serves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = App::open(config, Arc::new(SystemClock)).await?;
    serve(app, listener, shutdown).await
}

/// Without tokens the API is open, so it may only face this machine.
fn check_exposure(config: &Config, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    if config.tokens.is_empty() && !addr.ip().is_loopback() && !config.insecure_no_auth {
        bail!(
            "refusing to listen on {addr} without API tokens: set WAFER_API_TOKENS (e.g. admin=...,read=...) \
             or pass --insecure-no-auth"
        );
    }
    Ok(())
}

/// Hides credentials in URLs before they reach logs or errors.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}
