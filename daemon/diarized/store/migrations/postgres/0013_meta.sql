-- diarized job store, PostgreSQL, version 13 (frozen: never edit; add the next file).
-- Facts about the store as a whole; first the id of the state root it serves (state_root.py):
-- a node whose state_dir carries another id refuses to start.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
