-- Executions counted per principal in fixed one-minute windows, in the database: every process
-- that serves the database counts against one limit.
CREATE TABLE rate_windows (
    principal    TEXT    PRIMARY KEY,
    window_start INTEGER NOT NULL,  -- Unix seconds
    used         INTEGER NOT NULL
);
