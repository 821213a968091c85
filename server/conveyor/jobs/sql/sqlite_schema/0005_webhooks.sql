-- Webhooks: registrations (per owner) and the delivery outbox. A job's terminal write inserts its
-- deliveries in the same transaction, so none is lost on a crash and none exists for a state that
-- did not commit. Times are epoch milliseconds.
CREATE TABLE webhooks (
    webhook_id TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,
    url        TEXT    NOT NULL,
    events     TEXT    NOT NULL,  -- JSON array of event names
    -- In clear, unlike API keys: signing needs the secret itself, not a hash of it.
    secret     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX webhooks_by_owner ON webhooks (owner, created_at);

CREATE TABLE webhook_deliveries (
    delivery_id     TEXT    PRIMARY KEY,
    job_id          TEXT    NOT NULL,  -- no foreign key: the payload outlives a purged job
    -- NULL: the job's own webhook_url, signed with the server's secret. Unregistering a webhook
    -- drops its deliveries, pending ones included: nothing goes to a URL its owner took back.
    webhook_id      TEXT    REFERENCES webhooks (webhook_id) ON DELETE CASCADE,
    url             TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    payload         TEXT    NOT NULL,  -- the JSON body exactly as signed and sent, on every attempt
    status          TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER,           -- pending: when it is due (or when an attempt's claim lapses)
    last_attempt_at INTEGER,
    delivered_at    INTEGER,
    last_error      TEXT
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_job ON webhook_deliveries (job_id);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id);
CREATE INDEX webhook_deliveries_settled ON webhook_deliveries (last_attempt_at) WHERE status <> 'pending';

-- Secrets the server makes for itself on first start (the webhook signing secret), kept here so
-- that a restart signs with the same one.
CREATE TABLE server_secrets (
    name       TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
