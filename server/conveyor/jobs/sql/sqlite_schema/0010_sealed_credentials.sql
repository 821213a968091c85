-- Per-run credentials of a job that has yet to end, sealed with the server's key
-- (credentials.py). Erased as the job ends, whichever statement ends it.
ALTER TABLE jobs ADD COLUMN sealed_credentials TEXT;

CREATE TRIGGER jobs_erase_credentials AFTER UPDATE OF status ON jobs
WHEN NEW.sealed_credentials IS NOT NULL AND NEW.status NOT IN ('queued', 'running')
BEGIN
    UPDATE jobs SET sealed_credentials = NULL WHERE seq = NEW.seq;
END;
