-- Jobs split into leased tasks (see migrations/postgres/0002_job_tasks.sql,
-- which this mirrors). SQLite serves one host, but the same protocol lets a
-- job resume after a restart: an unfinished task's lease simply expires.

CREATE TABLE job_tasks (
    job_id           TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    task_no          INTEGER NOT NULL,
    -- The job's creation time, so the oldest job's tasks are leased first.
    created_at       INTEGER NOT NULL,
    -- JSON array of entity keys, and of per-entity "after" event times
    -- (incremental runs) aligned with it.
    entities         TEXT    NOT NULL,
    after_json       TEXT    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'leased', 'done')),
    owner            TEXT,
    -- Wall-clock microseconds; a lease past this time may be taken over.
    lease_expires_at INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    finished_at      INTEGER,
    PRIMARY KEY (job_id, task_no)
);

CREATE INDEX job_tasks_open ON job_tasks (created_at, job_id, task_no) WHERE state <> 'done';
