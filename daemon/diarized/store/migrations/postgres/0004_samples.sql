-- diarized job store, PostgreSQL, version 4 (frozen: never edit; add the next file).
-- As SQLite's schema version 7: the workers' memory and CPU over the last hour, kept bounded.
CREATE TABLE samples (
    id BIGSERIAL PRIMARY KEY,
    job_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    rss_mb DOUBLE PRECISION NOT NULL,
    cpu_percent DOUBLE PRECISION NOT NULL
);
CREATE INDEX samples_at ON samples (at);
