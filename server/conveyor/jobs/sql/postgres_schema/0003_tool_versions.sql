-- The version of its tool a job runs: the newest when it was submitted, or the one the submit
-- named (requested_version, also set then). A job that named one is claimed only by a worker that
-- has that version; the others by any worker that has the tool.
ALTER TABLE jobs ADD COLUMN tool_version TEXT;
ALTER TABLE jobs ADD COLUMN requested_version TEXT;

-- The claim of 0001, but for which worker may take a job that named a version.
CREATE OR REPLACE FUNCTION conveyor_claim(
    worker TEXT, queues TEXT[], tools TEXT[], now_ms BIGINT, lease_until BIGINT, origin TEXT, max_jobs INTEGER
) RETURNS SETOF jobs LANGUAGE plpgsql AS $$
DECLARE
    seqs BIGINT[];
    owners TEXT[];
    limits INTEGER[];
    picked BIGINT[] := '{}';
    limited_owner TEXT;
    running INTEGER;
    taken JSONB := '{}';  -- owner -> jobs of the owner this claim takes
BEGIN
    SELECT array_agg(c.seq ORDER BY c.seq), array_agg(c.owner ORDER BY c.seq),
           array_agg(c.max_concurrent ORDER BY c.seq)
    INTO seqs, owners, limits
    FROM (
        SELECT j.seq, j.owner, j.max_concurrent FROM jobs j
        WHERE j.status = 'queued' AND j.run_after <= now_ms
          AND (queues IS NULL OR j.queue = ANY (queues))
          -- a worker claims only the tools it has loaded; a job that named a version, only a
          -- worker that has that version (its tools list each as tool@version too)
          AND (CASE WHEN j.requested_version IS NULL THEN j.tool
                    ELSE j.tool || '@' || j.requested_version END) = ANY (tools)
          -- a first look (without the lock) at owners at their limit: their jobs are not candidates
          AND (j.max_concurrent IS NULL
               OR (SELECT COUNT(*) FROM jobs r WHERE r.status = 'running' AND r.owner = j.owner)
                  < j.max_concurrent)
        ORDER BY j.seq
        -- more than it takes: some may belong to an owner the locked count finds at its limit
        LIMIT max_jobs * 2 + 8
        FOR UPDATE SKIP LOCKED
    ) c;
    IF seqs IS NULL THEN
        RETURN;
    END IF;

    IF array_remove(limits, NULL) = '{}' THEN
        picked := seqs[1:max_jobs];  -- no candidate's owner has a limit
    ELSE
        FOR limited_owner IN
            SELECT DISTINCT o FROM unnest(owners, limits) AS t(o, l) WHERE l IS NOT NULL ORDER BY o
        LOOP
            PERFORM pg_advisory_xact_lock(hashtext('conveyor.owner'), hashtext(limited_owner));
        END LOOP;
        FOR i IN 1 .. array_length(seqs, 1) LOOP
            EXIT WHEN cardinality(picked) >= max_jobs;
            IF limits[i] IS NOT NULL THEN
                -- Under the owner's lock, in a statement of its own: every claim committed
                -- before the lock was granted is counted.
                SELECT COUNT(*) INTO running FROM jobs r WHERE r.status = 'running' AND r.owner = owners[i];
                IF running + COALESCE((taken ->> owners[i])::INTEGER, 0) >= limits[i] THEN
                    CONTINUE;
                END IF;
                taken := jsonb_set(taken, ARRAY[owners[i]],
                                   to_jsonb(COALESCE((taken ->> owners[i])::INTEGER, 0) + 1));
            END IF;
            picked := picked || seqs[i];
        END LOOP;
    END IF;

    RETURN QUERY
    WITH claimed AS (
        UPDATE jobs
        SET status = 'running', started_at = now_ms, attempts = jobs.attempts + 1,
            lease_owner = worker, lease_expires_at = lease_until,
            version = nextval('jobs_version'), changed_by = origin
        WHERE jobs.seq = ANY (picked)
        RETURNING jobs.*
    )
    SELECT * FROM claimed ORDER BY claimed.seq;
END
$$;
