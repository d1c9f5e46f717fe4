"""The embedded backend: one SQLite file in WAL mode, its schema a list of frozen migrations.

Every transition runs in one BEGIN IMMEDIATE transaction, so the supervisor, its
workers and `diarizectl` (separate processes) never see a half-made change. A
migration is never edited once released; a change is a new one.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Iterator

from diarized.store.model import Job, SchemaError, StoreUnavailable
from diarized.store.sql import SQLStore

SCHEMA_VERSION = 14
# SQLite's words for a database it cannot write at the moment (sqlite3.OperationalError)
_UNAVAILABLE = ("disk is full", "readonly database", "disk I/O error", "unable to open database",
                "database is locked")



# Frozen: version -> the statements that bring the schema from version-1. Never edit a
# released entry (databases in the field already ran it); add the next version instead.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE "jobs" (
           "id" TEXT PRIMARY KEY, "source_name" TEXT, "sha256" TEXT, "size" INTEGER,
           "priority" INTEGER, "state" TEXT, "attempts" INTEGER, "max_attempts" INTEGER,
           "stage" TEXT, "progress" REAL, "eta_seconds" REAL, "duration" REAL,
           "created_at" REAL, "started_at" REAL, "finished_at" REAL, "updated_at" REAL,
           "not_before" REAL, "worker_pid" INTEGER, "heartbeat_at" REAL, "progress_at" REAL,
           "peak_rss_mb" REAL, "error" TEXT, "error_type" TEXT, "hint" TEXT,
           "inbox_path" TEXT, "source_path" TEXT, "output_dir" TEXT, "duplicate_of" TEXT,
           "cancel_requested" INTEGER, "processing_seconds" REAL)""",
        'CREATE INDEX "idx_jobs_state_priority_created_at" ON "jobs" ("state", "priority", "created_at")',
        'CREATE INDEX "idx_jobs_sha256" ON "jobs" ("sha256")',
        """CREATE TABLE "events" (
           "id" INTEGER PRIMARY KEY, "job_id" TEXT, "at" REAL, "kind" TEXT, "detail" TEXT)""",
        'CREATE INDEX "idx_events_job_id_at" ON "events" ("job_id", "at")',
        """CREATE TABLE "daemon" (
           "id" INTEGER PRIMARY KEY, "pid" INTEGER, "started_at" REAL, "heartbeat_at" REAL,
           "workers_busy" INTEGER, "workers_total" INTEGER, "memory_used_gb" REAL,
           "memory_budget_gb" REAL, "queued" INTEGER, "state" TEXT)""",
    ),
    2: (
        # structured event payloads (worker pid and threads, ...) instead of parsing text
        'ALTER TABLE "events" ADD COLUMN "data" TEXT',
    ),
    3: (
        # a daemon death does not spend the attempt of the jobs it ran, unless it keeps happening
        'ALTER TABLE "jobs" ADD COLUMN "supervisor_deaths" INTEGER NOT NULL DEFAULT 0',
    ),
    4: (
        # speaker hints given with the file (NULL: the configuration's)
        'ALTER TABLE "jobs" ADD COLUMN "num_speakers" INTEGER',
        'ALTER TABLE "jobs" ADD COLUMN "min_speakers" INTEGER',
        'ALTER TABLE "jobs" ADD COLUMN "max_speakers" INTEGER',
    ),
    5: (
        # webhooks: a notification per final transition (same transaction), then deliveries
        """CREATE TABLE "notifications" (
           "id" INTEGER PRIMARY KEY, "job_id" TEXT NOT NULL, "event" TEXT NOT NULL, "at" REAL NOT NULL,
           "dispatched_at" REAL)""",
        'CREATE INDEX "idx_notifications_dispatched_at" ON "notifications" ("dispatched_at", "id")',
        """CREATE TABLE "deliveries" (
           "id" TEXT PRIMARY KEY, "job_id" TEXT NOT NULL, "event" TEXT NOT NULL, "url" TEXT NOT NULL,
           "state" TEXT NOT NULL, "attempts" INTEGER NOT NULL, "created_at" REAL NOT NULL,
           "expires_at" REAL NOT NULL, "next_at" REAL NOT NULL, "last_at" REAL, "last_status" INTEGER,
           "last_error" TEXT, "payload" TEXT NOT NULL)""",
        'CREATE INDEX "idx_deliveries_state_next_at" ON "deliveries" ("state", "next_at")',
        'CREATE INDEX "idx_deliveries_job_id" ON "deliveries" ("job_id")',
    ),
    6: (
        # the Whisper model each job ran with (processing time and real-time factor by model)
        'ALTER TABLE "jobs" ADD COLUMN "model" TEXT',
    ),
    7: (
        # the workers' memory and CPU over the last hour (the dashboard's chart), kept bounded
        """CREATE TABLE "samples" (
           "id" INTEGER PRIMARY KEY, "job_id" TEXT NOT NULL, "pid" INTEGER NOT NULL, "at" REAL NOT NULL,
           "rss_mb" REAL NOT NULL, "cpu_percent" REAL NOT NULL)""",
        'CREATE INDEX "idx_samples_at" ON "samples" ("at")',
    ),
    8: (
        # several nodes on one store: node-scoped leases fenced by a generation, a row per node
        'ALTER TABLE "jobs" ADD COLUMN "node" TEXT',
        'ALTER TABLE "jobs" ADD COLUMN "lease_generation" INTEGER NOT NULL DEFAULT 0',
        'ALTER TABLE "jobs" ADD COLUMN "lease_expires_at" REAL',
        """CREATE TABLE "nodes" (
           "node" TEXT PRIMARY KEY, "host" TEXT, "pid" INTEGER, "started_at" REAL, "heartbeat_at" REAL,
           "workers_busy" INTEGER, "workers_total" INTEGER, "memory_used_gb" REAL,
           "memory_budget_gb" REAL, "queued" INTEGER, "state" TEXT, "inbox" INTEGER NOT NULL DEFAULT 0)""",
        'DROP TABLE "daemon"',
    ),
    9: (
        # durations that survive a step of the wall clock: a backoff's end and a supervisor's heartbeat
        # also on the monotonic clock of the boot that wrote them
        'ALTER TABLE "jobs" ADD COLUMN "wait_mono" REAL',
        'ALTER TABLE "jobs" ADD COLUMN "wait_boot" TEXT',
        'ALTER TABLE "nodes" ADD COLUMN "heartbeat_mono" REAL',
        'ALTER TABLE "nodes" ADD COLUMN "boot_id" TEXT',
    ),
    10: (
        # a queue of 100,000: the claim order read from an index (no sort), cancellations found
        # among the few rows that ask for one
        'CREATE INDEX "idx_jobs_queue" ON "jobs" ("state", "priority", "created_at", "id")',
        'CREATE INDEX "idx_jobs_cancel" ON "jobs" ("state") WHERE "cancel_requested" = 1',
    ),
    11: (
        # retention_days: when a finished job's files were removed; the ones not yet, oldest first
        'ALTER TABLE "jobs" ADD COLUMN "expired_at" REAL',
        'CREATE INDEX "idx_jobs_expiry" ON "jobs" ("finished_at") WHERE "expired_at" IS NULL',
        # counts that outlive the rows they count (deleted jobs by outcome, expiries): counters only grow
        'CREATE TABLE "tallies" ("name" TEXT PRIMARY KEY, "count" INTEGER NOT NULL)',
    ),
    12: (
        # what came out, as data (summary.py): language, words, speakers with their speech time
        'ALTER TABLE "jobs" ADD COLUMN "language" TEXT',
        'ALTER TABLE "jobs" ADD COLUMN "language_probability" REAL',
        'ALTER TABLE "jobs" ADD COLUMN "word_count" INTEGER',
        'ALTER TABLE "jobs" ADD COLUMN "speakers_found" TEXT',
    ),
    13: (
        # options given with one file (options.py): language, model, formats, prompt, hotwords
        'ALTER TABLE "jobs" ADD COLUMN "options" TEXT',
    ),
    14: (
        # finding any job (JobQuery): newest first from an index, and full-text search over file
        # names, speaker names and transcripts (FTS5, accents folded: "reuniao" finds "reunião")
        'CREATE INDEX "idx_jobs_created" ON "jobs" ("created_at", "id")',
        """CREATE VIRTUAL TABLE "job_text" USING fts5(
           "job_id" UNINDEXED, "name", "speakers", "body", tokenize = 'unicode61 remove_diacritics 2')""",
        'INSERT INTO "job_text" ("job_id", "name", "speakers", "body") '
        'SELECT "id", "source_name", \'\', \'\' FROM "jobs" ORDER BY "created_at", "id"',
    ),
}


