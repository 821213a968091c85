-- The SQLite store's own statements, by name (common.sql has those both dialects share).

-- name: insert_job
INSERT INTO jobs (job_id, tool, arguments, owner, status, queue, created_at, run_after,
                  idempotency_key, trace_id, timeout_ms, webhook_url, estimated_duration_ms, max_concurrent,
                  kind, ttl_ms, version, changed_by, dedupe_key, sealed_credentials, tool_version,
                  requested_version)
VALUES (:job_id, :tool, :arguments, :owner, 'queued', :queue, :created_at, :created_at,
        :idempotency_key, :trace_id, :timeout_ms, :webhook_url, :estimated_duration_ms, :max_concurrent,
        :kind, :ttl_ms, (SELECT IFNULL(MAX(version), 0) + 1 FROM jobs), :origin, :dedupe_key, :sealed_credentials,
        :tool_version, :requested_version)
-- An idempotency key used before, or a duplicate of an active job: nothing is inserted.
ON CONFLICT DO NOTHING
-- What the submit does not know already: the row's version, and its place in its queue (jobs
-- queued before it, and itself), read in the same statement.
RETURNING version,
          (SELECT COUNT(*) FROM jobs q WHERE q.status = 'queued' AND q.queue = jobs.queue AND q.seq < jobs.seq) + 1
              AS position_in_queue;

-- name: get_active_duplicate
SELECT *, NULL AS position_in_queue FROM jobs
WHERE owner = :owner AND dedupe_key = :dedupe_key AND status IN ('queued', 'running');

-- name: get_job_by_idempotency_key
SELECT *, NULL AS position_in_queue FROM jobs WHERE owner = :owner AND idempotency_key = :idempotency_key;

-- An owner's jobs and every job are separate blocks: "(:owner IS NULL OR owner = :owner)"
-- would keep SQLite from using the owner index, and most lists are one owner's.

-- name: list_jobs_of_owner
SELECT j.*,
       CASE WHEN j.status = 'queued' THEN
           (SELECT COUNT(*) FROM jobs q WHERE q.status = 'queued' AND q.queue = j.queue AND q.seq < j.seq) + 1
       END AS position_in_queue
FROM jobs j
WHERE j.owner = :owner
  AND (:status IS NULL OR j.status = :status)
  AND (:tool IS NULL OR j.tool = :tool)
  AND (:kind IS NULL OR j.kind = :kind)
ORDER BY j.seq DESC
LIMIT :limit OFFSET :offset;

-- name: list_all_jobs
SELECT j.*,
       CASE WHEN j.status = 'queued' THEN
           (SELECT COUNT(*) FROM jobs q WHERE q.status = 'queued' AND q.queue = j.queue AND q.seq < j.seq) + 1
       END AS position_in_queue
FROM jobs j
WHERE (:status IS NULL OR j.status = :status)
  AND (:tool IS NULL OR j.tool = :tool)
  AND (:kind IS NULL OR j.kind = :kind)
ORDER BY j.seq DESC
LIMIT :limit OFFSET :offset;

-- name: count_jobs_of_owner
SELECT COUNT(*) FROM jobs
WHERE owner = :owner
  AND (:status IS NULL OR status = :status)
  AND (:tool IS NULL OR tool = :tool)
  AND (:kind IS NULL OR kind = :kind);

-- name: count_all_jobs
SELECT COUNT(*) FROM jobs
WHERE (:status IS NULL OR status = :status)
  AND (:tool IS NULL OR tool = :tool)
  AND (:kind IS NULL OR kind = :kind);

-- name: claim_next_job
UPDATE jobs
SET status = 'running', started_at = :now, attempts = attempts + 1,
    lease_owner = :worker, lease_expires_at = :lease_expires_at,
    version = (SELECT IFNULL(MAX(version), 0) + 1 FROM jobs), changed_by = :origin
WHERE seq = (
    SELECT j.seq FROM jobs j
    WHERE j.status = 'queued' AND j.run_after <= :now
      AND (:queues IS NULL OR j.queue IN (SELECT value FROM json_each(:queues)))
      -- a worker claims only the tools it has loaded; a job that named a version, only a worker
      -- that has that version (its tools list each as tool@version too)
      AND (CASE WHEN j.requested_version IS NULL THEN j.tool
                ELSE j.tool || '@' || j.requested_version END) IN (SELECT value FROM json_each(:tools))
      -- an owner at their plan's concurrency limit waits; other owners' jobs go ahead
      AND (j.max_concurrent IS NULL
           OR (SELECT COUNT(*) FROM jobs r WHERE r.status = 'running' AND r.owner = j.owner) < j.max_concurrent)
    ORDER BY j.seq
    LIMIT 1
)
RETURNING *, NULL AS position_in_queue;

-- name: next_run_after
SELECT MIN(run_after) FROM jobs
WHERE status = 'queued' AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)));

-- name: extend_leases
UPDATE jobs SET lease_expires_at = :lease_expires_at
WHERE status = 'running' AND lease_owner = :worker
  AND job_id IN (SELECT value FROM json_each(:job_ids));

