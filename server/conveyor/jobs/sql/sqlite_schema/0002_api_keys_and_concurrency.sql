-- API keys (stored as SHA-256 of the key; the key itself is shown once) and per-owner job concurrency.
CREATE TABLE api_keys (
    key_id     TEXT    PRIMARY KEY,
    key_hash   TEXT    NOT NULL UNIQUE,
    name       TEXT,
    role       TEXT    NOT NULL CHECK (role IN ('admin', 'user')),
    plan       TEXT    NOT NULL CHECK (plan IN ('free', 'pro', 'enterprise')),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

-- The owner's plan limit when the job was submitted; NULL means no limit (the local stdio user).
ALTER TABLE jobs ADD COLUMN max_concurrent INTEGER;

CREATE INDEX jobs_running_by_owner ON jobs (owner) WHERE status = 'running';
