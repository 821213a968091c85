-- Per-run credentials of a job that has yet to end, sealed with the server's key
-- (credentials.py). Erased as the job ends, whichever statement ends it.
ALTER TABLE jobs ADD COLUMN sealed_credentials TEXT;

CREATE FUNCTION conveyor_erase_credentials() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.sealed_credentials := NULL;
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_erase_credentials BEFORE UPDATE OF status ON jobs
    FOR EACH ROW
    WHEN (NEW.sealed_credentials IS NOT NULL AND NEW.status NOT IN ('queued', 'running'))
    EXECUTE FUNCTION conveyor_erase_credentials();
