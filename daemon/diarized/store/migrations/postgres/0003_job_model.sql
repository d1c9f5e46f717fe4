-- diarized job store, PostgreSQL, version 3 (frozen: never edit; add the next file).
-- As SQLite's schema version 6: the Whisper model each job ran with.
ALTER TABLE jobs ADD COLUMN model TEXT;
