-- The PostgreSQL store's statements, by name as in sqlite.sql. Parameters are written :name
-- and compiled to $n once (jobs/postgres_store.py); lists are arrays, JSON columns text.

-- name: insert_job
-- Read back with its place in the queue in the same statement: the jobs before it are others'.
WITH inserted AS (
    INSERT INTO jobs (job_id, tool, arguments, owner, status, queue, created_at, run_after,
                      idempotency_key, trace_id, timeout_ms, webhook_url, estimated_duration_ms,
                      max_concurrent, kind, ttl_ms, version, changed_by, dedupe_key, sealed_credentials,
                      tool_version, requested_version)
    VALUES (:job_id, :tool, :arguments, :owner, 'queued', :queue, :created_at, :created_at,
            :idempotency_key, :trace_id, :timeout_ms, :webhook_url, :estimated_duration_ms,
            :max_concurrent, :kind, :ttl_ms, nextval('jobs_version'), :origin, :dedupe_key, :sealed_credentials,
            :tool_version, :requested_version)
    -- An idempotency key used before, or a duplicate of an active job: nothing is inserted.
    ON CONFLICT DO NOTHING
    RETURNING *
)
SELECT i.*,
       (SELECT COUNT(*) FROM jobs q WHERE q.status = 'queued' AND q.queue = i.queue AND q.seq < i.seq) + 1
           AS position_in_queue
FROM inserted i;

-- name: get_jobs
SELECT *, NULL::BIGINT AS position_in_queue FROM jobs WHERE job_id = ANY (:job_ids::TEXT[]) ORDER BY version;

-- name: get_active_duplicate
SELECT *, NULL::BIGINT AS position_in_queue FROM jobs
WHERE owner = :owner AND dedupe_key = :dedupe_key AND status IN ('queued', 'running');

-- name: get_job_by_idempotency_key
SELECT *, NULL::BIGINT AS position_in_queue FROM jobs
WHERE owner = :owner AND idempotency_key = :idempotency_key;

-- name: list_jobs_of_owner
SELECT j.*,
       CASE WHEN j.status = 'queued' THEN
           (SELECT COUNT(*) FROM jobs q WHERE q.status = 'queued' AND q.queue = j.queue AND q.seq < j.seq) + 1
       END AS position_in_queue
FROM jobs j
WHERE j.owner = :owner
  AND (:status::TEXT IS NULL OR j.status = :status)
  AND (:tool::TEXT IS NULL OR j.tool = :tool)
  AND (:kind::TEXT IS NULL OR j.kind = :kind)
ORDER BY j.seq DESC
LIMIT :limit OFFSET :offset;

-- name: list_all_jobs
SELECT j.*,
       CASE WHEN j.status = 'queued' THEN
           (SELECT COUNT(*) FROM jobs q WHERE q.status = 'queued' AND q.queue = j.queue AND q.seq < j.seq) + 1
       END AS position_in_queue
FROM jobs j
WHERE (:status::TEXT IS NULL OR j.status = :status)
  AND (:tool::TEXT IS NULL OR j.tool = :tool)
  AND (:kind::TEXT IS NULL OR j.kind = :kind)
ORDER BY j.seq DESC
LIMIT :limit OFFSET :offset;

-- name: count_jobs_of_owner
SELECT COUNT(*) FROM jobs
WHERE owner = :owner
  AND (:status::TEXT IS NULL OR status = :status)
  AND (:tool::TEXT IS NULL OR tool = :tool)
  AND (:kind::TEXT IS NULL OR kind = :kind);

-- name: count_all_jobs
SELECT COUNT(*) FROM jobs
WHERE (:status::TEXT IS NULL OR status = :status)
  AND (:tool::TEXT IS NULL OR tool = :tool)
  AND (:kind::TEXT IS NULL OR kind = :kind);

-- name: claim_jobs
SELECT *, NULL::BIGINT AS position_in_queue
FROM conveyor_claim(:worker, :queues::TEXT[], :tools::TEXT[], :now, :lease_expires_at, :origin, :limit);

-- name: next_run_after
SELECT MIN(run_after) FROM jobs
WHERE status = 'queued' AND (:queues::TEXT[] IS NULL OR queue = ANY (:queues::TEXT[]));

-- name: extend_leases
UPDATE jobs SET lease_expires_at = :lease_expires_at
WHERE status = 'running' AND lease_owner = :worker AND job_id = ANY (:job_ids::TEXT[]);

