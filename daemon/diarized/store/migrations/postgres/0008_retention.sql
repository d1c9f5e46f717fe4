-- diarized job store, PostgreSQL, version 8 (frozen: never edit; add the next file).
-- As SQLite's schema version 11: when retention_days removed a finished job's files, and the
-- finished jobs not yet expired, oldest first, from an index.
ALTER TABLE jobs ADD COLUMN expired_at DOUBLE PRECISION;
CREATE INDEX jobs_expiry ON jobs (finished_at) WHERE expired_at IS NULL;
-- Counts that outlive the rows they count (deleted jobs by outcome, expiries): counters only grow.
CREATE TABLE tallies (name TEXT PRIMARY KEY, count BIGINT NOT NULL);
