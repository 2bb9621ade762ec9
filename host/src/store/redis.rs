//! The Redis online store: the latest row per (group, entity) in one Redis
//! hash each, written by a compare-and-set Lua script, with a TTL per write.
//!
//! # Key layout
//!
//! One hash per (group, entity): `<prefix>{<entity>}:<group>`, e.g.
//! `wafer:{AAPL}:prices_daily`. The entity key is the hash tag, so every
//! group of one entity lands in one Redis Cluster slot. Prefix, entity and
//! group are escaped (`%` -> `%25`, `{` -> `%7B`, `}` -> `%7D`), so a key holds
//! exactly one `{...}`: the tag is always the whole entity key, and
//! `<prefix>{*}:<group>` matches one group's keys and nothing else. (Entity
//! keys are never empty, so the tag is never the `{}` Redis would ignore.)
//!
//! Fields: `e` (event time) and `c` (created time), both microseconds since
//! the epoch in decimal, `v`, the values as one compact JSON object, the
//! same encoding the SQL stores use, and `p`, the row's provenance in its
//! text form `name@version#sha256`, absent for rows without one (pushed
//! rows, and hashes written before provenance was recorded). One field for
//! the values because rows are always read whole: one `HMGET` of four
//! fields per entity.
//!
//! Writes go through [`WRITE_SCRIPT`], atomic per key: a row replaces the
//! stored one only if its (event, created) is not older, then the key's expiry
//! is set from the write's TTL (or removed when it has none), as the
//! in-process store does. A batch is one pipeline: one round trip per call.

use super::{OnlineStore, StoreError, StoreResult};
use crate::model::{EntityKey, FeatureRow, Provenance, Timestamp};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionAddr, RedisError, Script};
use std::sync::LazyLock;
use std::time::Duration;

/// KEYS[1] = the row's key; ARGV = event micros, created micros, values JSON,
/// TTL in milliseconds (0 = none), provenance text ('' = none). Returns 1 if
/// the row was stored, else 0.
///
/// Times are compared as decimal strings, not Lua numbers: Lua numbers are
/// doubles and would round microsecond timestamps outside +-2^53.
///
/// A stored row without provenance deletes the field, so a pushed row never
/// shows the provenance of the computed row it replaced.
const WRITE_SCRIPT: &str = r#"
local function cmp(a, b)
  if a == b then return 0 end
  local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
  if na ~= nb then return na and -1 or 1 end
  local r
  if #a ~= #b then r = (#a < #b) and -1 or 1 else r = (a < b) and -1 or 1 end
  if na then return -r end
  return r
end
local cur = redis.call('HMGET', KEYS[1], 'e', 'c')
if cur[1] then
  local ce = cmp(ARGV[1], cur[1])
  if ce < 0 or (ce == 0 and cmp(ARGV[2], cur[2] or ARGV[2]) < 0) then return 0 end
end
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], 'e', ARGV[1], 'c', ARGV[2], 'v', ARGV[3], 'p', ARGV[5])
else
  redis.call('HSET', KEYS[1], 'e', ARGV[1], 'c', ARGV[2], 'v', ARGV[3])
  redis.call('HDEL', KEYS[1], 'p')
end
if ARGV[4] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
else
  redis.call('PERSIST', KEYS[1])
end
return 1
"#;

static SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(WRITE_SCRIPT));

/// How many keys one `SCAN` step asks for when deleting a group.
const SCAN_COUNT: usize = 1_000;

/// Latest feature rows per group and entity, in Redis.
pub struct RedisOnlineStore {
    /// Cheap to clone; reconnects by itself after the server goes away.
    conn: ConnectionManager,
    /// Escaped once; see the key layout above.
    prefix: String,
    addr: String,
}

