-- The version of its tool a job runs: the newest when it was submitted, or the one the submit
-- named (requested_version, also set then). A job that named one is claimed only by a worker that
-- has that version (claim_next_job); the others by any worker that has the tool.
ALTER TABLE jobs ADD COLUMN tool_version TEXT;
ALTER TABLE jobs ADD COLUMN requested_version TEXT;
