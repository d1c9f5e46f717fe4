-- diarized job store, PostgreSQL, version 12 (frozen: never edit; add the next file).
-- Roles held by one node at a time (the inbox scanner), as leases on the database's clock.
-- They replace a session advisory lock, which a paused holder kept for as long as it was
-- stopped, and a partitioned one for as long as the server kept its session (TCP's two
-- hours): a holder renews its row every tick; once expires_at is past, any node takes it.
CREATE TABLE roles (
    role TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