impl RedisOnlineStore {
    /// Connects to `url` (`redis://[:password@]host:port[/db]`); every key
    /// this store touches starts with `key_prefix`.
    pub async fn connect(url: &str, key_prefix: &str) -> StoreResult<Self> {
        let client = Client::open(url).map_err(|e| unavailable(format!("bad Redis URL: {e}")))?;
        let addr = describe(&client.get_connection_info().addr);
        // Bounded, so a dead server fails calls instead of hanging them; the
        // manager keeps reconnecting in the background.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(5))
            .set_response_timeout(Duration::from_secs(5))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| unavailable(format!("cannot connect to {addr}: {e}")))?;
        Ok(RedisOnlineStore { conn, prefix: escape(key_prefix), addr })
    }

    fn key(&self, group: &str, entity: &EntityKey) -> String {
        format!("{}{{{}}}:{}", self.prefix, escape(entity.as_str()), escape(group))
    }

    /// The `SCAN MATCH` pattern for every key of `group`.
    fn group_pattern(&self, group: &str) -> String {
        format!("{}{{*}}:{}", glob_escape(&self.prefix), glob_escape(&escape(group)))
    }
}

fn unavailable(message: String) -> StoreError {
    StoreError::Unavailable { backend: "redis", message }
}

fn redis_error(e: RedisError) -> StoreError {
    unavailable(e.to_string())
}

/// "host:port" or the socket path; never the credentials in the URL.
fn describe(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
        ConnectionAddr::Unix(path) => format!("unix:{}", path.display()),
    }
}

/// Escapes the bytes that would change where a key's hash tag is.
fn escape(s: &str) -> String {
    if !s.contains(['%', '{', '}']) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for ch in s.chars() {
        match ch {
            '%' => out.push_str("%25"),
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            _ => out.push(ch),
        }
    }
    out
}

/// Escapes the characters `SCAN MATCH` treats as a glob.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn ttl_millis(ttl: Option<Duration>) -> u64 {
    // At least 1 ms: 0 means "no TTL" to the script.
    ttl.map_or(0, |ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
}

/// `e`, `c`, `v` and `p` of one hash.
type StoredRow = (Option<i64>, Option<i64>, Option<Vec<u8>>, Option<String>);

fn decode(entity: &EntityKey, stored: StoredRow) -> StoreResult<Option<FeatureRow>> {
    match stored {
        (None, None, None, _) => Ok(None),
        (Some(e), Some(c), Some(v), p) => {
            let values = serde_json::from_slice::<super::stored::Values>(&v)
                .map_err(|err| StoreError::Corrupt(format!("stored values of {entity} are unreadable: {err}")))?
                .0;
            let provenance = p
                .map(|p| Provenance::parse(&p))
                .transpose()
                .map_err(|err| StoreError::Corrupt(format!("stored provenance of {entity}: {err}")))?;
            Ok(Some(FeatureRow {
                entity: entity.clone(),
                event_ts: Timestamp(e),
                created: Timestamp(c),
                // Online rows serve the newest value; only the offline
                // store's point-in-time reads look at who gave the time.
                created_given: false,
                values,
                provenance,
            }))
        }
        _ => Err(StoreError::Corrupt(format!("the Redis hash of {entity} lacks a field"))),
    }
}

#[async_trait]
impl OnlineStore for RedisOnlineStore {
    async fn write(&self, group: &str, rows: &[FeatureRow], ttl: Option<Duration>) -> StoreResult<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let ttl = ttl_millis(ttl);
        let mut pipe = redis::pipe();
        // Loading first (cheap, idempotent) means EVALSHA never meets a
        // server that lost its script cache to a restart or SCRIPT FLUSH.
        pipe.load_script(&SCRIPT).ignore();
        // Rows of one write usually share a provenance: formatted once.
        let mut formatted: Option<(&Provenance, String)> = None;
        for row in rows {
            let values = serde_json::to_string(&row.values)
                .map_err(|e| StoreError::Corrupt(format!("cannot encode values: {e}")))?;
            if let Some(p) = &row.provenance
                && formatted.as_ref().is_none_or(|(seen, _)| *seen != p)
            {
                formatted = Some((p, p.to_string()));
            }
            let p = match (&row.provenance, &formatted) {
                (Some(_), Some((_, text))) => text.as_str(),
                _ => "",
            };
            let mut call = SCRIPT.prepare_invoke();
            call.key(self.key(group, &row.entity))
                .arg(row.event_ts.micros())
                .arg(row.created.micros())
                .arg(values)
                .arg(ttl)
                .arg(p);
            pipe.invoke_script(&call).ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await.map_err(redis_error)
    }

