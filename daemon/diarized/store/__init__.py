"""The job store: the job model, the `JobStore` contract and its two backends.

Only this package writes SQL. The contract (`JobStore`) says what every backend
guarantees, method by method, the way huey's BaseStorage documents its
backends; tests/store/test_contract.py checks each point against a real
database, and a second backend (PostgreSQL, for several nodes) must pass the
same suite unchanged. States:

    incoming -> queued -> running -> succeeded | failed | cancelled
    incoming -> duplicate   (same content as a live or finished job)
    incoming -> failed      (the file vanished before it was moved)

`incoming` is a job recorded but whose file is not yet moved out of the inbox
(record first, then move: a crash in between is finished at the next start).
A crash or timeout returns a running job to queued with one attempt spent,
until max_attempts; a graceful stop returns it without spending one.

The SQLite backend runs every transition in one BEGIN IMMEDIATE transaction,
so the supervisor, its workers and `diarizectl` (separate processes) never
see a half-made change. Its schema is a list of frozen migrations, each the
literal DDL of its version: a migration is never edited once released, a
change is a new one.

Files, one job each: model.py (states, records, errors), contract.py (JobStore),
sql.py (the shared SQL), sqlite.py and postgres.py (the backends), migrations/
(PostgreSQL's frozen SQL files; SQLite's are a literal list in sqlite.py).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from diarized.store.contract import JobStore
from diarized.store.model import (DEDUPE_STATES, FINAL_STATES, LIVE_STATES, SEED_STATUS, SORTS, STORAGE_ERRNOS,
                                  DaemonStatus, Delivery, DeliveryState, Event, InvalidTransition, Job,
                                  JobOptions, JobQuery, LeaseLost, NotFound, Notification, PendingWork,
                                  Priority, Sample, SchemaError, SpeakerHints, State, StoreUnavailable, Timing,
                                  boot_id, new_job_id, safe_location, short_id, storage_trouble)
from diarized.store.sql import MAX_DEATH_BACKOFF, MAX_WAIT_SECONDS, SQLStore
from diarized.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStore

__all__ = ["DEDUPE_STATES", "FINAL_STATES", "LIVE_STATES", "MAX_DEATH_BACKOFF", "MAX_WAIT_SECONDS", "MIGRATIONS",
           "SCHEMA_VERSION", "SEED_STATUS", "SORTS", "STORAGE_ERRNOS", "DaemonStatus", "Delivery",
           "DeliveryState", "Event", "InvalidTransition", "Job", "JobOptions", "JobQuery", "JobStore",
           "LeaseLost", "NotFound", "Notification", "PendingWork", "Priority", "SQLStore", "SQLiteStore",
           "Sample", "SchemaError", "SpeakerHints", "State", "StoreUnavailable", "Timing", "boot_id",
           "new_job_id", "open_store", "safe_location", "short_id", "storage_trouble"]


def open_store(location: str | Path, readonly: bool = False) -> JobStore:
    """The backend for a location: a SQLite file path (the embedded default) or a postgresql:// URL.

    A file that is not a usable store raises SchemaError, one that cannot be written or
    locked now StoreUnavailable: both name the file, neither ever deletes it.
    """
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        from diarized.store.postgres import PostgresStore  # the optional extra diarized[postgres]

        return PostgresStore(text, readonly=readonly)
    if "://" in text:
        raise SchemaError(f"store = {text!r}: only a SQLite file path or a postgresql:// URL")
    try:
        return SQLiteStore(Path(text), readonly=readonly)
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(f"{text}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise SchemaError(f"{text} is damaged or is not a diarized job store ({exc})") from exc
