-- Many processes share one database. Each write of a job stamps `version` (increasing across all
-- jobs and never reused: the purge keeps the newest row) and `changed_by` (the writing process's
-- store), so that each process's change watcher reads only what the others changed since it last
-- looked. `cancel_requested_at`: a cancel asked of a running job, which the process running it
-- carries out when it sees it.
ALTER TABLE jobs ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN changed_by TEXT;
ALTER TABLE jobs ADD COLUMN cancel_requested_at INTEGER;

CREATE INDEX jobs_by_version ON jobs (version);
