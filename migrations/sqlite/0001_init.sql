-- wafer embedded schema (SQLite). Never edit once landed; add a new file.
--
-- Conventions: timestamps are INTEGER microseconds since the Unix epoch (UTC);
-- registry objects keep their definition as JSON text in `spec` (the body a
-- client would PUT, without the name, which is the primary key); feature and
-- source values are compact JSON objects in `values_json`.

-- Registry -------------------------------------------------------------------

CREATE TABLE entities (
    name       TEXT    NOT NULL PRIMARY KEY,
    spec       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE sources (
    name       TEXT    NOT NULL PRIMARY KEY,
    spec       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE feature_groups (
    name       TEXT    NOT NULL PRIMARY KEY,
    spec       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Wasm components, addressed by the sha256 of their bytes, shared by every
-- version that publishes the same bytes.
CREATE TABLE modules (
    sha256     TEXT    NOT NULL PRIMARY KEY,
    bytes      BLOB    NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

-- A transform's lifecycle. `status` is 'inactive' until a version is first
-- activated, 'active' while `active_version` is set and 'disabled' after an
-- active transform was switched off. `previous_version` is the rollback target.
CREATE TABLE transforms (
    name             TEXT    NOT NULL PRIMARY KEY,
    active_version   TEXT,
    previous_version TEXT,
    status           TEXT    NOT NULL DEFAULT 'inactive'
                             CHECK (status IN ('inactive', 'active', 'disabled')),
    updated_at       INTEGER NOT NULL
);

-- Immutable published versions; `descriptor` is the component's own
-- `describe` output as JSON.
CREATE TABLE transform_versions (
    name       TEXT    NOT NULL REFERENCES transforms (name),
    version    TEXT    NOT NULL,
    sha256     TEXT    NOT NULL REFERENCES modules (sha256),
    size_bytes INTEGER NOT NULL,
    descriptor TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);

-- Materialization runs; `spec` is the whole job (progress, errors) as JSON.
CREATE TABLE jobs (
    id            TEXT    NOT NULL PRIMARY KEY,
    feature_group TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    spec          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE INDEX jobs_by_group ON jobs (feature_group, created_at);
CREATE INDEX jobs_by_created ON jobs (created_at);

-- Offline store ----------------------------------------------------------------

-- Raw source history. Upserts on (source, entity_key, ts) make ingest
-- idempotent; the clustered key serves "last N rows of one entity" as one
-- backwards range scan.
CREATE TABLE source_rows (
    source      TEXT    NOT NULL,
    entity_key  TEXT    NOT NULL,
    ts          INTEGER NOT NULL,
    values_json TEXT    NOT NULL,
    ingested_at INTEGER NOT NULL,
    PRIMARY KEY (source, entity_key, ts)
) WITHOUT ROWID;

-- Feature history. Corrections (same event time, later created time) are
-- kept side by side so point-in-time reads can honour a created cutoff.
CREATE TABLE feature_rows (
    group_name  TEXT    NOT NULL,
    entity_key  TEXT    NOT NULL,
    event_ts    INTEGER NOT NULL,
    created_ts  INTEGER NOT NULL,
    values_json TEXT    NOT NULL,
    PRIMARY KEY (group_name, entity_key, event_ts, created_ts)
) WITHOUT ROWID;
