-- diarized job store, PostgreSQL, version 6 (frozen: never edit; add the next file).
-- As SQLite's schema version 9: a backoff's end and a supervisor's heartbeat also on the
-- monotonic clock of the boot that wrote them, so a step of the wall clock neither holds
-- a job back nor shows a live daemon DOWN on its own machine.
ALTER TABLE jobs ADD COLUMN wait_mono DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN wait_boot TEXT;
ALTER TABLE nodes ADD COLUMN heartbeat_mono DOUBLE PRECISION;
ALTER TABLE nodes ADD COLUMN boot_id TEXT;
