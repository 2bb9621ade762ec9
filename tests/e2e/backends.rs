//! The main path on the production backends: PostgreSQL (registry and
//! offline store) and Redis (online store), the real servers named by
//! `WAFER_TEST_DATABASE_URL` and `WAFER_TEST_REDIS_URL`. Without them the
//! test says it skipped and passes; `.ci/run` always sets both.
//!
//! Each run isolates itself in its own PostgreSQL schema and Redis key
//! prefix, and removes both at the end.

use reqwest::StatusCode;
use serde_json::json;
use wafer_tests::TestApp;
use wafer_tests::harness::assert_close;

struct Backends {
    database_url: String,
    redis_url: String,
}

fn backends() -> Option<Backends> {
    match (std::env::var("WAFER_TEST_DATABASE_URL"), std::env::var("WAFER_TEST_REDIS_URL")) {
        (Ok(database_url), Ok(redis_url)) => Some(Backends { database_url, redis_url }),
        _ => {
            eprintln!("skipped the PostgreSQL + Redis backends: WAFER_TEST_DATABASE_URL / WAFER_TEST_REDIS_URL unset");
            None
        }
    }
}

/// Drops the test's schema even when the test fails.
struct DropSchema {
    url: String,
    schema: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // A fresh thread and runtime: the test's runtime may be gone.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&url).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).execute(&pool).await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn the_main_path_works_on_postgres_and_redis_and_survives_a_restart() {
    let Some(b) = backends() else { return };
    let tag = format!("{:08x}", rand_tag());
    let schema = format!("wafer_e2e_{tag}");
    let _cleanup = DropSchema { url: b.database_url.clone(), schema: schema.clone() };
    let mut app = TestApp::spawn_with(|c| {
        c.database_url = Some(b.database_url.clone());
        c.database_schema = Some(schema.clone());
        c.online = Some(b.redis_url.clone());
        c.online_key_prefix = format!("wafer-e2e:{tag}:");
    })
    .await;
    let (status, ready) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{ready}");

    let prices = app.setup_technical(&["AAPL", "MSFT"], 260).await;
    let job = app.materialize_and_wait("technical").await;
    assert_eq!(job["state"], json!("succeeded"), "{job}");
    assert_eq!(job["entities_done"], json!(2), "{job}");

    let check = |body: &serde_json::Value, source: &str| {
        for (i, ticker) in ["AAPL", "MSFT"].iter().enumerate() {
            let f = &body["results"][i]["features"];
            assert_eq!(f.as_object().map(|o| o.len()), Some(12), "{body}");
            for (name, v) in f.as_object().unwrap() {
                assert_eq!(v["status"], json!("fresh"), "{ticker} {name}: {v}");
                assert_eq!(v["source"], json!(source), "{ticker} {name}: {v}");
            }
            let closes = prices.closes(ticker);
            let last20 = &closes[closes.len() - 20..];
            let sma20 = last20.iter().sum::<f64>() / 20.0;
            assert_close(f["technical:sma_20"]["value"].as_f64().unwrap(), sma20, 1e-9, "sma_20");
        }
    };
    let (status, body) = app.read_groups(&["AAPL", "MSFT"], &["technical"], "none").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    check(&body, "online");

    // A restarted host finds everything in the shared stores: the values in
    // Redis (still online hits), the transform and jobs in PostgreSQL.
    app.restart().await;
    let (_, body) = app.read_groups(&["AAPL", "MSFT"], &["technical"], "none").await;
    check(&body, "online");
    let (_, t) = app.get("/v1/transforms/indicators").await;
    assert_eq!(t["active_version"], json!("1.0.0"), "{t}");

    // Deleting the group removes its Redis keys and offline rows.
    let (status, _) = app.delete("/v1/feature-groups/technical").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

fn rand_tag() -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    nanos ^ std::process::id().rotate_left(16)
}
