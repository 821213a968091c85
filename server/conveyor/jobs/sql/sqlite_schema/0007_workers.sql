-- Processes that run jobs, each renewing its row with its heartbeat: which tools and queues have a
-- live worker (a queued job that none can run says so), and what `conveyor worker status` lists.
CREATE TABLE workers (
    worker_id  TEXT    PRIMARY KEY,
    pid        INTEGER NOT NULL,
    host       TEXT    NOT NULL,
    queues     TEXT,              -- JSON array; NULL: every queue
    tools      TEXT    NOT NULL,  -- JSON array
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL
);
