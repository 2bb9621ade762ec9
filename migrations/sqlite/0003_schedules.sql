-- When each scheduled feature group next materializes (see
-- migrations/postgres/0003_schedules.sql).
CREATE TABLE schedules (
    feature_group TEXT    NOT NULL PRIMARY KEY,
    next_run_at   INTEGER NOT NULL
);

-- Incremental runs look for source rows ingested since the group's last run.
CREATE INDEX source_rows_by_ingest ON source_rows (source, ingested_at);
