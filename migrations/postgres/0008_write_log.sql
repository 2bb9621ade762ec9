-- The lakehouse offline store's write log: small acknowledged writes wait
-- here, one row per write (an Arrow IPC stream of rows for one table), until
-- a flusher moves them into their table in batches. Never edit once landed.

-- One sequence orders every write of every table, whether it waits here
-- (`offline_log.seq`) or goes to its table directly (`nextval`): a newer
-- write of the same row key wins wherever it is.
CREATE SEQUENCE offline_log_seq;

CREATE TABLE offline_log (
    seq        BIGINT NOT NULL PRIMARY KEY DEFAULT nextval('offline_log_seq'),
    -- The offline store's name of the table, e.g. `features/technical`.
    table_name TEXT COLLATE "C" NOT NULL,
    row_count  BIGINT NOT NULL,
    -- Microseconds on the database's clock, stamped inside the inserting
    -- statement; readers lock the table (SHARE) to see every earlier stamp.
    written_at BIGINT NOT NULL,
    payload    BYTEA  NOT NULL
);

ALTER SEQUENCE offline_log_seq OWNED BY offline_log.seq;

-- A table's entries, oldest first.
CREATE INDEX offline_log_by_table ON offline_log (table_name, seq);

-- One flusher per table across every host: a named lease, taken by a
-- conditional upsert, that another owner may take over once `expires_at`
-- (microseconds on the database's clock) has passed.
CREATE TABLE offline_leases (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    owner      TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
