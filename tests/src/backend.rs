//! The backend pairs a [`TestApp`](crate::TestApp) can run on, and
//! [`backend_tests!`](crate::backend_tests), which runs one behavioural test
//! on every pair.
//!
//! - [`Backend::Embedded`]: SQLite in the test's temp data dir and the
//!   in-process online store. Always available.
//! - [`Backend::Production`]: the real PostgreSQL and Redis servers named by
//!   `WAFER_TEST_DATABASE_URL` and `WAFER_TEST_REDIS_URL`. Each app gets its
//!   own schema and key prefix ([`Isolation`]) and removes both when dropped,
//!   even when the test panics. Without the variables these tests say they
//!   skipped and pass, so a plain `cargo test` needs no servers.

use std::io::Write;
use wafer_host::config::Config;

/// Which stores a test server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (registry + offline) and the in-process online store.
    Embedded,
    /// PostgreSQL (registry + offline) and Redis (online).
    Production,
}

impl Backend {
    /// How reports name the pair.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "SQLite + memory",
            Backend::Production => "PostgreSQL + Redis",
        }
    }

    /// Whether `test` (a module path) can run on this pair here. When it
    /// cannot, says so on stderr, past the test harness's output capture so
    /// a plain `cargo test` shows what it skipped, naming the test as
    /// `cargo test` lists it (without the crate name).
    pub fn runs(self, test: &str) -> bool {
        if self == Backend::Embedded || production_urls().is_some() {
            return true;
        }
        let test = test.split_once("::").map_or(test, |(_crate, path)| path);
        let line = format!("skipped {test} on {}: WAFER_TEST_DATABASE_URL / WAFER_TEST_REDIS_URL unset\n", self.name());
        // `eprintln!` would be captured and shown only for failing tests.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        false
    }
}

/// `(database URL, Redis URL)` when both variables are set.
fn production_urls() -> Option<(String, String)> {
    match (std::env::var("WAFER_TEST_DATABASE_URL"), std::env::var("WAFER_TEST_REDIS_URL")) {
        (Ok(database), Ok(redis)) => Some((database, redis)),
        _ => None,
    }
}

/// One production test app's private corner of the shared servers: a
/// PostgreSQL schema and a Redis key prefix, both named after a random tag.
pub(crate) struct Isolation {
    database_url: String,
    redis_url: String,
    /// `wafer_e2e_<tag>`: the schema, and the `application_name` of the
    /// server's connections, so cleanup can find them.
    schema: String,
    /// `wafer-e2e:<tag>:` (no glob characters, so it is its own pattern).
    prefix: String,
}

impl Isolation {
    /// A fresh tag on the servers the environment names.
    ///
    /// # Panics
    /// When the variables are unset: check [`Backend::runs`] first.
    pub(crate) fn new() -> Isolation {
        let (database_url, redis_url) =
            production_urls().expect("WAFER_TEST_DATABASE_URL and WAFER_TEST_REDIS_URL must be set");
        let tag = format!("{:016x}", rand::random::<u64>());
        Isolation { database_url, redis_url, schema: format!("wafer_e2e_{tag}"), prefix: format!("wafer-e2e:{tag}:") }
    }

    /// Points `config` at the production servers, inside this corner.
    pub(crate) fn configure(&self, config: &mut Config) {
        let separator = if self.database_url.contains('?') { '&' } else { '?' };
        config.database_url = Some(format!("{}{separator}application_name={}", self.database_url, self.schema));
        config.database_schema = Some(self.schema.clone());
        config.online = Some(self.redis_url.clone());
        config.online_key_prefix = self.prefix.clone();
    }

    /// Every Redis key under the prefix, sorted.
    pub(crate) async fn keys(&self) -> redis::RedisResult<Vec<String>> {
        let client = redis::Client::open(self.redis_url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut keys = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut conn)
                .await?;
            keys.extend(batch);
            if next == 0 {
                keys.sort();
                return Ok(keys);
            }
            cursor = next;
        }
    }

    /// Drops the schema and deletes the keys. Blocking, on a fresh thread
    /// with its own runtime: it runs from `Drop`, where the test's runtime
    /// may be single-threaded (blocked by this very call) or shutting down.
    pub(crate) fn clean_up(&self) {
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("cleanup runtime");
                rt.block_on(async {
                    let schema = self.drop_schema().await;
                    let keys = self.delete_keys().await;
                    schema.and(keys)
                })
            })
            .join()
        });
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("cleaning up schema {} / prefix {} failed: {e}", self.schema, self.prefix)
            }
            Err(_) => eprintln!("cleaning up schema {} / prefix {} panicked", self.schema, self.prefix),
        }
    }

    async fn drop_schema(&self) -> Result<(), String> {
        let pool = sqlx::PgPool::connect(&self.database_url).await.map_err(|e| e.to_string())?;
        // The server may still hold connections, even inside a transaction
        // its test will never let finish (a panic mid-request on a
        // single-threaded runtime): end them so the DROP cannot wait on
        // their locks. A lock timeout bounds any other surprise.
        let mut result = Err(String::new());
        for _ in 0..3 {
            let _ = sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&self.schema)
            .execute(&pool)
            .await;
            let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
            let dropped = async {
                sqlx::query("SET LOCAL lock_timeout = '5s'").execute(&mut *tx).await?;
                sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema)).execute(&mut *tx).await?;
                tx.commit().await
            }
            .await;
            result = dropped.map_err(|e| e.to_string());
            if result.is_ok() {
                break;
            }
        }
        pool.close().await;
        result
    }

    async fn delete_keys(&self) -> Result<(), String> {
        let keys = self.keys().await.map_err(|e| e.to_string())?;
        if keys.is_empty() {
            return Ok(());
        }
        let client = redis::Client::open(self.redis_url.as_str()).map_err(|e| e.to_string())?;
        let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
        for chunk in keys.chunks(1_000) {
            redis::cmd("DEL").arg(chunk).query_async::<()>(&mut conn).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Runs each named `async fn(Backend)` in the calling module as a test on
/// every backend pair: `<module>::embedded::<name>` and
/// `<module>::production::<name>`. The production variant says it skipped
/// and passes when the production servers are not configured.
///
/// ```ignore
/// backend_tests!(pushed_values_are_served, a_restart_keeps_them);
///
/// async fn pushed_values_are_served(backend: Backend) {
///     let app = TestApp::spawn_on(backend, |_| {}).await;
///     // ...
/// }
/// ```
///
/// The tests are plain functions (rustfmt and the IDE see them); the macro
/// only generates the `#[tokio::test]` wrappers. A function missing from
/// the list is dead code, which clippy's `-D warnings` refuses. Every test
/// runs on a 2-worker runtime: the server and the test share it.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Embedded).await;
                }
            )+
        }

        mod production {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::Backend::Production.runs(concat!(module_path!(), "::", stringify!($name))) {
                        super::$name($crate::Backend::Production).await;
                    }
                }
            )+
        }
    };
}