    async fn read(&self, group: &str, entities: &[EntityKey]) -> StoreResult<Vec<Option<FeatureRow>>> {
        if entities.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for entity in entities {
            pipe.cmd("HMGET").arg(self.key(group, entity)).arg("e").arg("c").arg("v").arg("p");
        }
        let stored: Vec<StoredRow> = pipe.query_async(&mut self.conn.clone()).await.map_err(redis_error)?;
        if stored.len() != entities.len() {
            return Err(StoreError::Corrupt(format!("{} replies to {} reads", stored.len(), entities.len())));
        }
        entities.iter().zip(stored).map(|(entity, stored)| decode(entity, stored)).collect()
    }

    async fn delete_group(&self, group: &str) -> StoreResult<()> {
        let pattern = self.group_pattern(group);
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(&keys).query_async::<()>(&mut conn).await.map_err(redis_error)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        redis::cmd("PING").query_async::<()>(&mut self.conn.clone()).await.map_err(redis_error)
    }

    fn summary(&self) -> String {
        format!("Redis at {}", self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;
    use std::time::Instant;

    fn row(entity: &str, event: i64, created: i64, x: f64) -> FeatureRow {
        FeatureRow {
            entity: EntityKey(entity.to_string()),
            event_ts: Timestamp::from_secs(event),
            created: Timestamp::from_secs(created),
            created_given: false,
            values: [("x".to_string(), Value::Float64(x))].into_iter().collect(),
            provenance: None,
        }
    }

    fn key(k: &str) -> EntityKey {
        EntityKey(k.to_string())
    }

    /// A store on its own random key prefix, or `None` (test skipped) when
    /// `WAFER_TEST_REDIS_URL` is unset.
    async fn store() -> Option<RedisOnlineStore> {
        let Ok(url) = std::env::var("WAFER_TEST_REDIS_URL") else {
            eprintln!("WAFER_TEST_REDIS_URL is unset: the Redis backend was skipped");
            return None;
        };
        let prefix = format!("wafer-test:{:016x}:", rand::random::<u64>());
        Some(RedisOnlineStore::connect(&url, &prefix).await.expect("Redis at WAFER_TEST_REDIS_URL"))
    }

    /// Every key under the test's prefix.
    async fn keys(store: &RedisOnlineStore) -> Vec<String> {
        let mut conn = store.conn.clone();
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", glob_escape(&store.prefix)))
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut conn)
                .await
                .unwrap();
            out.extend(keys);
            if next == 0 {
                out.sort();
                return out;
            }
            cursor = next;
        }
    }

    async fn cleanup(store: &RedisOnlineStore) {
        let keys = keys(store).await;
        if !keys.is_empty() {
            redis::cmd("DEL").arg(&keys).query_async::<()>(&mut store.conn.clone()).await.unwrap();
        }
    }

    async fn pttl(store: &RedisOnlineStore, group: &str, entity: &str) -> i64 {
        redis::cmd("PTTL").arg(store.key(group, &key(entity))).query_async(&mut store.conn.clone()).await.unwrap()
    }

    #[tokio::test]
    async fn rows_round_trip_with_every_value_type() {
        let Some(store) = store().await else { return };
        let mut r = row("AAPL", 20, 21, 1.5);
        r.values.extend([
            ("i".to_string(), Value::Int64(-7)),
            ("b".to_string(), Value::Bool(true)),
            ("s".to_string(), Value::String("a \"quoted\" {word}".into())),
            ("fl".to_string(), Value::Float64List(vec![1.0, 2.5])),
            ("sl".to_string(), Value::StringList(vec!["x".into(), "y".into()])),
            ("n".to_string(), Value::Null),
        ]);
        store.write("g", std::slice::from_ref(&r), None).await.unwrap();
        assert_eq!(store.read("g", &[key("AAPL")]).await.unwrap(), vec![Some(r)]);
        store.ping().await.unwrap();
        assert_eq!(store.summary(), "Redis at 127.0.0.1:6379");
        cleanup(&store).await;
    }

