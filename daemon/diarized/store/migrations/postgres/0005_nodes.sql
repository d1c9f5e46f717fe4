-- diarized job store, PostgreSQL, version 5 (frozen: never edit; add the next file).
-- As SQLite's schema version 8: several nodes on one store. A running job's lease names
-- its node and a generation (+1 per claim) that fences every later transition, and ends
-- at lease_expires_at unless its worker renews it; then any node requeues the job.
ALTER TABLE jobs ADD COLUMN node TEXT;
ALTER TABLE jobs ADD COLUMN lease_generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN lease_expires_at DOUBLE PRECISION;
CREATE INDEX jobs_lease ON jobs (state, lease_expires_at);
CREATE TABLE nodes (
    node TEXT PRIMARY KEY,
    host TEXT,
    pid INTEGER,
    started_at DOUBLE PRECISION,
    heartbeat_at DOUBLE PRECISION,
    workers_busy INTEGER,
    workers_total INTEGER,
    memory_used_gb DOUBLE PRECISION,
    memory_budget_gb DOUBLE PRECISION,
    queued INTEGER,
    state TEXT,
    inbox INTEGER NOT NULL DEFAULT 0
);
DROP TABLE daemon;
