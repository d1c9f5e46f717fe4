"""The Python API against a real daemon process (fake workers: scheduling only, no model)."""

from __future__ import annotations

import json

import pytest

from diarized import Client, JobFailed, Priority, SpeakerHints
from diarized.client import Stats, SystemStatus
from diarized.worker import WorkerExit
from tests.harness import wait_until


def script(tmp_path, name: str, *runs: dict):
    path = tmp_path / name
    path.write_text(json.dumps({"runs": list(runs)}))
    return path


def test_submit_wait_outputs_and_status(make_daemon, tmp_path):
    d = make_daemon(fake_workers=True)
    with Client(state_dir=d.root) as client:
        job = client.submit(script(tmp_path, "talk.wav", {"exit": 0, "seconds": 0.5, "duration": 30.0}),
                            "high", SpeakerHints(max=4))
        assert job.state == "queued" and job.priority == Priority.HIGH and job.max_speakers == 4
        done = client.wait(job.short_id, timeout=60)
        assert done.state == "succeeded" and done.id == job.id
        assert sorted(client.outputs(job.id)) == ["final_transcription.json", "job.json", "transcription.txt"]
        assert [e.kind for e in client.events(job.id)][:2] == ["recorded", "queued"]
        assert client.list(states=["succeeded"]) == [done]
        stats = client.stats()
        assert isinstance(stats, Stats) and stats.succeeded == 1 and stats.success_rate == 1.0
        status = client.system_status()
        assert isinstance(status, SystemStatus) and status.daemon.up and status.counts == {"succeeded": 1}


def test_wait_raises_with_the_jobs_error_and_a_duplicate_waits_for_its_original(make_daemon, tmp_path):
    d = make_daemon(fake_workers=True)
    with Client(state_dir=d.root) as client:
        bad = client.submit(script(tmp_path, "notes.mp4", {"exit": WorkerExit.BAD_INPUT,
                                                            "error": "notes.mp4: not media"}))
        with pytest.raises(JobFailed, match="notes.mp4: not media") as caught:
            client.wait(bad.id, timeout=60)
        assert caught.value.job.state == "failed" and caught.value.job.hint
        first = client.submit(script(tmp_path, "slow.wav", {"exit": 0, "seconds": 1.0}))
        copy = client.submit(tmp_path / "slow.wav", name="copy.wav")
        assert copy.state == "duplicate"
        assert client.wait(copy.id, timeout=60).id == first.id


def test_cancel_retry_priority_and_a_timeout(make_daemon, tmp_path):
    d = make_daemon(fake_workers=True, max_workers=1)
    with Client(state_dir=d.root) as client:
        busy = client.submit(script(tmp_path, "long.wav", {"exit": 0, "seconds": 30}))
        waiting = client.submit(script(tmp_path, "next.wav", {"exit": 0}))
        assert client.set_priority(waiting.id, "low").priority_name == "low"
        with pytest.raises(TimeoutError, match="still"):
            client.wait(waiting.id, timeout=0.5)
        client.cancel(waiting.id)
        with pytest.raises(JobFailed, match="cancelled"):
            client.wait(waiting.id, timeout=30)
        assert client.retry(waiting.id).state == "queued"
        client.cancel(busy.id)
        assert client.wait(waiting.id, timeout=60).state == "succeeded"


def test_a_duplicate_shares_its_originals_outputs_and_the_orchestrator_copies_them(make_daemon, tmp_path):
    """Before: Client.outputs(duplicate) was {} and the seed's output_dir of a duplicate stayed empty."""
    from diarized import Orchestrator

    d = make_daemon(fake_workers=True)
    source = script(tmp_path, "talk.wav", {"exit": 0, "seconds": 1.0})
    ended = []
    with Orchestrator(state_dir=d.root) as orchestrator:
        orchestrator.add_job_completion_callback(ended.append)
        early = orchestrator.process_file(source, tmp_path / "out-first")
        while_running = orchestrator.process_file(source, tmp_path / "out-meanwhile")
        client = orchestrator.client
        client.wait(early, timeout=60)
        after = orchestrator.process_file(source, tmp_path / "out-after")
        assert client.get(after).duplicate_of == early
        assert client.outputs(after) == client.outputs(early) != {}
        wait_until(lambda: {early, while_running, after} <= {j.id for j in ended}, 30, "three callbacks")
        status = orchestrator.get_job_status(after)
        assert status["duplicate_of"] == early and status["status"] == "completed"
    for folder in ("out-first", "out-meanwhile", "out-after"):
        assert (tmp_path / folder / "final_transcription.json").is_file(), folder
