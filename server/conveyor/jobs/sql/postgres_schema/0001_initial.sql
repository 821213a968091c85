-- Conveyor on PostgreSQL: the SQLite schema's tables (the same columns, times as epoch
-- milliseconds, JSON columns as text), plus what many machines sharing one queue need: a sequence
-- for change versions, a claim function and a trigger that announces each change (LISTEN/NOTIFY).

CREATE SEQUENCE jobs_version;

CREATE TABLE jobs (
    seq                   BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id                TEXT    NOT NULL UNIQUE,
    tool                  TEXT    NOT NULL,
    arguments             TEXT    NOT NULL,
    owner                 TEXT    NOT NULL,
    status                TEXT    NOT NULL CHECK (status IN
                              ('queued', 'running', 'completed', 'failed', 'canceled', 'timeout')),
    queue                 TEXT    NOT NULL DEFAULT 'default',
    kind                  TEXT    NOT NULL DEFAULT 'job' CHECK (kind IN ('job', 'task')),
    created_at            BIGINT  NOT NULL,
    started_at            BIGINT,
    completed_at          BIGINT,
    run_after             BIGINT  NOT NULL DEFAULT 0,
    progress              TEXT,
    result                TEXT,
    error                 TEXT,
    step_results          TEXT,
    execution_time_ms     BIGINT,
    estimated_duration_ms BIGINT,
    attempts              INTEGER NOT NULL DEFAULT 0,
    idempotency_key       TEXT,
    dedupe_key            TEXT,
    trace_id              TEXT,
    timeout_ms            BIGINT,
    webhook_url           TEXT,
    ttl_ms                BIGINT,
    max_concurrent        INTEGER,  -- the owner's plan limit when submitted; NULL: no limit
    lease_owner           TEXT,
    lease_expires_at      BIGINT,
    cancel_requested_at   BIGINT,
    -- Each write of a job takes the next value of jobs_version and stamps the writing process:
    -- a process's change listener skips its own changes, and its fallback poll reads by version.
    version               BIGINT  NOT NULL,
    changed_by            TEXT
);

