-- wafer production schema (PostgreSQL). Never edit once landed; add a new file.
--
-- The same tables and conventions as migrations/sqlite/0001_init.sql:
-- timestamps are BIGINT microseconds since the Unix epoch (UTC); registry
-- objects keep their definition as JSON text in `spec`; feature and source
-- values are compact JSON objects in `values_json`.
--
-- JSON is stored as TEXT, not JSONB: the store never queries inside it, TEXT
-- skips a parse on every write, and JSONB would not give back what was
-- written (it normalizes numbers, so 190.0 would read back as the integer
-- 190, and reorders object keys).
--
-- Keys use the "C" collation: byte order, as SQLite sorts them, whatever the
-- database's locale, and cheaper comparisons in every index.
--
-- Unqualified names: the store sets `search_path`, so one database can hold
-- several wafer schemas (one per test, or per deployment).

-- Registry -------------------------------------------------------------------

CREATE TABLE entities (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    spec       TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE sources (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    spec       TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE feature_groups (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    spec       TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Wasm components, addressed by the sha256 of their bytes, shared by every
-- version that publishes the same bytes.
CREATE TABLE modules (
    sha256     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    bytes      BYTEA  NOT NULL,
    size_bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- A transform's lifecycle. `status` is 'inactive' until a version is first
-- activated, 'active' while `active_version` is set and 'disabled' after an
-- active transform was switched off. `previous_version` is the rollback target.
CREATE TABLE transforms (
    name             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    active_version   TEXT,
    previous_version TEXT,
    status           TEXT   NOT NULL DEFAULT 'inactive'
                            CHECK (status IN ('inactive', 'active', 'disabled')),
    updated_at       BIGINT NOT NULL
);

-- Immutable published versions; `descriptor` is the component's own
-- `describe` output as JSON.
CREATE TABLE transform_versions (
    name       TEXT COLLATE "C" NOT NULL REFERENCES transforms (name),
    version    TEXT COLLATE "C" NOT NULL,
    sha256     TEXT COLLATE "C" NOT NULL REFERENCES modules (sha256),
    size_bytes BIGINT NOT NULL,
    descriptor TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

-- Materialization runs; `spec` is the whole job (progress, errors) as JSON.
CREATE TABLE jobs (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    feature_group TEXT COLLATE "C" NOT NULL,
    state         TEXT   NOT NULL,
    spec          TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE INDEX jobs_by_group ON jobs (feature_group, created_at);
CREATE INDEX jobs_by_created ON jobs (created_at);

-- Offline store ----------------------------------------------------------------

-- Raw source history. Upserts on (source, entity_key, ts) make ingest
-- idempotent; the primary key index serves "last N rows of one entity" as one
-- backwards index scan.
CREATE TABLE source_rows (
    source      TEXT COLLATE "C" NOT NULL,
    entity_key  TEXT COLLATE "C" NOT NULL,
    ts          BIGINT NOT NULL,
    values_json TEXT   NOT NULL,
    ingested_at BIGINT NOT NULL,
    PRIMARY KEY (source, entity_key, ts)
);

-- Feature history. Corrections (same event time, later created time) are
-- kept side by side so point-in-time reads can honour a created cutoff. The
-- primary key index serves "latest row of one entity" as one backwards seek.
CREATE TABLE feature_rows (
    group_name  TEXT COLLATE "C" NOT NULL,
    entity_key  TEXT COLLATE "C" NOT NULL,
    event_ts    BIGINT NOT NULL,
    created_ts  BIGINT NOT NULL,
    values_json TEXT   NOT NULL,
    PRIMARY KEY (group_name, entity_key, event_ts, created_ts)
);
