-- Several hosts, one service: jobs split into leased tasks, and registry
-- changes announced to every host. Never edit once landed; add a new file.

-- A materialization job is split into tasks of a few entities. Any host
-- leases the next open task with `FOR UPDATE SKIP LOCKED`, computes it,
-- writes its rows and marks it done in the transaction that adds its counts
-- to the job. A host that dies loses only its lease: once
-- `lease_expires_at` passes, another host takes the task over.
CREATE TABLE job_tasks (
    job_id           TEXT COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    task_no          BIGINT  NOT NULL,
    -- The job's creation time, so the oldest job's tasks are leased first.
    created_at       BIGINT  NOT NULL,
    -- JSON array of entity keys, and of per-entity "after" event times
    -- (incremental runs) aligned with it.
    entities         TEXT    NOT NULL,
    after_json       TEXT    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'leased', 'done')),
    owner            TEXT,
    -- Microseconds on the database's clock, so hosts' clocks never disagree.
    lease_expires_at BIGINT,
    attempts         BIGINT  NOT NULL DEFAULT 0,
    finished_at      BIGINT,
    PRIMARY KEY (job_id, task_no)
);

CREATE INDEX job_tasks_open ON job_tasks (created_at, job_id, task_no) WHERE state <> 'done';

-- Every registry write and every new job is announced on the channel
-- `wafer_changes` as {"schema", "table", "key"}; hosts LISTEN and refresh
-- what they cache. NOTIFY is transactional: it is delivered on commit, so a
-- host never reloads a change that was rolled back. A trigger catches every
-- write, including ones made outside wafer.
CREATE FUNCTION wafer_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed_key TEXT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed_key := to_jsonb(OLD) ->> TG_ARGV[0];
    ELSE
        changed_key := to_jsonb(NEW) ->> TG_ARGV[0];
    END IF;
    PERFORM pg_notify('wafer_changes',
        json_build_object('schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME, 'key', changed_key)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER entities_changed AFTER INSERT OR UPDATE OR DELETE ON entities
    FOR EACH ROW EXECUTE FUNCTION wafer_notify_change('name');
CREATE TRIGGER sources_changed AFTER INSERT OR UPDATE OR DELETE ON sources
    FOR EACH ROW EXECUTE FUNCTION wafer_notify_change('name');
CREATE TRIGGER feature_groups_changed AFTER INSERT OR UPDATE OR DELETE ON feature_groups
    FOR EACH ROW EXECUTE FUNCTION wafer_notify_change('name');
CREATE TRIGGER transforms_changed AFTER INSERT OR UPDATE OR DELETE ON transforms
    FOR EACH ROW EXECUTE FUNCTION wafer_notify_change('name');
CREATE TRIGGER transform_versions_changed AFTER INSERT OR UPDATE OR DELETE ON transform_versions
    FOR EACH ROW EXECUTE FUNCTION wafer_notify_change('name');
-- New jobs only: progress updates are frequent and nobody caches them.
CREATE TRIGGER jobs_created AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION wafer_notify_change('id');
