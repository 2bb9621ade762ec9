-- When each scheduled feature group (`producer.schedule_seconds`) next
-- materializes. Every host checks its schedules; the one whose conditional
-- upsert moves `next_run_at` forward starts the run, so a due group runs
-- once however many hosts there are. Never edit once landed.
CREATE TABLE schedules (
    feature_group TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    next_run_at   BIGINT NOT NULL
);

-- Incremental runs look for source rows ingested since the group's last run.
CREATE INDEX source_rows_by_ingest ON source_rows (source, ingested_at);
