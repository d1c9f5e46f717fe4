"""Faults of the machine rather than of a file: a full disk, a read-only outbox, a damaged store.

The real daemon (fake workers) on a small tmpfs mounted by the test: the only way to see
ENOSPC for real. It needs root (mount); the daemon itself runs as root here, which a full
tmpfs does not exempt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from diarized.cli.ctl import cli
from diarized.runtime import candidates, file_name
from tests.harness import Daemon, wait_until

pytestmark = pytest.mark.chaos


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs: enough for the store and a few jobs, easy to fill."""
    if os.getuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs here: {proc.stderr}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Write until the filesystem says no, to the last page (MiB blocks first, then pages)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for block in (1 << 20, 4096):
            try:
                while True:
                    os.write(fd, b"\1" * block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def script(name: str, **run) -> str:
    return json.dumps({"runs": [{"exit": 0, **run}], "name": name})


def runtime_file(d: Daemon) -> Path:
    """The file the daemon publishes itself in (runtime.py), in the first place it looks."""
    return candidates({"XDG_RUNTIME_DIR": d.env["XDG_RUNTIME_DIR"]})[0] / file_name(d.proc.pid)


def runtime_info(d: Daemon) -> dict:
    return json.loads(runtime_file(d).read_text())


def ctl_status(d: Daemon) -> str:
    env = {"XDG_RUNTIME_DIR": d.env["XDG_RUNTIME_DIR"], "DIARIZED_CONFIG": None, "DIARIZED_STATE_DIR": None}
    return " ".join(CliRunner().invoke(cli, ["status"], env=env).output.split())  # as read, not as wrapped


def test_a_full_disk_pauses_the_daemon_and_it_resumes_by_itself(small_disk, models_cache, tmp_path):
    d = Daemon(small_disk / "var", models_cache, fake_workers=True)
    d.env["XDG_RUNTIME_DIR"] = str(tmp_path / "run")  # a runtime folder is not on the full disk
    d.start()
    try:
        (d.inbox / "talk.wav").write_text(script("talk", seconds=6))
        wait_until(lambda: [j for j in d.jobs("running") if j.progress > 0], 30, "the job to run")
        filler = fill(small_disk)
        wait_until(lambda: runtime_info(d).get("paused"), 30, "the daemon to pause")
        assert d.proc.poll() is None  # alive: paused, not crashed
        assert "PAUSED" in ctl_status(d) and "resumes by itself" in ctl_status(d)
        assert [j.state for j in d.jobs()] in (["running"], ["queued"])  # kept, not lost
        filler.unlink()
        wait_until(lambda: runtime_info(d).get("paused") is None, 30, "the daemon to resume")
        job = d.wait_all_final(1, timeout=60)[0]
        assert job.state == "succeeded" and job.attempts == 1  # the full disk cost no attempt
        log = d.log.read_text()
        assert "paused: cannot write" in log and "resumed" in log
        (d.inbox / "after.wav").write_text(script("after"))
        assert {j.source_name: j.state for j in d.wait_all_final(2, timeout=30)}["after.wav"] == "succeeded"
    finally:
        d.stop()


def test_a_read_only_outbox_fails_the_job_cleanly_after_its_attempts(tmp_path, models_cache, unprivileged,
                                                                    public_tmp):
    d = Daemon(public_tmp / "var", models_cache, fake_workers=True, user=unprivileged,
               max_attempts=2).start()
    try:
        d.outbox.chmod(0o555)  # the operator's mistake, while the daemon runs
        (d.inbox / "talk.wav").write_text(script("talk"))
        job = d.wait_all_final(1, timeout=60)[0]
        assert job.state == "failed" and "Permission denied" in job.error
        folder = Path(job.source_path).parent
        assert folder.parent == d.root / "failed" and Path(job.source_path).exists()
        assert json.loads((folder / "error.json").read_text())["state"] == "failed"
        assert list((d.root / "state/jobs").iterdir()) == []
        assert d.proc.poll() is None
    finally:
        d.outbox.chmod(0o755)
        d.stop()


def test_a_corrupt_store_is_refused_at_start_with_the_way_out(tmp_path, models_cache):
    root = tmp_path / "var"
    db = root / "state/diarized.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database " * 200)
    env = {**os.environ, "DIARIZED_CONFIG": "", "DIARIZED_CACHE_DIR": str(models_cache),
           "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    proc = subprocess.run([sys.executable, "-m", "diarized.cli.daemon", "run", "--state-dir", str(root)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert str(db) in proc.stderr and f"diarizectl --state-dir {root} doctor" in proc.stderr
    assert "restore" in proc.stderr and "backup" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert db.read_bytes().startswith(b"this is not a database")  # never deleted or rewritten
    result = CliRunner().invoke(cli, ["--state-dir", str(root), "doctor", "--json"],
                                env={"DIARIZED_CONFIG": "", "DIARIZED_CACHE_DIR": str(models_cache)})
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert result.exit_code == 1 and checks["job store"]["level"] == "fail"


def test_a_cancel_whose_failed_folder_is_read_only_does_not_stop_the_daemon(models_cache, unprivileged,
                                                                           public_tmp):
    d = Daemon(public_tmp / "var", models_cache, fake_workers=True, user=unprivileged).start()
    try:
        (d.inbox / "long.wav").write_text(script("long", seconds=60))
        job = wait_until(lambda: [j for j in d.jobs("running") if j.worker_pid], 30, "the worker")[0]
        (d.root / "failed").chmod(0o555)
        env = {"DIARIZED_CONFIG": None}
        assert CliRunner().invoke(cli, ["--state-dir", str(d.root), "cancel", job.short_id], env=env).exit_code == 0
        wait_until(lambda: "cancelling failed" in d.log.read_text() or "could not finish" in d.log.read_text(),
                   30, "the failed quarantine to be logged")
        (d.inbox / "next.wav").write_text(script("next"))
        wait_until(lambda: [j for j in d.jobs("succeeded") if j.source_name == "next.wav"], 30, "the next job")
        assert d.proc.poll() is None
        (d.root / "failed").chmod(0o755)
        d.stop()
        d.start()  # recovery repairs what was left half-done
        wait_until(lambda: (d.root / "failed/long/error.json").exists(), 30, "the repair")
        cancelled = d.store.get(job.id)
        assert cancelled.state == "cancelled" and Path(cancelled.source_path) == d.root / "failed/long/long.wav"
        assert Path(cancelled.source_path).exists() and list((d.root / "state/jobs").iterdir()) == []
    finally:
        (d.root / "failed").chmod(0o755)
        d.stop()


def test_a_store_locked_by_another_program_is_refused_after_the_wait(tmp_path, models_cache):
    """A backup tool or sqlite3 shell holding an exclusive lock: the daemon waits its busy timeout,
    then refuses clearly instead of hanging or starting half-way."""
    import sqlite3

    from diarized.store import SQLiteStore

    root = tmp_path / "var"
    db = root / "state/diarized.db"
    SQLiteStore(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode = DELETE")  # leave WAL so an exclusive lock blocks readers too
    holder.execute("BEGIN EXCLUSIVE")
    try:
        env = {**os.environ, "DIARIZED_CONFIG": "", "DIARIZED_CACHE_DIR": str(models_cache),
               "XDG_RUNTIME_DIR": str(tmp_path / "run")}
        proc = subprocess.run([sys.executable, "-m", "diarized.cli.daemon", "run", "--state-dir", str(root)],
                              env=env, capture_output=True, text=True, timeout=120)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == 1 and "database is locked" in proc.stderr and "doctor" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_full_disk_at_start_starts_paused_and_resumes(small_disk, models_cache, tmp_path):
    """Before: the daemon exited with "restore diarized.db from a backup" (the store was healthy) and
    `diarizectl status` printed a traceback."""
    d = Daemon(small_disk / "var", models_cache, fake_workers=True)
    d.env["XDG_RUNTIME_DIR"] = str(tmp_path / "run")
    d.start()
    (d.inbox / "before.wav").write_text(script("before"))
    d.wait_all_final(1, timeout=30)
    d.stop()  # a clean stop: SQLite removes its -wal and -shm, which a new start must make again
    filler = fill(small_disk)
    d.start(wait=False)
    wait_until(lambda: runtime_file(d).exists() and runtime_info(d).get("paused"), 30,
               lambda: f"the daemon to say it is paused:\n{d.log.read_text()[-3000:]}")
    assert d.proc.poll() is None  # alive, waiting
    assert "is full" in runtime_info(d)["paused"]
    env = {"XDG_RUNTIME_DIR": d.env["XDG_RUNTIME_DIR"], "DIARIZED_CONFIG": None, "DIARIZED_STATE_DIR": None}
    shown = CliRunner().invoke(cli, ["status"], env=env)
    text = " ".join(shown.output.split())
    assert "PAUSED" in text and "is full" in text and "Traceback" not in text, text  # read or not, it says so
    assert "restore" not in d.log.read_text()
    filler.unlink()
    wait_until(lambda: d.store_ready(), 30, "the daemon to resume its start")
    (d.inbox / "after.wav").write_text(script("after"))
    jobs = d.wait_all_final(2, timeout=30)
    assert {j.source_name: j.state for j in jobs} == {"before.wav": "succeeded", "after.wav": "succeeded"}
    log = d.log.read_text()
    assert ("paused at start" in log or "while starting" in log) and "resumed" in log and "restore" not in log
    d.stop()
