"""The daemon on a real PostgreSQL server (`store = "postgresql://…"`), and its one-supervisor-per-node guard.

The store contract itself is tests/store/test_contract.py, run on both backends. Here: the
real daemon (fake workers) keeps its queue in PostgreSQL, diarizectl reads it
there, and a second daemon under the same node name refuses to start, even from
another state folder (two recoveries would requeue each other's running jobs).
Several nodes: tests/test_nodes.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.harness import Daemon


def test_the_daemon_keeps_its_queue_in_postgresql(postgres_server, models_cache, tmp_path, data):
    dsn = postgres_server.new_database()
    daemon = Daemon(tmp_path / "var", models_cache, fake_workers=True, store=dsn).start(wait=False)
    try:
        from diarized.store import open_store
        from tests.harness import wait_until

        store = open_store(dsn)  # migrates (under the advisory lock), so it can be read at once
        wait_until(lambda: store.daemon().up, 60, lambda: f"the daemon on PostgreSQL:\n{daemon.log.read_text()}")
        for name in ("a.flac", "b.flac"):
            daemon.drop(data / "en-jfk/jfk.flac", name)
        wait_until(lambda: len([j for j in store.jobs() if j.state in ("succeeded", "duplicate")]) == 2, 60,
                   lambda: f"both files: {[(j.source_name, j.state) for j in store.jobs()]}")
        assert not (tmp_path / "var/state/diarized.db").exists()  # nothing went to SQLite
        status = subprocess.run([sys.executable, "-m", "diarized.cli.ctl", "--state-dir", str(daemon.root),
                                 "list", "--json"], env=daemon.env, capture_output=True, text=True, timeout=60)
        assert sorted(j["state"] for j in json.loads(status.stdout)) == ["duplicate", "succeeded"], status.stderr

        second = Daemon(tmp_path / "other", models_cache, fake_workers=True, store=dsn).start(wait=False)
        assert second.proc.wait(60) == 1
        assert "already runs as node" in second.log.read_text()
        assert "postgres@" in second.log.read_text() or "postgresql://" in second.log.read_text()
        assert daemon.stop() == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.kill9()


def test_the_inbox_role_is_a_lease_on_the_servers_clock(postgres_server):
    """One holder at a time; it keeps the role by renewing, loses it once the lease is past the
    server's now() (a paused or cut-off holder), and gives it back at once when it closes."""
    import psycopg

    from diarized.store import open_store

    dsn = postgres_server.new_database()
    first, second, third = open_store(dsn), open_store(dsn), open_store(dsn)
    try:
        assert first.claim_node("a") and second.claim_node("b") and third.claim_node("c")
        assert [first.hold_inbox("a") for _ in range(3)] == [True] * 3
        assert second.hold_inbox("b") is False
        with psycopg.connect(dsn, autocommit=True) as conn:  # a holder that stopped renewing 11 s ago
            conn.execute("UPDATE roles SET expires_at = now() - interval '1 second'")
        assert second.hold_inbox("b") is True
        assert first.hold_inbox("a") is False  # it learns at its next renewal
        assert third.hold_inbox("c") is False
        second.close()  # a stop: the role is free at once, not after the lease
        assert third.hold_inbox("c") is True
        with psycopg.connect(dsn, autocommit=True) as conn:
            assert conn.execute("SELECT node FROM roles").fetchall() == [("c",)]
    finally:
        for store in (first, second, third):
            store.close()


def test_a_store_that_cannot_be_used_says_why_and_the_commands_give_up_quickly(postgres_server, tmp_path):
    """Before: every failure read "restore diarized.db from a backup", and a refused login was a silent
    30-s pool timeout. Each case is bounded by the subprocess timeout, never by a timed assert."""
    import os

    import pytest

    from diarized.store import StoreUnavailable, open_store

    cases = {postgres_server.dsn("no_such_db"): "does not exist; create it (createdb)",
             postgres_server.dsn().replace("postgres@", "ghost@"): "refused the user or password",
             "postgresql://postgres@127.0.0.1:1/postgres": "cannot reach the PostgreSQL server"}
    for dsn, words in cases.items():
        with pytest.raises(StoreUnavailable, match=words.replace("(", r"\(").replace(")", r"\)")):
            open_store(dsn, readonly=True)
    env = {**os.environ, "DIARIZED_CONFIG": "", "DIARIZED_STORE": "postgresql://postgres@127.0.0.1:1/postgres",
           "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    status = subprocess.run([sys.executable, "-m", "diarized.cli.ctl", "--state-dir", str(tmp_path / "var"),
                             "status"], env=env, capture_output=True, text=True, timeout=20)
    assert status.returncode == 1 and "cannot reach the PostgreSQL server" in status.stderr
    run = subprocess.run([sys.executable, "-m", "diarized.cli.daemon", "run", "--state-dir", str(tmp_path / "var")],
                         env={**env, "DIARIZED_STORE": postgres_server.dsn("no_such_db")}, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1 and "create it (createdb)" in run.stderr and "restore" not in run.stderr


@pytest.mark.timeout(60)  # before, the held lock below was waited for without end
def test_every_connection_has_timeouts_so_no_node_hangs_in_a_call(postgres_server):
    """Before: a partitioned supervisor hung in a database call with no timeout, and the server kept a
    cut-off node's session (and its node lock) for TCP's two hours."""
    import psycopg

    from diarized.store import StoreUnavailable, open_store

    dsn = postgres_server.new_database()
    store = open_store(dsn)
    try:
        assert store.claim_node("a")
        pooled = store.pool.getconn()
        for conn in (pooled, store._locks):
            shown = {name: conn.execute(f"SHOW {name}").fetchone()[0]
                     for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")}
            assert shown == {"statement_timeout": "30s", "lock_timeout": "10s",
                             "idle_in_transaction_session_timeout": "1min"}
            assert conn.info.get_parameters()["tcp_user_timeout"] == "15000"  # libpq's end
        store.pool.putconn(pooled)
        with psycopg.connect(dsn, autocommit=True) as other, other.transaction():
            other.execute("LOCK TABLE roles IN ACCESS EXCLUSIVE MODE")  # a node stuck holding a lock
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="lock timeout"):
                store.hold_inbox("a")
            print(f"\nwaited {time.monotonic() - started:.1f} s for a held lock, then gave up")
    finally:
        store.close()


def test_a_job_made_claimable_anywhere_wakes_every_node(postgres_server, tmp_path):
    """Nodes read the queue when notified (LISTEN/NOTIFY on their own session), not every tick."""
    from diarized.store import Priority, open_store
    from tests.harness import wait_until

    dsn = postgres_server.new_database()
    node, cli = open_store(dsn), open_store(dsn, readonly=True)
    try:
        assert node.claim_node("a")
        assert node.changes() is True  # a new session may have missed something: read once
        assert node.changes() is False
        job = cli.record_incoming("talk.wav", "cd" * 32, 10, Priority.NORMAL, 3, tmp_path / "talk.wav",
                                  tmp_path / "jobs")
        assert node.changes() is False  # incoming is not claimable yet
        for change in (lambda: cli.mark_queued(job.id, 5.0), lambda: cli.set_priority(job.id, Priority.HIGH),
                       lambda: cli.request_cancel(job.id)):
            change()
            wait_until(node.changes, 5, "the notification")
            assert node.changes() is False  # each is delivered once
    finally:
        node.close()
        cli.close()