-- name: save_progress
UPDATE jobs
SET progress = :progress, version = nextval('jobs_version'), changed_by = :origin
WHERE job_id = :job_id AND status = 'running' AND attempts = :attempt;

-- name: finish_job
-- Without :outbox, only a job no webhook waits for is ended (one statement, no transaction to
-- open); the others come back with :outbox, in a transaction that writes their deliveries too.
-- owner_has_webhooks: whether the owner's registrations need looking up (most owners have none).
UPDATE jobs
SET status = :status, completed_at = :now, result = :result, error = :error,
    step_results = :step_results, execution_time_ms = :execution_time_ms,
    tool_version = COALESCE(:tool_version::TEXT, tool_version),
    lease_owner = NULL, lease_expires_at = NULL,
    version = nextval('jobs_version'), changed_by = :origin
-- Fenced by the attempt: a worker whose run was handed back (lease lost) cannot end the next run.
WHERE job_id = :job_id AND status = 'running' AND attempts = :attempt
  AND (:outbox OR (webhook_url IS NULL AND NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.owner = jobs.owner)))
RETURNING *, NULL::BIGINT AS position_in_queue,
          EXISTS (SELECT 1 FROM webhooks w WHERE w.owner = jobs.owner) AS owner_has_webhooks;

-- name: requeue_job
UPDATE jobs
SET status = 'queued', run_after = :run_after, started_at = NULL, progress = NULL,
    lease_owner = NULL, lease_expires_at = NULL,
    version = nextval('jobs_version'), changed_by = :origin
WHERE job_id = :job_id AND status = 'running' AND attempts = :attempt AND cancel_requested_at IS NULL
RETURNING *, NULL::BIGINT AS position_in_queue;

-- name: hand_back_job
UPDATE jobs
SET status = 'queued', attempts = attempts - 1, run_after = :now, started_at = NULL, progress = NULL,
    lease_owner = NULL, lease_expires_at = NULL,
    version = nextval('jobs_version'), changed_by = :origin
WHERE job_id = :job_id AND status = 'running' AND attempts = :attempt AND cancel_requested_at IS NULL
RETURNING *, NULL::BIGINT AS position_in_queue;

-- name: request_cancel
UPDATE jobs
SET cancel_requested_at = :now, version = nextval('jobs_version'), changed_by = :origin
WHERE job_id = :job_id AND status = 'running' AND cancel_requested_at IS NULL
RETURNING *, NULL::BIGINT AS position_in_queue;

-- name: cancel_queued_job
-- :outbox as for finish_job.
UPDATE jobs
SET status = 'canceled', completed_at = :now, error = :error,
    version = nextval('jobs_version'), changed_by = :origin
WHERE job_id = :job_id AND status = 'queued'
  AND (:outbox OR (webhook_url IS NULL AND NOT EXISTS (SELECT 1 FROM webhooks w WHERE w.owner = jobs.owner)))
RETURNING *, NULL::BIGINT AS position_in_queue,
          EXISTS (SELECT 1 FROM webhooks w WHERE w.owner = jobs.owner) AS owner_has_webhooks;

-- name: expired_leases
SELECT *, NULL::BIGINT AS position_in_queue FROM jobs
WHERE status = 'running' AND lease_expires_at < :now;

-- name: purge_finished
-- Versions come from a sequence, never reused: unlike SQLite, no row need stay behind.
DELETE FROM jobs
WHERE completed_at IS NOT NULL
  AND (completed_at < :before OR (ttl_ms IS NOT NULL AND created_at + ttl_ms < :now));

-- name: jobs_changed_since
SELECT *, NULL::BIGINT AS position_in_queue FROM jobs
WHERE version > :since AND changed_by IS DISTINCT FROM :origin
ORDER BY version
LIMIT :limit;

-- name: last_version
SELECT COALESCE(MAX(version), 0) FROM jobs;

-- name: webhooks_for_event
SELECT webhook_id, url FROM webhooks
WHERE owner = :owner AND events::JSONB ? :event
ORDER BY created_at, webhook_id;

-- name: claim_deliveries
-- Skips deliveries another process is claiming this very moment: each attempt is made once.
UPDATE webhook_deliveries
SET attempts = attempts + 1, last_attempt_at = :now, next_attempt_at = :claimed_until
WHERE delivery_id IN (
    SELECT delivery_id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= :now
    ORDER BY next_attempt_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: webhook_secrets
SELECT webhook_id, secret FROM webhooks WHERE webhook_id = ANY (:webhook_ids::TEXT[]);
