"""Deleting jobs and retention_days, on a real daemon (fake workers) and its real folders and store."""

from __future__ import annotations

import json
import time

import pytest

from diarized import Client
from diarized.config import load_settings
from diarized.store import InvalidTransition, open_store
from diarized import retention
from diarized.worker import WorkerExit
from tests.harness import script, wait_until


def finished(d, *names_and_runs: tuple[str, dict]) -> dict[str, str]:
    """Drop scripted files and wait until each is final; returns name -> job id."""
    for name, run in names_and_runs:
        (d.inbox / name).write_bytes(json.dumps({"runs": [run], "name": name}).encode())
    wait_until(lambda: len(d.jobs("succeeded", "failed")) == len(names_and_runs), 60, "the jobs to end")
    return {j.source_name: j.id for j in d.jobs()}


def test_delete_removes_outputs_original_and_rows_and_refuses_a_running_job(make_daemon, tmp_path):
    d = make_daemon(fake_workers=True, max_workers=1)
    ids = finished(d, ("talk.wav", {"exit": 0}), ("notes.mp4", {"exit": WorkerExit.BAD_INPUT, "error": "not media"}))
    outside = tmp_path / "precious.txt"
    outside.write_text("not the job's")
    with Client(state_dir=d.root) as client:
        done = client.get(ids["talk.wav"])
        (d.outbox / "talk" / "link-out").symlink_to(outside)  # removed as a link, never followed
        copy = client.submit(d.root / "done" / "talk.wav", name="again.wav")
        assert copy.duplicate_of == done.id
        (tmp_path / "long.wav").write_bytes(script("long.wav", seconds=30))
        busy = client.submit(tmp_path / "long.wav")
        wait_until(lambda: client.get(busy.id).state == "running", 30, "the long job to run")
        with pytest.raises(InvalidTransition, match="cancel it first"):
            client.delete(busy.id)

        client.delete(done.id)
        assert not (d.outbox / "talk").exists() and not (d.root / "done" / "talk.wav").exists()
        assert outside.read_text() == "not the job's"
        assert done.id not in {j.id for j in client.list()}
        assert client.store.events(done.id) == []
        alone = client.resolve(copy.id)  # its original is gone: it stands alone, without outputs
        assert alone.id == copy.id and client.outputs(copy.id) == {}

        failed = client.get(ids["notes.mp4"])
        assert (d.root / "failed" / "notes" / "error.json").exists()
        client.delete(failed.id)
        assert not (d.root / "failed" / "notes").exists()
        tallies = client.store.tallies()
        assert tallies == {"deleted_succeeded": 1, "deleted_failed": 1}
        client.cancel(busy.id)


def test_expiry_removes_files_keeps_the_rows_and_never_serves_a_later_jobs_files(make_daemon, tmp_path):
    d = make_daemon(fake_workers=True)
    ids = finished(d, ("talk.wav", {"exit": 0}), ("bad.mp4", {"exit": WorkerExit.BAD_INPUT, "error": "not media"}))
    d.stop()
    settings = load_settings(None, {"state_dir": d.root, "retention_days": 1})
    store = open_store(settings.store_location)
    assert retention.expire(settings, store) == []  # nothing is a day old yet
    later = time.time() + 2 * 86400
    expired = retention.expire(settings, store, now=later)
    assert {j.id for j in expired} == set(ids.values())
    assert retention.expire(settings, store, now=later) == []  # once
    assert not (d.outbox / "talk").exists() and not (d.root / "done" / "talk.wav").exists()
    assert not (d.root / "failed" / "bad").exists()
    talk = store.get(ids["talk.wav"])
    assert talk.state == "succeeded" and talk.expired_at and talk.output_dir is None
    assert store.events(talk.id)[-1].kind == "expired" and "retention_days 1" in store.events(talk.id)[-1].detail
    assert store.tallies() == {"expired": 2}
    with pytest.raises(InvalidTransition, match="removed after retention_days"):
        store.request_retry(ids["bad.mp4"])
    store.close()

    # the same recording again: a new job (its first run's files are gone), under the old name,
    # and the expired job never lists the new job's files
    d = make_daemon(fake_workers=True)
    (d.inbox / "talk.wav").write_bytes(json.dumps({"runs": [{"exit": 0}], "name": "talk.wav"}).encode())
    wait_until(lambda: len(d.jobs("succeeded")) == 2, 60, "the new job")
    with Client(state_dir=d.root) as client:
        assert client.outputs(ids["talk.wav"]) == {} and (d.outbox / "talk").is_dir()


def test_the_daemon_sweeps_old_jobs_at_its_first_tick(make_daemon):
    d = make_daemon(fake_workers=True)
    ids = finished(d, ("talk.wav", {"exit": 0}))
    d.stop()
    time.sleep(1.0)  # older than 0.00001 days (0.86 s)
    d = make_daemon(fake_workers=True, retention_days=0.00001)
    wait_until(lambda: d.store.get(ids["talk.wav"]).expired_at, 30, "the job to expire")
    assert not (d.outbox / "talk").exists()
    assert "retention: removed the files of 1 job(s)" in d.log.read_text()
