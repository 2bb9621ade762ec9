//! The production backends a bench can run on: `--database-url
//! postgres://...` (registry and offline store) and `--online redis://...`
//! (online store). Each run gets its own PostgreSQL schema and Redis key
//! prefix, so a bench never meets other data on a shared server, and
//! [`Backends::clean_up`] drops the schema and deletes the keys afterwards.

use sqlx::{Connection, Executor};

/// What a bench runs on; `None` = the embedded default (Delta tables and a SQLite registry, in-process online).
#[derive(Clone, Debug, Default)]
pub struct Backends {
    pub database_url: Option<String>,
    pub online: Option<String>,
    /// This run's schema and key prefix (`wafer_bench_<pid>_<random>`).
    tag: String,
}

impl Backends {
    /// Reads `--flag value` pairs: the backend flags here, every other one
    /// by `own`, which returns whether it knows the flag. `usage` lists the
    /// bench's own flags for the error an unknown flag gets.
    pub fn parse_args(
        args: &[String],
        usage: &str,
        mut own: impl FnMut(&str, &str) -> anyhow::Result<bool>,
    ) -> anyhow::Result<Backends> {
        let mut backends = Backends::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().cloned().unwrap_or_default();
            match flag.as_str() {
                "--database-url" => backends.database_url = Some(value),
                "--online" => backends.online = Some(value),
                other if own(other, &value).map_err(|e| anyhow::anyhow!("{other} {value}: {e}"))? => {}
                other => anyhow::bail!("unknown flag {other}; flags: {usage} {}", Backends::FLAGS),
            }
        }
        Ok(backends)
    }

    pub const FLAGS: &str = "--database-url postgres://... --online redis://...";

    fn tag(&mut self) -> &str {
        if self.tag.is_empty() {
            self.tag = format!("wafer_bench_{}_{:08x}", std::process::id(), rand::random::<u32>());
        }
        &self.tag
    }

    /// Points `config` at these backends, on this run's schema and prefix.
    pub fn configure(&mut self, config: &mut wafer_host::config::Config) {
        let tag = self.tag().to_string();
        if let Some(url) = &self.database_url {
            config.database_url = Some(url.clone());
            config.database_schema = Some(tag.clone());
        }
        if let Some(url) = &self.online {
            config.online = Some(url.clone());
            config.online_key_prefix = format!("{tag}:");
        }
    }

    /// This run's schema (created on first use by the store).
    pub fn schema(&mut self) -> String {
        self.tag().to_string()
    }

    /// "SQLite + in-process", "PostgreSQL + Redis"...
    pub fn describe(&self) -> String {
        let offline = if self.database_url.is_some() { "PostgreSQL" } else { "Delta tables (SQLite registry)" };
        let online = match self.online.as_deref() {
            Some(url) if url.starts_with("redis") => "Redis",
            _ => "in-process",
        };
        format!("{offline} + {online}")
    }

    /// Drops this run's schema and deletes its keys. Call after the app is
    /// shut down; failures are reported, not fatal (the numbers are in).
    pub async fn clean_up(&self) {
        if self.tag.is_empty() {
            return;
        }
        if let Some(url) = &self.database_url
            && let Err(e) = drop_schema(url, &self.tag).await
        {
            eprintln!("could not drop schema {}: {e}", self.tag);
        }
        if let Some(url) = self.online.as_deref().filter(|u| u.starts_with("redis"))
            && let Err(e) = delete_keys(url, &format!("{}:", self.tag)).await
        {
            eprintln!("could not delete Redis keys {}:*: {e}", self.tag);
        }
    }
}

async fn drop_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    // The tag is [a-z0-9_] only, so it needs no quoting beyond this.
    conn.execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str()).await?;
    conn.close().await?;
    Ok(())
}

/// Deletes every key starting with `prefix` (which has no glob characters).
async fn delete_keys(url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(&keys).query_async::<()>(&mut conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
