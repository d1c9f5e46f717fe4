-- diarized job store, PostgreSQL, version 2 (frozen: never edit; add the next file).
-- Webhooks, as SQLite's schema version 5: a notification per final transition, then deliveries.
CREATE TABLE notifications (
    id BIGSERIAL PRIMARY KEY,
    job_id TEXT NOT NULL,
    event TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    dispatched_at DOUBLE PRECISION
);
CREATE INDEX notifications_pending ON notifications (dispatched_at, id);
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    event TEXT NOT NULL,
    url TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    next_at DOUBLE PRECISION NOT NULL,
    last_at DOUBLE PRECISION,
    last_status INTEGER,
    last_error TEXT,
    payload TEXT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (state, next_at);
CREATE INDEX deliveries_job ON deliveries (job_id);
