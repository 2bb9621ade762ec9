-- Registry and plugin changes, append-only: who changed what, when.
-- `details` is JSON text; `at` microseconds since the epoch (UTC).
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    details TEXT    NOT NULL
);
