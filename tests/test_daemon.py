"""The real daemon with real models as a process: files in, outputs out, whatever happens to the processes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest

from bench.synth import read_audio, write_container
from diarized.config import load_settings
from diarized.pipeline.runner import Runner
from tests.harness import wait_until, worker_pids

pytestmark = pytest.mark.slow

STABLE = ("total_duration", "speakers", "segments", "language")


@pytest.fixture
def daemon(make_daemon):
    return make_daemon


CORES = os.cpu_count() or 1


def test_a_lone_job_gets_every_core(daemon, data):
    d = daemon(max_workers=2)
    d.drop(data / "en-jfk/jfk.flac")
    job = d.wait_all_final(1)[0]
    assert job.state == "succeeded" and d.store.worker_threads(job.id) == [CORES]
    rates = json.loads((d.root / "state/stage-rates.json").read_text())["tiny.en"]  # the next ETA's history
    assert set(rates) == {"decode", "transcribe", "diarize", "write"} and 0 < rates["transcribe"] < 5


def _outputs(folder):
    return sorted(p.name for p in folder.iterdir())


def test_three_files_all_published_never_more_than_max_workers(daemon, data):
    d = daemon(max_workers=2)
    samples, stop = [], threading.Event()

    def sample():
        # the supervisor's own children only: a worker that runs a helper (ctypes' find_library
        # calls ldconfig) has, between fork and exec, a child with the worker's command line
        supervisor = psutil.Process(d.proc.pid)
        while not stop.is_set():
            samples.append(len(worker_pids(d.root) & {c.pid for c in supervisor.children()}))
            time.sleep(0.1)
    sampler = threading.Thread(target=sample)
    sampler.start()
    for src in (data / "en-jfk/jfk.flac", data / "pyannote-sample/sample.wav",
                data / "picovoice-falcon-3spk/test.wav"):
        d.drop(src)
    try:
        jobs = d.wait_all_final(3)
    finally:
        stop.set()
        sampler.join()
    assert sorted(j.state for j in jobs) == ["succeeded"] * 3
    assert max(samples) <= 2 and max(samples) >= 1
    assert sorted(p.name for p in d.outbox.iterdir()) == ["jfk", "sample", "test"]
    for folder in d.outbox.iterdir():
        assert {"final_transcription.json", "transcription.srt", "transcription.vtt", "transcription.txt",
                "diarization.rttm", "whisper_results.json", "diarization_results.json", "chunks",
                "job.json"} <= set(_outputs(folder))
    assert sorted(p.name for p in (d.root / "done").iterdir()) == ["jfk.flac", "sample.wav", "test.wav"]
    assert list(d.inbox.glob("*.*")) == [] and list((d.root / "state/jobs").iterdir()) == []


@pytest.fixture(scope="module")
def long_meeting(data, tmp_path_factory):
    """Three minutes of real meeting audio as an mp4 video: 12 units of 15 s."""
    audio = read_audio(data / "ami-mixture-4spk/mixture.wav")
    return write_container(tmp_path_factory.mktemp("media") / "meeting.mp4", np.concatenate([audio] * 3))


def test_worker_killed_mid_transcription_resumes_without_redoing_units(daemon, long_meeting, tmp_path,
                                                                       models_cache):
    d = daemon(unit_seconds=15)
    d.drop(long_meeting)
    units_done = lambda: [e for j in d.jobs() for e in d.store.events(j.id) if e.kind == "unit_done"]  # noqa: E731
    wait_until(lambda: len(units_done()) >= 2, 180, "two units to be transcribed")
    job = d.jobs("running")[0]
    os.kill(job.worker_pid, signal.SIGKILL)
    done = d.wait_all_final(1)[0]
    assert done.state == "succeeded" and done.attempts == 2
    kinds = [e.kind for e in d.store.events(done.id)]
    units = json.loads((d.outbox / "meeting/chunks/chunks_metadata.json").read_text())["units"]
    assert len(units) == 12
    assert kinds.count("unit_done") == len(units)  # each unit transcribed exactly once
    assert kinds.count("unit_skipped") >= 2
    assert "requeued" in kinds
    # identical to an uninterrupted run with the same settings
    settings = load_settings(None, {"state_dir": tmp_path / "ref", "cache_dir": models_cache,
                                    "model": "tiny.en", "unit_seconds": 15, "max_workers": 2}, env={})
    Runner(settings).run(long_meeting, tmp_path / "ref/work", tmp_path / "ref/out")
    ours = json.loads((d.outbox / "meeting/final_transcription.json").read_text())
    ref = json.loads((tmp_path / "ref/out/final_transcription.json").read_text())
    assert {k: ours[k] for k in STABLE} == {k: ref[k] for k in STABLE}


def test_supervisor_killed_with_two_jobs_running_loses_nothing(daemon, data, long_meeting):
    d = daemon(unit_seconds=15)
    d.drop(long_meeting)
    d.drop(data / "pyannote-sample/sample.wav")
    wait_until(lambda: len(d.jobs("running")) == 2 and all(j.worker_pid for j in d.jobs("running")),
               120, "two running workers")
    old_workers = {j.worker_pid for j in d.jobs("running")}
    d.kill9()
    wait_until(lambda: not (old_workers & worker_pids()), 10, "orphaned workers to die")
    d.start()
    jobs = d.wait_all_final(2)
    assert sorted(j.state for j in jobs) == ["succeeded", "succeeded"]
    # both requeued by recovery, admitted in one tick: they split the cores
    assert [d.store.worker_threads(j.id)[-1] for j in jobs] == [max(1, CORES // 2)] * 2
    assert sorted(p.name for p in d.outbox.iterdir()) == ["meeting", "sample"]
    assert sorted(p.name for p in (d.root / "done").iterdir()) == ["meeting.mp4", "sample.wav"]
    assert not (old_workers & worker_pids())


def test_slow_upload_is_not_claimed_before_it_is_complete(daemon, data):
    d = daemon(settle_seconds=3)
    payload = (data / "pyannote-sample/sample.wav").read_bytes()
    target = d.inbox / "slow.wav"
    with target.open("wb") as fh:
        step = len(payload) // 20
        for i in range(20):  # 20 s of writing, the file held open throughout
            fh.write(payload[i * step:(i + 1) * step])
            fh.flush()
            time.sleep(1.0)
            assert d.jobs() == [], f"claimed after {i + 1} s of a 20 s upload"
        fh.write(payload[20 * step:])
    job = d.wait_all_final(1)[0]
    assert job.state == "succeeded" and job.size == len(payload)


def test_high_priority_file_runs_next(daemon, data):
    d = daemon(max_workers=1)
    d.drop(data / "en-jfk/jfk.flac", "first.flac")
    wait_until(lambda: d.jobs("running"), 30, "the first job to start")
    d.drop(data / "pyannote-sample/sample.wav", "normal.wav")
    time.sleep(1.5)
    d.drop(data / "picovoice-falcon-3spk/test.wav", "urgent.wav", sub="high")
    jobs = {j.source_name: j for j in d.wait_all_final(3)}
    assert jobs["urgent.wav"].priority_name == "high"
    assert jobs["first.flac"].started_at < jobs["urgent.wav"].started_at < jobs["normal.wav"].started_at


def test_same_content_twice_is_processed_once(daemon, data):
    d = daemon()
    d.drop(data / "en-jfk/jfk.flac", "a.flac")
    d.wait_all_final(1)
    d.drop(data / "en-jfk/jfk.flac", "b.flac")
    jobs = {j.source_name: j for j in d.wait_all_final(2)}
    assert jobs["a.flac"].state == "succeeded" and jobs["b.flac"].state == "duplicate"
    assert jobs["b.flac"].duplicate_of == jobs["a.flac"].id
    assert [p.name for p in d.outbox.iterdir()] == ["a"]
    assert sorted(p.name for p in (d.root / "done").iterdir()) == ["a.flac", "b.flac"]


def test_sigterm_requeues_without_spending_an_attempt(daemon, long_meeting):
    d = daemon(unit_seconds=15, stop_timeout_seconds=10)
    d.drop(long_meeting)
    wait_until(lambda: [e for j in d.jobs() for e in d.store.events(j.id) if e.kind == "unit_done"],
               180, "a unit to finish")
    started = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - started < 10 + 5
    job = d.jobs()[0]
    assert job.state == "queued" and job.attempts == 0
    assert not worker_pids() & {job.worker_pid or -1}
    d.start()
    done = d.wait_all_final(1)[0]
    assert done.state == "succeeded" and done.attempts == 1


def test_corrupt_upload_fails_once_with_a_clear_error_json(daemon, tmp_path):
    d = daemon()
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video\n" * 100)
    d.drop(fake)
    job = d.wait_all_final(1)[0]
    assert job.state == "failed" and job.attempts == 1  # bad input is not retried
    error = d.failed_report("notes")
    assert error["error_type"] == "BadMedia" and "not a readable audio or video file" in error["message"]
    assert "notes.mp4" in error["message"] and error["hint"]
    assert (d.root / "failed/notes/notes.mp4").read_text().startswith("not a video")


def test_cancel_stops_a_running_worker(daemon, long_meeting):
    from click.testing import CliRunner

    from diarized.cli.ctl import cli

    d = daemon(unit_seconds=15)
    d.drop(long_meeting)
    job = wait_until(lambda: [j for j in d.jobs("running") if j.worker_pid], 60, "the job to start")[0]
    result = CliRunner().invoke(cli, ["--state-dir", str(d.root), "cancel", job.short_id],
                                env={"DIARIZED_CONFIG": ""})
    assert result.exit_code == 0, result.output
    done = d.wait_all_final(1, timeout=30)[0]
    assert done.state == "cancelled" and job.worker_pid not in worker_pids()
    error = d.failed_report("meeting")
    assert error["state"] == "cancelled" and (d.root / "failed/meeting/meeting.mp4").exists()


def test_a_second_daemon_on_the_same_state_dir_refuses_to_start(daemon, tmp_path, models_cache):
    import subprocess
    import sys

    first = daemon()
    proc = subprocess.run([sys.executable, "-m", "diarized.cli.daemon", "run", "--state-dir", str(first.root)],
                          env=first.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"another diarized (pid {first.proc.pid}) is running" in proc.stderr
    assert first.proc.poll() is None


def test_speaker_hints_given_with_a_file_reach_its_worker(daemon, data, tmp_path):
    from click.testing import CliRunner

    from diarized.cli.ctl import cli

    d = daemon()
    result = CliRunner().invoke(cli, ["--state-dir", str(d.root), "submit", "--num-speakers", "1",
                                      str(data / "pyannote-sample/sample.wav")], env={"DIARIZED_CONFIG": ""})
    assert result.exit_code == 0, result.output
    job = d.wait_all_final(1)[0]
    assert job.state == "succeeded" and job.num_speakers == 1
    doc = json.loads((d.outbox / "sample/final_transcription.json").read_text())
    assert doc["speakers"] == ["SPEAKER_00"]  # the sample has two voices; the hint fixed one