def _import_sqlite_utils():
    """sqlite-utils without pandas and numpy.

    sqlite-utils imports pandas and numpy, when installed, only to map their scalar
    types to column types; this package never stores them. Importing both costs
    the CLI and the supervisor ~0.3 s and loads numpy into the process that must
    stay free of it, so they are hidden (a None entry in sys.modules makes an import
    fail) while sqlite-utils loads. A process that already has numpy keeps it.
    """
    hidden = [name for name in ("numpy", "pandas") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import sqlite_utils
    finally:
        for name in hidden:
            if sys.modules.get(name) is None:
                del sys.modules[name]
    return sqlite_utils


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the transaction is gone with the connection's state either way



class SQLiteStore(SQLStore):
    """The embedded backend: one SQLite file in WAL mode; one connection per process.

    Threads of one process (a worker's heartbeat beside its progress reports, the API's
    request threads) take turns on that connection: two transactions interleaved on one
    connection would fail ("cannot start a transaction within a transaction").
    """

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        self._turn = threading.RLock()
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout = 30000")
        if not readonly:
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
        # readonly callers (diarizectl) leave an empty file to the daemon that is creating it,
        # but bring an older schema forward: a CLI newer than the running daemon must still read
        if not readonly or 0 < self.schema_version() < SCHEMA_VERSION:
            self.migrate()

    def close(self) -> None:
        self.conn.close()

    # -- plumbing -----------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._turn:
            yield from self._transaction()

    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                _rollback(conn)
                raise
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            _rollback(conn)
            if any(words in str(exc) for words in _UNAVAILABLE):
                raise StoreUnavailable(f"{self.path}: {exc}") from exc
            raise

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self._turn:
            try:
                yield self.conn
            except sqlite3.OperationalError as exc:  # a reader too needs its -shm file: a full disk stops it
                if any(words in str(exc) for words in _UNAVAILABLE):
                    raise StoreUnavailable(f"{self.path}: {exc}") from exc
                raise

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    def claim_node(self, node: str) -> bool:
        return True  # the file lives in the state folder, whose flock the supervisor already holds

    def hold_inbox(self, node: str) -> bool:
        return True  # one node per SQLite store

    def schema_version(self) -> int:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0]) if row else 0

    def migrate(self, target: int = SCHEMA_VERSION) -> None:
        """Apply the frozen migrations up to `target`, all in one transaction."""
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            version = self.schema_version()
            if version > SCHEMA_VERSION:
                raise SchemaError(f"{self.path} has schema version {version}, newer than this "
                                  f"diarized ({SCHEMA_VERSION}); upgrade diarized")
            for step in range(version + 1, target + 1):
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
            if target > version:
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(target)])
        if target == SCHEMA_VERSION:
            self._check_columns()

    def _check_columns(self) -> None:
        """The migrated table must hold every Job field: catches a migration forgotten in review."""
        db = _import_sqlite_utils().Database(self.conn)
        missing = {f.name for f in fields(Job)} - set(db["jobs"].columns_dict)
        if missing:
            raise SchemaError(f"{self.path}: the jobs table lacks {', '.join(sorted(missing))}")
