-- When each scheduled feature group next materializes (see
-- migrations/postgres/0003_schedules.sql).
CREATE TABLE schedules (
    feature_group TEXT    NOT NULL PRIMARY KEY,
    next_run_at   INTEGER NOT NULL
);
