"""The PostgreSQL backend of the JobStore contract (store = "postgresql://…"), for several nodes.

The job logic is store.sql's, unchanged: this module supplies connections
from a psycopg pool, PostgreSQL's placeholders, the server's clock for every
lease and wait, the inbox role as a lease row, row locks (FOR UPDATE) where
SQLite relied on its one writer, an advisory lock per content hash so two nodes
taking the same file at once make one job and one duplicate, and migrations from
frozen SQL files applied under an advisory lock so nodes starting together do not
race. tests/store/test_contract.py runs the same conformance suite on it against a real
server (tests/support/postgres.py starts one).

Needs the optional extra: pip install 'diarized[postgres]'.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from importlib import resources
from typing import Iterator

import psycopg
from psycopg_pool import ConnectionPool

from diarized.store.model import SchemaError, StoreUnavailable, safe_location
from diarized.store.sql import SQLStore

MIGRATION_LOCK = 0x6469_6172  # "diar": one advisory lock id for schema changes
INBOX_LEASE_SECONDS = 10.0  # the inbox role (roles table): renewed every tick, any node's once past
SESSION_CHECK_SECONDS = 2.0  # the lock session is asked whether it lives at most this often
CHANNEL = "diarized_queue"  # NOTIFY when a job becomes claimable or is asked to cancel (changes())
CONTENT_LOCK_SPACE = 0x6A6F  # advisory locks (space, hash) serialise dedupe per sha256
NODE_LOCK_SPACE = 0x6E6F  # advisory locks (space, hash of the name): one supervisor per node name
# The pool retries a lost server with a doubling delay (1, 2, 4, ... s: 17-21 s late after a 45-s
# outage, long enough for a live job's lease to run out). Giving up after a second instead makes the
# next call that needs a connection try again at once: a node is back within a tick of the server.
RECONNECT_SECONDS = 1.0
WAIT_SECONDS = 5.0  # for a pooled connection: a server that is down pauses a tick, not the watchdog
# Every connection, both ends: a dead server or network is noticed within ~15 s (TCP keepalives,
# and tcp_user_timeout for data the peer never acknowledges) instead of the kernel's two-hour
# default; on the server, the same settings end the session of a node cut off from it (and free
# its node lock), and no statement, lock wait or forgotten transaction holds a node longer than
# the timeouts below (a supervisor in a database call is not ticking, and its watchdog fires).
SERVER_SETTINGS = {"statement_timeout": "30s", "lock_timeout": "10s",
                   "idle_in_transaction_session_timeout": "60s", "tcp_keepalives_idle": "5",
                   "tcp_keepalives_interval": "2", "tcp_keepalives_count": "3", "tcp_user_timeout": "15000"}
CONNECTION = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
              "tcp_user_timeout": 15000, "connect_timeout": 5,
              "options": " ".join(f"-c {name}={value}" for name, value in SERVER_SETTINGS.items())}
_PLACEHOLDER = re.compile(r"\?")
PROBE_SECONDS = 5  # one plain connection first: its error is the server's own, in seconds, not a pool's timeout


def explain(dsn: str, exc: Exception) -> str:
    """What a failed connection means, for an operator: the server's words and what to do."""
    where = safe_location(dsn)
    said = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    text = str(exc).lower()
    if "password" in text or "authentication" in text or ("role" in text and "does not exist" in text):
        return (f"{where}: the server refused the user or password in `store` ({said}); fix the user and "
                "password in the postgresql:// URL (or the server's pg_hba.conf)")
    if "database" in text and "does not exist" in text:
        return f"{where}: {said}; create it (createdb) or fix the database name in the postgresql:// URL"
    return (f"{where}: cannot reach the PostgreSQL server ({said}); is it running, and can this host reach it "
            "(host, port, firewall)?")


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) from migrations/postgres/NNNN_name.sql, in order."""
    folder = resources.files("diarized.store") / "migrations" / "postgres"
    found = sorted((int(f.name.split("_", 1)[0]), f.read_text()) for f in folder.iterdir()
                   if f.name.endswith(".sql"))
    assert [v for v, _ in found] == list(range(1, len(found) + 1)), "migrations must be numbered 1, 2, …"
    return found


class PostgresStore(SQLStore):
    FOR_UPDATE = " FOR UPDATE"
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    # who scans the inbox is the role's lease, not what a node last wrote of itself (a stopped
    # holder's row still says so)
    NODES = ("SELECT nodes.*, (roles.node IS NOT NULL)::int AS inbox FROM nodes LEFT JOIN roles ON "
             "roles.role = 'inbox' AND roles.node = nodes.node AND roles.expires_at > now() ORDER BY node")

    def __init__(self, dsn: str, readonly: bool = False, pool_size: int = 4):
        self.dsn = dsn
        self.pool = ConnectionPool(dsn, min_size=1, max_size=pool_size, open=False, timeout=WAIT_SECONDS,
                                   kwargs={"autocommit": True, **CONNECTION},
                                   check=ConnectionPool.check_connection, reconnect_timeout=RECONNECT_SECONDS)
        self._locks: psycopg.Connection | None = None  # the session holding the node and inbox locks
        self._node: str | None = None
        self._inbox = False  # this node held the inbox role at its last renewal
        self._missed = False  # the listening session was replaced: changes() says True once
        self._locks_checked = float("-inf")  # when the lock session last answered (monotonic)
        try:
            psycopg.connect(dsn, connect_timeout=PROBE_SECONDS, autocommit=True).close()
        except psycopg.Error as exc:  # a wrong password used to be a silent 30-s pool timeout
            raise StoreUnavailable(explain(dsn, exc)) from exc
        try:
            self.pool.open(wait=True, timeout=PROBE_SECONDS if readonly else 30)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(explain(dsn, exc)) from exc
        except Exception as exc:  # the pool reports a server it cannot reach as a timeout
            self.pool.close()
            raise StoreUnavailable(explain(dsn, exc)) from exc
        if not readonly or 0 < self.schema_version() < len(migrations()):
            self.migrate()

    def close(self) -> None:
        """Give the inbox role back at once (a stop, not a death: no node waits for the lease)."""
        if self._inbox and self._node:
            try:
                with self.transaction() as conn:
                    conn.execute("DELETE FROM roles WHERE role = 'inbox' AND node = %s", [self._node])
            except (StoreUnavailable, psycopg.Error):
                pass  # the lease runs out by itself
        if self._locks is not None:
            self._locks.close()
        self.pool.close()

    def _wake(self, conn) -> None:
        conn.execute(f"NOTIFY {CHANNEL}")  # delivered at commit, once per transaction

    def changes(self) -> bool:
        if self._locks is None or self._missed:
            self._missed = False
            return True
        try:
            return any(True for _ in self._locks.notifies(timeout=0))
        except psycopg.Error:
            self._drop_lock_session()
            return True

    NOW = "extract(epoch FROM now())::float8"

    def _clock(self, conn) -> float:
        return conn.execute(f"SELECT {self.NOW}").fetchone()[0]

    def _x(self, conn, sql: str, params: list | tuple = ()):
        return conn.execute(_PLACEHOLDER.sub("%s", sql), params)

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        try:
            with self.pool.connection() as conn, conn.transaction():
                yield conn
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"{safe_location(self.dsn)}: {exc}") from exc

    @contextmanager
    def reading(self) -> Iterator[psycopg.Connection]:
        try:
            with self.pool.connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"{safe_location(self.dsn)}: {exc}") from exc

    MATCH = "job_text.document @@ plainto_tsquery('simple', ?)"
    TEXT_ORDER: dict[str, str] = {}  # newest first by created_at: a GIN index has no order
    FEW_HITS = 1000

    def _match(self, words: list[str]) -> str:
        return " ".join(words)

    def _text_source(self, match: str) -> tuple[str, list[str], list]:
        """The planner cannot tell a rare word from a common one (it guessed 500 rows for 4), so it walked
        100,000 jobs newest first looking for the 4 (150 ms). A word with few hits is looked up in the GIN
        index first (materialized: at most FEW_HITS rows to sort); a common one keeps the walk, which stops
        after a page."""
        if not self._few_hits(match):
            return super()._text_source(match)
        return (f"WITH hits AS MATERIALIZED (SELECT job_id FROM job_text WHERE {self.MATCH}) "
                "SELECT jobs.* FROM jobs JOIN hits ON hits.job_id = jobs.id", [], [match])

    def _few_hits(self, text: str) -> bool:
        with self.reading() as conn:
            found = conn.execute("SELECT count(*) FROM (SELECT 1 FROM job_text WHERE document @@ "
                                 "plainto_tsquery('simple', %s) LIMIT %s) AS hit", [text, self.FEW_HITS]).fetchone()[0]
        return found < self.FEW_HITS

    def _lock_content(self, conn, sha256: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [CONTENT_LOCK_SPACE, sha256])

    # -- schema ------------------------------------------------------------------
    def schema_version(self) -> int:
        with self.reading() as conn:
            exists = conn.execute("SELECT to_regclass('diarized_schema')").fetchone()[0]
            if exists is None:
                return 0
            row = conn.execute("SELECT max(version) FROM diarized_schema").fetchone()
            return row[0] or 0

    def migrate(self) -> None:
        """Apply the SQL files not yet applied, under one advisory lock, each in its own transaction."""
        known = migrations()
        with self.transaction() as conn:
            conn.execute("SET LOCAL statement_timeout = 0")  # an index on a large table may take a while
            conn.execute("SET LOCAL lock_timeout = 0")  # nodes starting together wait for the first
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
            conn.execute("CREATE TABLE IF NOT EXISTS diarized_schema "
                         "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            version = conn.execute("SELECT COALESCE(max(version), 0) FROM diarized_schema").fetchone()[0]
            if version > len(known):
                raise SchemaError(f"{safe_location(self.dsn)} has schema version {version}, newer than this "
                                  f"diarized ({len(known)}); upgrade diarized")
            for number, sql in known[version:]:
                conn.execute(sql)
                conn.execute("INSERT INTO diarized_schema (version) VALUES (%s)", [number])

    def claim_node(self, node: str) -> bool:
        """A session advisory lock on a connection of its own, held while this process lives."""
        self._node = node
        return self._lock_session() is not None

    def hold_inbox(self, node: str) -> bool:
        """Renew (or take, once expired) the inbox role: one row, one statement, the server's clock.

        The node's own session is checked first: after a database restart the node takes its
        name again (None: another process has it meanwhile). A holder paused past the lease,
        or cut off from the server, loses the role to the first node that asks; it learns so
        at its next renewal (the supervisor trusts a renewal for a moment only).
        """
        if self._lock_session() is None:
            raise StoreUnavailable(f"{safe_location(self.dsn)}: node {node!r} was taken by another "
                                   "process while the database was away")
        with self.transaction() as conn:
            row = conn.execute(
                "INSERT INTO roles AS r (role, node, expires_at) VALUES ('inbox', %s, now() + %s * interval '1 second') "
                "ON CONFLICT (role) DO UPDATE SET node = EXCLUDED.node, expires_at = EXCLUDED.expires_at "
                "WHERE r.node = EXCLUDED.node OR r.expires_at < now() RETURNING node",
                [node, INBOX_LEASE_SECONDS]).fetchone()
        self._inbox = row is not None
        return self._inbox

    def _lock_session(self) -> psycopg.Connection | None:
        """The live lock session, reconnected (and the node lock taken again) if it died."""
        if self._locks is not None:
            if time.monotonic() - self._locks_checked < SESSION_CHECK_SECONDS:
                return self._locks
            try:
                self._locks.execute("SELECT 1")
                self._locks_checked = time.monotonic()
                return self._locks
            except psycopg.OperationalError:
                self._drop_lock_session()
        try:
            conn = psycopg.connect(self.dsn, autocommit=True, **CONNECTION)
            if conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                            [NODE_LOCK_SPACE, self._node]).fetchone()[0]:
                conn.execute(f"LISTEN {CHANNEL}")
                self._locks, self._missed = conn, True  # a new session missed what came before
                return conn
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"{safe_location(self.dsn)}: {exc}") from exc
        conn.close()
        return None

    def _drop_lock_session(self) -> None:
        if self._locks is not None:
            try:
                self._locks.close()
            except psycopg.Error:
                pass
        self._locks = None

    def integrity_check(self) -> str:
        """PostgreSQL checks its own pages; here: the schema is current and the tables answer."""
        try:
            with self.reading() as conn:
                conn.execute("SELECT count(*) FROM jobs").fetchone()
        except psycopg.Error as exc:
            return str(exc)
        current = self.schema_version() == len(migrations())
        return "ok" if current else "schema is not the current version"

