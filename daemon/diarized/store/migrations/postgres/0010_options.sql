-- diarized job store, PostgreSQL, version 10 (frozen: never edit; add the next file).
-- As SQLite's schema version 13: options given with one file (options.py).
ALTER TABLE jobs ADD COLUMN options TEXT;
