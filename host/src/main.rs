//! The `wafer` binary: parse the command line, set up logging, hand over
//! to the library.

use clap::Parser;
use std::sync::Arc;
use wafer_host::cli::{Cli, Command};
use wafer_host::clock::SystemClock;
use wafer_host::config::Config;
use wafer_host::{App, demo, server};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=warn,sqlx=warn,cranelift_codegen=warn,wasmtime=warn".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(args) => {
            let config = args.into_config()?;
            let listener = tokio::net::TcpListener::bind(config.listen).await?;
            server::run(config, listener, shutdown_signal()).await
        }
        Command::Demo(args) => {
            // The demo's data is generated anew on every start; the compiled
            // module cache is kept so restarts are quick.
            for f in ["wafer.db", "wafer.db-wal", "wafer.db-shm"] {
                let _ = std::fs::remove_file(args.data_dir.join(f));
            }
            let mut config = Config::new(&args.data_dir);
            config.listen = args.listen;
            config.serving = demo::serving_config();
            args.stores.apply(&mut config);
            let listener = tokio::net::TcpListener::bind(config.listen).await?;
            let app = App::open(config, Arc::new(SystemClock)).await?;
            let end = demo::load(&app.wafer).await?;
            let training = args.data_dir.join("training_entities.csv");
            std::fs::write(&training, demo::training_entities_csv(end))?;
            let addr = listener.local_addr()?;
            println!("wafer demo is serving on http://{addr}. Try:");
            println!(
                "  curl -s -XPOST {addr}/v1/features/online -H 'content-type: application/json' \
                 -d '{{\"entities\":[{{\"ticker\":\"AAPL\"}}],\"feature_groups\":[\"technical\"]}}'"
            );
            println!(
                "  curl -s -XPOST {addr}/v1/enrich -H 'content-type: application/json' \
                 -d '{{\"prompt\":\"Should I add to my position?\",\"task_type\":\"market_briefing\",\"entities\":{{\"ticker\":\"AAPL\"}}}}'"
            );
            println!(
                "  wafer dataset --server http://{addr} --entities {} --out training.csv \
                 --features technical:rsi_14,risk:volatility_30d,valuation:pe_ratio",
                training.display()
            );
            server::serve(app, listener, shutdown_signal()).await
        }
        // `error: <reason>` alone, without anyhow's report layout: for a
        // rejected request the reason is the server's message.
        client => {
            if let Err(e) = wafer_host::cli::run_client(client).await {
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
