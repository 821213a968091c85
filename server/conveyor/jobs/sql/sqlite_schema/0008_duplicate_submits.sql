-- A jobs_submit that repeats one of the owner's jobs still queued or running (same tool, same
-- arguments, no idempotency key: a client that timed out and asked again) answers that job
-- instead of starting a second. `dedupe_key` is a hash of the tool and its arguments.
ALTER TABLE jobs ADD COLUMN dedupe_key TEXT;

CREATE UNIQUE INDEX jobs_active_duplicates ON jobs (owner, dedupe_key)
WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running');
