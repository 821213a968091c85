-- MCP tasks are jobs: `kind` tells which door made the job, `ttl_ms` how long a task is kept.
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'job' CHECK (kind IN ('job', 'task'));
ALTER TABLE jobs ADD COLUMN ttl_ms INTEGER;

CREATE INDEX jobs_tasks_by_owner ON jobs (owner, seq) WHERE kind = 'task';
