-- Claims take the oldest queued job: without this index that is a scan over every job ever kept
-- (finished ones included), which made each claim cost more as the table grew.
CREATE INDEX jobs_queued_in_order ON jobs (seq) WHERE status = 'queued';
