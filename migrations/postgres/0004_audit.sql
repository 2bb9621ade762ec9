-- Registry and plugin changes, append-only: who changed what, when, from
-- every host sharing the database. `details` is JSON text; `at`
-- microseconds since the epoch (UTC); `id` orders entries as committed.
CREATE TABLE audit_log (
    id      BIGSERIAL PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT   NOT NULL,
    action  TEXT   NOT NULL,
    target  TEXT   NOT NULL,
    details TEXT   NOT NULL
);