-- name: save_progress
UPDATE jobs
SET progress = :progress,
    version = (SELECT IFNULL(MAX(version), 0) + 1 FROM jobs), changed_by = :origin
WHERE job_id = :job_id AND status = 'running' AND attempts = :attempt;

-- name: finish_job
UPDATE jobs
SET status = :status, completed_at = :now, result = :result, error = :error,
    step_results = :step_results, execution_time_ms = :execution_time_ms,
    tool_version = IFNULL(:tool_version, tool_version),
    lease_owner = NULL, lease_expires_at = NULL,
    version = (SELECT IFNULL(MAX(version), 0) + 1 FROM jobs), changed_by = :origin
-- Fenced by the attempt: a worker whose run was handed back (lease lost) cannot end the next run.
WHERE job_id = :job_id AND status = 'running' AND attempts = :attempt
-- Only what the run may not know (the finisher builds the rest of the ended job: sqlite_store.py).
RETURNING version, progress, cancel_requested_at, tool_version,
          -- whether the owner's registrations need looking up (most owners have none)
          EXISTS (SELECT 1 FROM webhooks w WHERE w.owner = jobs.owner) AS owner_has_webhooks;

-- name: requeue_job
UPDATE jobs
SET status = 'queued', run_after = :run_after, started_at = NULL, progress = NULL,
    lease_owner = NULL, lease_expires_at = NULL,
    version = (SELECT IFNULL(MAX(version), 0) + 1 FROM jobs), changed_by = :origin
-- A job whose cancel was asked for is not run again: the engine ends it canceled instead.
WHERE job_id = :job_id AND status = 'running' AND attempts = :attempt AND cancel_requested_at IS NULL
RETURNING *, NULL AS position_in_queue;

-- name: hand_back_job
-- A clean shutdown hands a running job back: queued again at its old place, the attempt uncounted.
UPDATE jobs
SET status = 'queued', attempts = attempts - 1, run_after = :now, started_at = NULL, progress = NULL,
    lease_owner = NULL, lease_expires_at = NULL,
    version = (SELECT IFNULL(MAX(version), 0) + 1 FROM jobs), changed_by = :origin
WHERE job_id = :job_id AND status = 'running' AND attempts = :attempt AND cancel_requested_at IS NULL
RETURNING *, NULL AS position_in_queue;

-- name: request_cancel
-- Asks whichever process runs the job to cancel it; its change watcher sees this write.
UPDATE jobs
SET cancel_requested_at = :now,
    version = (SELECT IFNULL(MAX(version), 0) + 1 FROM jobs), changed_by = :origin
WHERE job_id = :job_id AND status = 'running' AND cancel_requested_at IS NULL
RETURNING *, NULL AS position_in_queue;

-- name: cancel_queued_job
UPDATE jobs
SET status = 'canceled', completed_at = :now, error = :error,
    version = (SELECT IFNULL(MAX(version), 0) + 1 FROM jobs), changed_by = :origin
WHERE job_id = :job_id AND status = 'queued'
RETURNING *, NULL AS position_in_queue,
          -- whether the owner's registrations need looking up (most owners have none)
          EXISTS (SELECT 1 FROM webhooks w WHERE w.owner = jobs.owner) AS owner_has_webhooks;

-- name: expired_leases
SELECT *, NULL AS position_in_queue FROM jobs
WHERE status = 'running' AND lease_expires_at < :now;

-- name: purge_finished
-- Finished jobs past retention, and finished tasks past the ttl their client asked for.
-- The newest row stays, whatever its age: versions count on from it, and are never reused.
DELETE FROM jobs
WHERE completed_at IS NOT NULL
  AND (completed_at < :before OR (ttl_ms IS NOT NULL AND created_at + ttl_ms < :now))
  AND version < (SELECT MAX(version) FROM jobs);

-- name: jobs_changed_since
-- What other processes changed since this one's watcher last looked, oldest change first.
SELECT *, NULL AS position_in_queue FROM jobs
WHERE version > :since AND changed_by IS NOT :origin
ORDER BY version
LIMIT :limit;

-- name: last_version
SELECT IFNULL(MAX(version), 0) FROM jobs;

-- name: webhooks_for_event
SELECT webhook_id, url FROM webhooks
WHERE owner = :owner AND EXISTS (SELECT 1 FROM json_each(events) WHERE value = :event)
ORDER BY created_at, webhook_id;

-- name: claim_deliveries
-- An attempt's claim: moving next_attempt_at past the attempt's longest run keeps others off it,
-- and if the process dies mid-attempt the delivery falls due again when the claim lapses.
UPDATE webhook_deliveries
SET attempts = attempts + 1, last_attempt_at = :now, next_attempt_at = :claimed_until
WHERE delivery_id IN (
    SELECT delivery_id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at <= :now
    ORDER BY next_attempt_at
    LIMIT :limit
)
RETURNING *;

-- name: webhook_secrets
SELECT webhook_id, secret FROM webhooks WHERE webhook_id IN (SELECT value FROM json_each(:webhook_ids));
