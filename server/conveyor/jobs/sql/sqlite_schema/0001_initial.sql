-- Jobs: one row per submit. Times are epoch milliseconds; JSON columns hold text.
CREATE TABLE jobs (
    seq                   INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id                TEXT    NOT NULL UNIQUE,
    tool                  TEXT    NOT NULL,
    arguments             TEXT    NOT NULL,
    owner                 TEXT    NOT NULL,
    status                TEXT    NOT NULL CHECK (status IN
                              ('queued', 'running', 'completed', 'failed', 'canceled', 'timeout')),
    queue                 TEXT    NOT NULL DEFAULT 'default',
    created_at            INTEGER NOT NULL,
    started_at            INTEGER,
    completed_at          INTEGER,
    run_after             INTEGER NOT NULL DEFAULT 0,
    progress              TEXT,
    result                TEXT,
    error                 TEXT,
    step_results          TEXT,
    execution_time_ms     INTEGER,
    estimated_duration_ms INTEGER,
    attempts              INTEGER NOT NULL DEFAULT 0,
    idempotency_key       TEXT,
    trace_id              TEXT,
    timeout_ms            INTEGER,
    webhook_url           TEXT,
    lease_owner           TEXT,
    lease_expires_at      INTEGER
);

CREATE INDEX jobs_queued_by_queue ON jobs (queue, seq) WHERE status = 'queued';
CREATE INDEX jobs_running_by_lease ON jobs (lease_expires_at) WHERE status = 'running';
CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_by_owner ON jobs (owner, seq);
CREATE INDEX jobs_completed_by_tool ON jobs (tool, completed_at) WHERE status = 'completed';
CREATE INDEX jobs_finished_at ON jobs (completed_at) WHERE completed_at IS NOT NULL;
