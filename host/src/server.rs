//! Assembles stores, runtime and API from a [`Config`] and serves until
//! shutdown. `run` takes an already-bound listener and a shutdown future,
//! which is what makes the server easy to start in tests.

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::runtime::WasmRuntime;
use crate::service::Wafer;
use crate::store::memory::MemoryOnlineStore;
use crate::store::sqlite::SqliteStore;
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
        if let Some(url) = &config.database_url
            && !url.starts_with("sqlite:")
        {
            bail!("database URL '{}' is not supported by this build; use SQLite (the default)", redact(url));
        }
        if let Some(online) = &config.online
            && online != "memory"
        {
            bail!("online store '{}' is not supported by this build; use 'memory' (the default)", redact(online));
        }
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
        let db_path = config.data_dir.join("wafer.db");
        let sqlite =
            Arc::new(SqliteStore::open(&db_path).await.with_context(|| format!("opening {}", db_path.display()))?);
        let online = Arc::new(MemoryOnlineStore::new(clock.clone()));
        let runtime = Arc::new(
            WasmRuntime::new(Some(config.data_dir.join("modules")), config.limits.clone())
                .context("starting the Wasm runtime")?,
        );
        tracing::info!(
            offline = %format!("SQLite at {}", db_path.display()),
            online = %crate::store::OnlineStore::summary(online.as_ref()),
            "stores ready"
        );
        let wafer = Wafer::new(sqlite.clone(), sqlite, online, runtime, clock).await?;
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

/// Serves `app` on `listener` until `shutdown` completes, then finishes
/// in-flight requests.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    check_exposure(&app.config, addr)?;
    tracing::info!(%addr, "wafer serving");
    axum::serve(listener, app.router()).with_graceful_shutdown(shutdown).await?;
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
