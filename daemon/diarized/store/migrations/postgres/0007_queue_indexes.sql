-- diarized job store, PostgreSQL, version 7 (frozen: never edit; add the next file).
-- As SQLite's schema version 10: a queue of 100,000 read in claim order from an index,
-- and the few queued jobs an operator asked to cancel found without a scan.
CREATE INDEX jobs_queue ON jobs (state, priority, created_at, id);
CREATE INDEX jobs_cancel ON jobs (state) WHERE cancel_requested = 1;
