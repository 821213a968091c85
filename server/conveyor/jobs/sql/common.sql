-- Statements both dialects run as written (SQLite and PostgreSQL); load_queries adds each
-- dialect's own file (sqlite.sql, postgres.sql) to these.

-- name: get_job
SELECT j.*,
       CASE WHEN j.status = 'queued' THEN
           (SELECT COUNT(*) FROM jobs q WHERE q.status = 'queued' AND q.queue = j.queue AND q.seq < j.seq) + 1
       END AS position_in_queue
FROM jobs j
WHERE j.job_id = :job_id;

-- name: queue_depth
SELECT COUNT(*) FROM jobs WHERE status = 'queued';

-- name: active_count
-- Two partial indexes answer it: never a scan of the finished jobs.
SELECT (SELECT COUNT(*) FROM jobs WHERE status = 'queued') + (SELECT COUNT(*) FROM jobs WHERE status = 'running');

-- name: recent_durations
SELECT execution_time_ms FROM jobs
WHERE tool = :tool AND status = 'completed'
ORDER BY completed_at DESC
LIMIT 20;

-- name: count_jobs_by_status
SELECT status, COUNT(*) AS n FROM jobs GROUP BY status;

-- name: insert_api_key
INSERT INTO api_keys (key_id, key_hash, name, role, plan, created_at)
VALUES (:key_id, :key_hash, :name, :role, :plan, :created_at);

-- name: find_api_key
SELECT * FROM api_keys WHERE key_hash = :key_hash AND revoked_at IS NULL;

-- name: list_api_keys
SELECT * FROM api_keys ORDER BY created_at, key_id;

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = :now WHERE key_id = :key_id AND revoked_at IS NULL;

-- name: count_active_api_keys
SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL;

-- name: hit_rate_window
-- Count :count executions (a process may take a block and hand it out itself) in the
-- principal's current window; no row: the window has no room for them.
INSERT INTO rate_windows AS w (principal, window_start, used) VALUES (:principal, :window_start, :count)
ON CONFLICT (principal) DO UPDATE
SET used = CASE WHEN w.window_start = excluded.window_start THEN w.used + :count ELSE :count END,
    window_start = excluded.window_start
WHERE w.window_start <> excluded.window_start OR w.used + :count <= :limit
RETURNING used;

-- name: peek_rate_window
SELECT CASE WHEN window_start = :window_start THEN used ELSE 0 END FROM rate_windows
WHERE principal = :principal;

-- name: insert_webhook
-- Refused (no row) when the owner already has :max_per_owner registrations.
INSERT INTO webhooks (webhook_id, owner, url, events, secret, created_at)
SELECT :webhook_id, :owner, :url, :events, :secret, :created_at
WHERE (SELECT COUNT(*) FROM webhooks WHERE owner = :owner) < :max_per_owner
RETURNING *;

-- name: list_webhooks_of_owner
SELECT * FROM webhooks WHERE owner = :owner ORDER BY created_at, webhook_id;

-- name: delete_webhook
DELETE FROM webhooks WHERE webhook_id = :webhook_id AND owner = :owner;

-- name: insert_delivery
INSERT INTO webhook_deliveries (delivery_id, job_id, webhook_id, url, event, payload, created_at,
                                next_attempt_at)
VALUES (:delivery_id, :job_id, :webhook_id, :url, :event, :payload, :now, :now);

-- name: record_delivery_attempt
-- Fenced by the attempt, like a job's run: a stale attempt cannot settle a later one.
UPDATE webhook_deliveries
SET status = :status, next_attempt_at = :next_attempt_at, delivered_at = :delivered_at,
    last_error = :last_error
WHERE delivery_id = :delivery_id AND status = 'pending' AND attempts = :attempt
RETURNING *;

-- name: release_delivery
-- An attempt interrupted by shutdown does not count: the delivery is due again at once.
UPDATE webhook_deliveries
SET attempts = attempts - 1, next_attempt_at = :now
WHERE delivery_id = :delivery_id AND status = 'pending' AND attempts = :attempt;

-- name: next_delivery_due
SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending';

-- name: deliveries_of_job
SELECT * FROM webhook_deliveries WHERE job_id = :job_id ORDER BY created_at, delivery_id;

-- name: purge_settled_deliveries
DELETE FROM webhook_deliveries WHERE status <> 'pending' AND last_attempt_at < :before;

-- name: insert_server_secret
INSERT INTO server_secrets (name, value, created_at) VALUES (:name, :value, :now)
ON CONFLICT (name) DO NOTHING;

-- name: get_server_secret
SELECT value FROM server_secrets WHERE name = :name;

-- name: upsert_worker
-- A heartbeat renews the row, and its tools: an upstream's may have come or gone.
INSERT INTO workers (worker_id, pid, host, queues, tools, started_at, seen_at)
VALUES (:worker_id, :pid, :host, :queues, :tools, :started_at, :now)
ON CONFLICT (worker_id) DO UPDATE SET seen_at = excluded.seen_at, tools = excluded.tools;

-- name: delete_worker
DELETE FROM workers WHERE worker_id = :worker_id;

-- name: live_workers
SELECT * FROM workers WHERE seen_at >= :since ORDER BY started_at, worker_id;

-- name: purge_workers
DELETE FROM workers WHERE seen_at < :before;
