-- diarized job store, PostgreSQL, version 11 (frozen: never edit; add the next file).
-- As SQLite's schema version 14: newest first from an index, and full-text search over file
-- names, speaker names and transcripts ('simple': no stemming, the same words as SQLite's FTS5).
CREATE INDEX jobs_created ON jobs (created_at, id);
CREATE TABLE job_text (
    job_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    speakers TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL DEFAULT '',
    document tsvector GENERATED ALWAYS AS (to_tsvector('simple', name || ' ' || speakers || ' ' || body)) STORED
);
CREATE INDEX job_text_document ON job_text USING GIN (document);
INSERT INTO job_text (job_id, name) SELECT id, source_name FROM jobs;