    #[tokio::test]
    async fn provenance_is_kept_with_the_row_and_old_hashes_without_it_still_read() {
        let Some(store) = store().await else { return };
        let by = |version: &str| {
            Some(Provenance { transform: "indicators".into(), version: version.into(), sha256: "ab".repeat(32) })
        };
        let with = |event: i64, version: &str| FeatureRow { provenance: by(version), ..row("AAPL", event, event, 1.0) };
        store.write("g", &[with(20, "1.0.0"), with(10, "0.9.0")], None).await.unwrap();
        assert_eq!(store.read("g", &[key("AAPL")]).await.unwrap(), vec![Some(with(20, "1.0.0"))]);
        // An older row with another provenance changes nothing; a newer one
        // without provenance (a pushed row) takes the field away.
        store.write("g", &[with(15, "2.0.0")], None).await.unwrap();
        assert_eq!(store.read("g", &[key("AAPL")]).await.unwrap(), vec![Some(with(20, "1.0.0"))]);
        store.write("g", &[row("AAPL", 30, 30, 2.0)], None).await.unwrap();
        assert_eq!(store.read("g", &[key("AAPL")]).await.unwrap(), vec![Some(row("AAPL", 30, 30, 2.0))]);
        store.write("g", &[with(40, "1.1.0")], None).await.unwrap();
        assert_eq!(store.read("g", &[key("AAPL")]).await.unwrap(), vec![Some(with(40, "1.1.0"))]);

        // A hash as stores before provenance wrote it: no `p` field.
        let old = store.key("g", &key("OLD"));
        redis::cmd("HSET")
            .arg(&old)
            .arg(&["e", "5000000", "c", "6000000", "v", r#"{"x":1.0}"#][..])
            .query_async::<()>(&mut store.conn.clone())
            .await
            .unwrap();
        assert_eq!(store.read("g", &[key("OLD")]).await.unwrap(), vec![Some(row("OLD", 5, 6, 1.0))]);
        cleanup(&store).await;
    }

    #[tokio::test]
    async fn an_older_event_never_overwrites_a_newer_one() {
        let Some(store) = store().await else { return };
        store.write("g", &[row("AAPL", 20, 20, 2.0)], None).await.unwrap();
        store.write("g", &[row("AAPL", 10, 99, 1.0)], None).await.unwrap();
        assert_eq!(store.read("g", &[key("AAPL")]).await.unwrap(), vec![Some(row("AAPL", 20, 20, 2.0))]);
        // Within one batch too.
        store.write("g", &[row("MSFT", 30, 30, 3.0), row("MSFT", 25, 40, 4.0)], None).await.unwrap();
        assert_eq!(store.read("g", &[key("MSFT")]).await.unwrap(), vec![Some(row("MSFT", 30, 30, 3.0))]);
        store.write("g", &[row("AAPL", 21, 21, 5.0)], None).await.unwrap();
        assert_eq!(store.read("g", &[key("AAPL")]).await.unwrap(), vec![Some(row("AAPL", 21, 21, 5.0))]);
        // Negative times and ones past 2^53 microseconds compare exactly.
        let at = |event: i64, x: f64| FeatureRow { event_ts: Timestamp(event), ..row("BIG", 0, 0, x) };
        store.write("g", &[at(-5, 1.0), at(-10, 2.0)], None).await.unwrap();
        assert_eq!(store.read("g", &[key("BIG")]).await.unwrap(), vec![Some(at(-5, 1.0))]);
        let big = (1_i64 << 53) + 1;
        store.write("g", &[at(big, 3.0), at(big - 1, 4.0), at(9, 5.0)], None).await.unwrap();
        assert_eq!(store.read("g", &[key("BIG")]).await.unwrap(), vec![Some(at(big, 3.0))]);
        cleanup(&store).await;
    }

    #[tokio::test]
    async fn a_correction_of_the_same_event_wins_only_when_created_later() {
        let Some(store) = store().await else { return };
        store.write("g", &[row("AAPL", 20, 30, 1.0)], None).await.unwrap();
        store.write("g", &[row("AAPL", 20, 25, 2.0)], None).await.unwrap();
        assert_eq!(store.read("g", &[key("AAPL")]).await.unwrap(), vec![Some(row("AAPL", 20, 30, 1.0))]);
        store.write("g", &[row("AAPL", 20, 31, 3.0)], None).await.unwrap();
        assert_eq!(store.read("g", &[key("AAPL")]).await.unwrap(), vec![Some(row("AAPL", 20, 31, 3.0))]);
        cleanup(&store).await;
    }

    #[tokio::test]
    async fn a_write_sets_its_ttl_as_the_key_expiry() {
        let Some(store) = store().await else { return };
        let ttl = Some(Duration::from_secs(60));
        store.write("g", &[row("AAPL", 20, 20, 1.0)], ttl).await.unwrap();
        store.write("g", &[row("KEEP", 20, 20, 3.0)], None).await.unwrap();
        let left = pttl(&store, "g", "AAPL").await;
        assert!((59_000..=60_000).contains(&left), "PTTL {left}");
        assert_eq!(pttl(&store, "g", "KEEP").await, -1, "no TTL, no expiry");

        // A rejected (older) write leaves the expiry alone; an accepted one
        // without a TTL removes it.
        store.write("g", &[row("AAPL", 10, 10, 2.0)], Some(Duration::from_secs(5))).await.unwrap();
        assert!(pttl(&store, "g", "AAPL").await > 5_000);
        store.write("g", &[row("AAPL", 30, 30, 2.0)], None).await.unwrap();
        assert_eq!(pttl(&store, "g", "AAPL").await, -1);

        // Expiry really removes the row (a short wait, not the 60 s above).
        store.write("g", &[row("SHORT", 20, 20, 4.0)], Some(Duration::from_millis(50))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(store.read("g", &[key("SHORT"), key("KEEP")]).await.unwrap()[0], None);
        cleanup(&store).await;
    }

    #[tokio::test]
    async fn reads_of_many_entities_are_aligned_and_misses_are_none() {
        let Some(store) = store().await else { return };
        let rows: Vec<_> = (0..1_000).map(|i| row(&format!("E{i}"), 10, 10, i as f64)).collect();
        store.write("g", &rows, None).await.unwrap();
        // A rough timing for the report, not an assertion.
        let written: Vec<_> = rows.iter().map(|r| r.entity.clone()).collect();
        for _ in 0..3 {
            let started = Instant::now();
            store.read("g", &written).await.unwrap();
            eprintln!("read of {} entities in one call: {:?}", written.len(), started.elapsed());
        }
        let wanted: Vec<_> = (0..1_200).rev().map(|i| key(&format!("E{i}"))).collect();
        let got = store.read("g", &wanted).await.unwrap();
        assert_eq!(got.len(), 1_200);
        for (i, got) in (0..1_200).rev().zip(&got) {
            let expected = (i < 1_000).then(|| row(&format!("E{i}"), 10, 10, i as f64));
            assert_eq!(got, &expected);
        }
        assert_eq!(store.read("missing", &[key("E1"), key("E2")]).await.unwrap(), vec![None, None]);
        assert_eq!(store.read("g", &[]).await.unwrap(), vec![]);
        cleanup(&store).await;
    }

    #[tokio::test]
    async fn delete_group_removes_only_that_groups_keys() {
        let Some(store) = store().await else { return };
        // Awkward names: braces, globs and separators must not leak across.
        let odd = "we{ird}*\u{1f}x";
        for group in ["a", "ab", "a*", "b"] {
            store.write(group, &[row("X", 1, 1, 1.0), row(odd, 1, 1, 2.0)], None).await.unwrap();
        }
        store.delete_group("a").await.unwrap();
        assert_eq!(store.read("a", &[key("X"), key(odd)]).await.unwrap(), vec![None, None]);
        for group in ["ab", "a*", "b"] {
            let got = store.read(group, &[key("X"), key(odd)]).await.unwrap();
            assert_eq!(got, vec![Some(row("X", 1, 1, 1.0)), Some(row(odd, 1, 1, 2.0))], "group {group}");
        }
        let stored = keys(&store).await;
        assert_eq!(stored.len(), 6);
        // One entity's keys share its hash tag, so one cluster slot.
        assert!(stored.iter().any(|k| k.ends_with("{we%7Bird%7D*\u{1f}x}:ab")), "{stored:?}");
        store.delete_group("a*").await.unwrap();
        assert_eq!(store.read("ab", &[key("X")]).await.unwrap(), vec![Some(row("X", 1, 1, 1.0))]);
        assert_eq!(store.read("a*", &[key("X")]).await.unwrap(), vec![None]);
        cleanup(&store).await;
        assert!(keys(&store).await.is_empty());
    }
}
