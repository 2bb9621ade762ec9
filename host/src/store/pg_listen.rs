//! Registry change announcements from PostgreSQL (LISTEN/NOTIFY), so that
//! several hosts on one database see each other's registry writes within
//! milliseconds.
//!
//! Triggers (migrations/postgres/0002) announce every write to the registry
//! tables and every new job on the channel `wafer_changes`. One dedicated
//! connection per host listens. If it drops, notifications sent meanwhile
//! are lost, so after reconnecting the host is told to reload everything
//! (`RegistryChange::Resync`); the service's periodic resync covers anything
//! else that slips through.
//!
//! Changes that no registry table records (source rows written) are
//! announced by the writing host itself ([`announcement`]).

use super::{RegistryChange, StoreError, StoreResult};
use serde::Deserialize;
use sqlx::postgres::{PgListener, PgPool};
use std::time::Duration;
use tokio::sync::mpsc;

pub(super) const CHANNEL: &str = "wafer_changes";
/// Pause between reconnection attempts while the database is down.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// Starts listening; fails if the first LISTEN does, so a host that cannot
/// hear its peers does not start silently deaf.
pub(super) async fn spawn(pool: PgPool, schema: String) -> StoreResult<mpsc::Receiver<RegistryChange>> {
    let listener = listen(&pool).await?;
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(run(pool, schema, listener, tx));
    Ok(rx)
}

async fn listen(pool: &PgPool) -> StoreResult<PgListener> {
    let unavailable = |e: sqlx::Error| StoreError::Unavailable { backend: "postgres", message: e.to_string() };
    let mut listener = PgListener::connect_with(pool).await.map_err(unavailable)?;
    listener.listen(CHANNEL).await.map_err(unavailable)?;
    Ok(listener)
}

/// Forwards this schema's announcements until the receiver is dropped.
async fn run(pool: PgPool, schema: String, mut listener: PgListener, tx: mpsc::Sender<RegistryChange>) {
    loop {
        let received = tokio::select! {
            r = listener.try_recv() => r,
            _ = tx.closed() => return,
        };
        match received {
            Ok(Some(n)) => {
                if let Some(change) = parse(n.payload(), &schema)
                    && tx.send(change).await.is_err()
                {
                    return;
                }
            }
            // `None`: the connection dropped. Start over on a fresh one
            // (LISTEN first, then resync, so nothing falls in between).
            Ok(None) | Err(_) => {
                tracing::warn!("lost the PostgreSQL change listener; reconnecting");
                listener = loop {
                    tokio::select! {
                        _ = tokio::time::sleep(RECONNECT_EVERY) => {}
                        _ = tx.closed() => return,
                    }
                    match listen(&pool).await {
                        Ok(l) => break l,
                        Err(e) => tracing::debug!(error = %e, "change listener still down"),
                    }
                };
                tracing::info!("PostgreSQL change listener reconnected; resyncing the registry");
                if tx.send(RegistryChange::Resync).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[derive(Deserialize, serde::Serialize)]
struct Payload {
    schema: String,
    table: String,
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entities: Option<Vec<String>>,
}

/// PostgreSQL refuses payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;

/// The payload announcing `change` in `schema`, for the changes hosts
/// announce themselves; `None` for those the triggers announce. A write of
/// too many entities to name is announced as one of any entity.
pub(super) fn announcement(change: &RegistryChange, schema: &str) -> Option<String> {
    let RegistryChange::SourceRows { source, entities, origin } = change else { return None };
    let mut payload = Payload {
        schema: schema.to_string(),
        table: SOURCE_ROWS.to_string(),
        key: Some(source.clone()),
        origin: Some(origin.clone()),
        entities: entities.clone(),
    };
    let text = serde_json::to_string(&payload).ok()?;
    if text.len() <= MAX_PAYLOAD {
        return Some(text);
    }
    payload.entities = None;
    serde_json::to_string(&payload).ok()
}

/// The `table` of a source-rows announcement (no registry table has it).
const SOURCE_ROWS: &str = "source_rows";

/// The change a trigger's payload announces, if it is about `schema`.
fn parse(payload: &str, schema: &str) -> Option<RegistryChange> {
    let Ok(p) = serde_json::from_str::<Payload>(payload) else {
        tracing::warn!(payload, "unreadable change announcement; resyncing");
        return Some(RegistryChange::Resync);
    };
    if p.schema != schema {
        return None;
    }
    let key = p.key.unwrap_or_default();
    Some(match p.table.as_str() {
        "entities" => RegistryChange::Entity(key),
        "sources" => RegistryChange::Source(key),
        "feature_groups" => RegistryChange::FeatureGroup(key),
        "transforms" | "transform_versions" => RegistryChange::Transform(key),
        "jobs" => RegistryChange::JobCreated(key),
        SOURCE_ROWS => {
            RegistryChange::SourceRows { source: key, entities: p.entities, origin: p.origin.unwrap_or_default() }
        }
        _ => RegistryChange::Resync,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_map_to_changes_of_their_own_schema_only() {
        let p = |table: &str, schema: &str| format!(r#"{{"schema":"{schema}","table":"{table}","key":"k"}}"#);
        assert_eq!(parse(&p("entities", "s"), "s"), Some(RegistryChange::Entity("k".into())));
        assert_eq!(parse(&p("feature_groups", "s"), "s"), Some(RegistryChange::FeatureGroup("k".into())));
        assert_eq!(parse(&p("transform_versions", "s"), "s"), Some(RegistryChange::Transform("k".into())));
        assert_eq!(parse(&p("jobs", "s"), "s"), Some(RegistryChange::JobCreated("k".into())));
        assert_eq!(parse(&p("entities", "other"), "s"), None);
        assert_eq!(parse("not json", "s"), Some(RegistryChange::Resync));
    }

    #[test]
    fn source_row_announcements_round_trip_and_drop_entities_that_do_not_fit() {
        let change = |entities: Option<Vec<String>>| RegistryChange::SourceRows {
            source: "prices".into(),
            entities,
            origin: "host-a:1".into(),
        };
        let small = change(Some(vec!["AAPL".into(), "MSFT".into()]));
        let text = announcement(&small, "s").unwrap();
        assert_eq!(parse(&text, "s"), Some(small.clone()));
        assert_eq!(parse(&text, "other"), None);

        let many = change(Some((0..2000).map(|i| format!("TICKER{i}")).collect()));
        let text = announcement(&many, "s").unwrap();
        assert!(text.len() < 8000, "PostgreSQL's payload limit");
        assert_eq!(parse(&text, "s"), Some(change(None)), "too many to name: any entity may have changed");

        assert_eq!(announcement(&RegistryChange::Resync, "s"), None, "the triggers announce the rest");
    }
}
