-- diarized job store, PostgreSQL, version 1 (frozen: never edit; add the next file).
-- The same tables as SQLite's schema version 4, in PostgreSQL types.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    source_name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    stage TEXT,
    progress DOUBLE PRECISION NOT NULL,
    eta_seconds DOUBLE PRECISION,
    duration DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL,
    not_before DOUBLE PRECISION NOT NULL,
    worker_pid INTEGER,
    heartbeat_at DOUBLE PRECISION,
    progress_at DOUBLE PRECISION,
    peak_rss_mb DOUBLE PRECISION,
    error TEXT,
    error_type TEXT,
    hint TEXT,
    inbox_path TEXT,
    source_path TEXT,
    output_dir TEXT,
    duplicate_of TEXT,
    cancel_requested INTEGER NOT NULL,
    processing_seconds DOUBLE PRECISION,
    supervisor_deaths INTEGER NOT NULL DEFAULT 0,
    num_speakers INTEGER,
    min_speakers INTEGER,
    max_speakers INTEGER
);
CREATE INDEX jobs_claim ON jobs (state, priority, created_at);
CREATE INDEX jobs_sha256 ON jobs (sha256);
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    job_id TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    data TEXT
);
CREATE INDEX events_job ON events (job_id, id);
CREATE TABLE daemon (
    id INTEGER PRIMARY KEY,
    pid INTEGER,
    started_at DOUBLE PRECISION,
    heartbeat_at DOUBLE PRECISION,
    workers_busy INTEGER,
    workers_total INTEGER,
    memory_used_gb DOUBLE PRECISION,
    memory_budget_gb DOUBLE PRECISION,
    queued INTEGER,
    state TEXT
);
