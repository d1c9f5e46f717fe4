"""Job endings: publication is atomic and happens once, even when the daemon dies half-way;
failures land in failed/ with error.json. Real files, a real SQLite store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from diarized import outbox
from diarized.lifecycle import Lifecycle
from diarized.store import Priority, open_store
from diarized.supervisor import Supervisor


@pytest.fixture
def env(make_settings):
    settings = make_settings()
    store = open_store(settings.db_path)

    def finished_job(name: str, sha: str):
        job = store.record_incoming(name, sha, 3, Priority.NORMAL, 3, settings.inbox / name, settings.jobs_dir)
        source = outbox.job_dir(settings, job.id) / f"source{os.path.splitext(name)[1]}"
        source.parent.mkdir(parents=True)
        source.write_bytes(b"abc")
        store.mark_queued(job.id, 1.0)
        job = store.claim(job.id)
        out = outbox.outputs_of(settings, job.id, job.lease_generation)
        out.mkdir()
        (out / "final_transcription.json").write_text('{"segments": []}')
        return job
    return settings, store, finished_job


def test_publish_moves_outputs_and_original(env):
    settings, store, finished_job = env
    job = Lifecycle(settings, store).succeed(finished_job("talk.mp4", "1"))
    assert job.state == "succeeded" and job.output_dir == str(settings.outbox / "talk")
    assert json.loads((settings.outbox / "talk/job.json").read_text())["job_id"] == job.id
    assert (settings.done / "talk.mp4").read_bytes() == b"abc"
    assert not outbox.job_dir(settings, job.id).exists()


def test_same_stem_gets_a_suffixed_folder(env):
    settings, store, finished_job = env
    first = Lifecycle(settings, store).succeed(finished_job("talk.mp4", "1"))
    second = Lifecycle(settings, store).succeed(finished_job("talk.wav", "2"))
    assert first.output_dir.endswith("/talk") and second.output_dir.endswith(f"/talk-{second.short_id}")


def test_crash_between_rename_and_store_update_publishes_once(env):
    settings, store, finished_job = env
    job = finished_job("talk.mp4", "1")
    target = settings.outbox / "talk"
    # what publish() does up to the crash: record the target, rename, then die
    (outbox.outputs_of(settings, job.id, job.lease_generation) / "job.json").write_text(json.dumps({"job_id": job.id}))
    store.set_output_dir(job.id, str(target))
    settings.outbox.mkdir(parents=True, exist_ok=True)
    os.rename(outbox.outputs_of(settings, job.id, job.lease_generation), target)
    notes = Supervisor(settings, store).recover()
    assert any("published before the crash" in n for n in notes)
    done = store.get(job.id)
    assert done.state == "succeeded" and done.output_dir == str(target)
    assert [p.name for p in settings.outbox.iterdir()] == ["talk"]
    assert (settings.done / "talk.mp4").exists()


def test_failed_job_goes_to_failed_with_error_json(env):
    settings, store, finished_job = env
    job = finished_job("broken.mp4", "1")
    (outbox.job_dir(settings, job.id) / "worker.log").write_text("Traceback: boom\n")
    job = store.fail(job.id, "BadMedia", "broken.mp4: the file has no audio track", "export it with sound")
    folder = Path(Lifecycle(settings, store).quarantine(job).source_path).parent
    error = json.loads((folder / "error.json").read_text())
    assert error["job_id"] == job.id and error["error_type"] == "BadMedia"
    assert error["hint"] == "export it with sound" and error["attempts"] == 1
    assert (folder / "broken.mp4").read_bytes() == b"abc" and (folder / "worker.log").exists()
    assert store.get(job.id).source_path == str(folder / "broken.mp4")


def test_retried_job_leaves_failed_and_publishes(env):
    settings, store, finished_job = env
    job = finished_job("flaky.wav", "1")
    failed = Lifecycle(settings, store).fail(job, "RuntimeError", "boom", "retry")
    folder = Path(failed.source_path).parent
    store.request_retry(job.id)
    job = store.claim(job.id)
    out = outbox.outputs_of(settings, job.id, job.lease_generation)
    out.mkdir(parents=True)
    (out / "final_transcription.json").write_text("{}")
    done = Lifecycle(settings, store).succeed(job)
    assert done.state == "succeeded" and (settings.done / "flaky.wav").exists()
    assert not folder.exists()


def test_a_work_folder_a_late_worker_left_after_success_is_swept_once_quiet(env):
    """A worker of an earlier lease recreated state/jobs/<id>/ after the job succeeded elsewhere."""
    settings, store, finished_job = env
    done = Lifecycle(settings, store).succeed(finished_job("talk.wav", "1"))
    running = finished_job("other.wav", "2")  # a live job's folder is never touched
    late = outbox.job_dir(settings, done.id) / "work"
    late.mkdir(parents=True)
    (late / "unit-0003.json").write_text("{}")
    lifecycle = Lifecycle(settings, store)
    assert lifecycle.sweep_leftovers(quiet_seconds=60) == []  # written just now: maybe still written
    old = os.stat(late).st_mtime - 120
    for path in (late / "unit-0003.json", late, late.parent):
        os.utime(path, (old, old))
    assert lifecycle.sweep_leftovers(quiet_seconds=60) == [done.id]
    assert not outbox.job_dir(settings, done.id).exists() and outbox.job_dir(settings, running.id).is_dir()