CREATE INDEX jobs_queued_in_order ON jobs (seq) WHERE status = 'queued';
CREATE INDEX jobs_queued_by_queue ON jobs (queue, seq) WHERE status = 'queued';
CREATE INDEX jobs_running_by_lease ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_running_by_owner ON jobs (owner) WHERE status = 'running';
CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX jobs_active_duplicates ON jobs (owner, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running');
CREATE INDEX jobs_by_owner ON jobs (owner, seq);
CREATE INDEX jobs_tasks_by_owner ON jobs (owner, seq) WHERE kind = 'task';
CREATE INDEX jobs_completed_by_tool ON jobs (tool, completed_at) WHERE status = 'completed';
CREATE INDEX jobs_finished_at ON jobs (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX jobs_by_version ON jobs (version);

-- Every change of a job is announced on the channel "conveyor.<schema>", once it commits:
-- "<job_id> <version> <changed_by>". A lease renewal does not change the version: no announcement.
CREATE FUNCTION conveyor_announce_job_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('conveyor.' || TG_TABLE_SCHEMA,
                      NEW.job_id || ' ' || NEW.version || ' ' || COALESCE(NEW.changed_by, ''));
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_announce_changes AFTER INSERT OR UPDATE OF version ON jobs
    FOR EACH ROW EXECUTE FUNCTION conveyor_announce_job_change();

-- Claim up to max_jobs due jobs, oldest first, for a worker that runs `tools` from `queues`
-- (NULL: every queue). Rows other claimers hold are skipped (FOR UPDATE SKIP LOCKED): claimers
-- never wait on each other's jobs. An owner with a plan limit (max_concurrent) is counted under
-- an advisory lock on the owner, taken in one order by every claimer, so two claims at once can
-- never start more of the owner's jobs than the limit.
CREATE FUNCTION conveyor_claim(
    worker TEXT, queues TEXT[], tools TEXT[], now_ms BIGINT, lease_until BIGINT, origin TEXT, max_jobs INTEGER
) RETURNS SETOF jobs LANGUAGE plpgsql AS $$
DECLARE
    seqs BIGINT[];
    owners TEXT[];
    limits INTEGER[];
    picked BIGINT[] := '{}';
    limited_owner TEXT;
    running INTEGER;
    taken JSONB := '{}';  -- owner -> jobs of the owner this claim takes
BEGIN
    SELECT array_agg(c.seq ORDER BY c.seq), array_agg(c.owner ORDER BY c.seq),
           array_agg(c.max_concurrent ORDER BY c.seq)
    INTO seqs, owners, limits
    FROM (
        SELECT j.seq, j.owner, j.max_concurrent FROM jobs j
        WHERE j.status = 'queued' AND j.run_after <= now_ms
          AND (queues IS NULL OR j.queue = ANY (queues))
          AND j.tool = ANY (tools)
          -- a first look (without the lock) at owners at their limit: their jobs are not candidates
          AND (j.max_concurrent IS NULL
               OR (SELECT COUNT(*) FROM jobs r WHERE r.status = 'running' AND r.owner = j.owner)
                  < j.max_concurrent)
        ORDER BY j.seq
        -- more than it takes: some may belong to an owner the locked count finds at its limit
        LIMIT max_jobs * 2 + 8
        FOR UPDATE SKIP LOCKED
    ) c;
    IF seqs IS NULL THEN
        RETURN;
    END IF;

    IF array_remove(limits, NULL) = '{}' THEN
        picked := seqs[1:max_jobs];  -- no candidate's owner has a limit
    ELSE
        FOR limited_owner IN
            SELECT DISTINCT o FROM unnest(owners, limits) AS t(o, l) WHERE l IS NOT NULL ORDER BY o
        LOOP
            PERFORM pg_advisory_xact_lock(hashtext('conveyor.owner'), hashtext(limited_owner));
        END LOOP;
        FOR i IN 1 .. array_length(seqs, 1) LOOP
            EXIT WHEN cardinality(picked) >= max_jobs;
            IF limits[i] IS NOT NULL THEN
                -- Under the owner's lock, in a statement of its own: every claim committed
                -- before the lock was granted is counted.
                SELECT COUNT(*) INTO running FROM jobs r WHERE r.status = 'running' AND r.owner = owners[i];
                IF running + COALESCE((taken ->> owners[i])::INTEGER, 0) >= limits[i] THEN
                    CONTINUE;
                END IF;
                taken := jsonb_set(taken, ARRAY[owners[i]],
                                   to_jsonb(COALESCE((taken ->> owners[i])::INTEGER, 0) + 1));
            END IF;
            picked := picked || seqs[i];
        END LOOP;
    END IF;

    RETURN QUERY
    WITH claimed AS (
        UPDATE jobs
        SET status = 'running', started_at = now_ms, attempts = jobs.attempts + 1,
            lease_owner = worker, lease_expires_at = lease_until,
            version = nextval('jobs_version'), changed_by = origin
        WHERE jobs.seq = ANY (picked)
        RETURNING jobs.*
    )
    SELECT * FROM claimed ORDER BY claimed.seq;
END
$$;

CREATE TABLE api_keys (
    key_id     TEXT    PRIMARY KEY,
    key_hash   TEXT    NOT NULL UNIQUE,
    name       TEXT,
    role       TEXT    NOT NULL CHECK (role IN ('admin', 'user')),
    plan       TEXT    NOT NULL CHECK (plan IN ('free', 'pro', 'enterprise')),
    created_at BIGINT  NOT NULL,
    revoked_at BIGINT
);

-- Executions counted per principal in fixed one-minute windows, for every server at once.
CREATE TABLE rate_windows (
    principal    TEXT    PRIMARY KEY,
    window_start BIGINT  NOT NULL,  -- Unix seconds
    used         INTEGER NOT NULL
);

CREATE TABLE webhooks (
    webhook_id TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,
    url        TEXT    NOT NULL,
    events     TEXT    NOT NULL,  -- JSON array of event names
    secret     TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

CREATE INDEX webhooks_by_owner ON webhooks (owner, created_at);

CREATE TABLE webhook_deliveries (
    delivery_id     TEXT    PRIMARY KEY,
    job_id          TEXT    NOT NULL,
    webhook_id      TEXT    REFERENCES webhooks (webhook_id) ON DELETE CASCADE,
    url             TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      BIGINT  NOT NULL,
    next_attempt_at BIGINT,
    last_attempt_at BIGINT,
    delivered_at    BIGINT,
    last_error      TEXT
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_job ON webhook_deliveries (job_id);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id);
CREATE INDEX webhook_deliveries_settled ON webhook_deliveries (last_attempt_at) WHERE status <> 'pending';

CREATE TABLE server_secrets (
    name       TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

CREATE TABLE workers (
    worker_id  TEXT    PRIMARY KEY,
    pid        INTEGER NOT NULL,
    host       TEXT    NOT NULL,
    queues     TEXT,
    tools      TEXT    NOT NULL,
    started_at BIGINT  NOT NULL,
    seen_at    BIGINT  NOT NULL
);
