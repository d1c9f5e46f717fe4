-- diarized job store, PostgreSQL, version 9 (frozen: never edit; add the next file).
-- As SQLite's schema version 12: what came out, as data (summary.py).
ALTER TABLE jobs ADD COLUMN language TEXT;
ALTER TABLE jobs ADD COLUMN language_probability DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN word_count INTEGER;
ALTER TABLE jobs ADD COLUMN speakers_found TEXT;
