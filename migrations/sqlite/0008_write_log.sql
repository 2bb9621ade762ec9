-- The lakehouse offline store's write log (see
-- migrations/postgres/0008_write_log.sql, which this mirrors).

-- The one sequence of every write of every table: a single counter row,
-- advanced on the writer connection by appends and by `next_seq` alike.
-- (AUTOINCREMENT would number only `offline_log`'s own rows.)
CREATE TABLE offline_seq (
    id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
);

INSERT INTO offline_seq (id, last) VALUES (1, 0);

-- `payload` last: reading the other columns never touches its overflow
-- pages.
CREATE TABLE offline_log (
    seq        INTEGER NOT NULL PRIMARY KEY,
    table_name TEXT    NOT NULL,
    row_count  INTEGER NOT NULL,
    -- Wall-clock microseconds, stamped while holding the writer, so stamps
    -- follow commit order.
    written_at INTEGER NOT NULL,
    payload    BLOB    NOT NULL
);

CREATE INDEX offline_log_by_table ON offline_log (table_name, seq);

CREATE TABLE offline_leases (
    name       TEXT    NOT NULL PRIMARY KEY,
    owner      TEXT    NOT NULL,
    -- Wall-clock microseconds; a lease past this time may be taken over.
    expires_at INTEGER NOT NULL
);
