"""diarizectl's job commands against a real store: JSON agrees, tables fit 80 columns."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from diarized.cli.ctl import cli
from diarized.cli.jobs_cmd import jobs_table, status_header
from diarized.store import Priority, open_store

SNAPSHOTS = Path(__file__).parent / "snapshots"


@pytest.fixture
def state(tmp_path):
    """A store with one job in each interesting state, made through the store's own transitions."""
    store = open_store(tmp_path / "state/diarized.db")
    jobs = tmp_path / "state/jobs"

    def queued(name, sha, priority=Priority.NORMAL):
        job = store.record_incoming(name, sha, 1000, priority, 3, tmp_path / name, jobs)
        return store.mark_queued(job.id, 3600.0)
    running = store.claim(queued("board-meeting-2024-quarterly-review.mp4", "a").id)
    store.set_worker(running.id, 4242, 1)
    store.progress(running.id, "transcribe", 0.42, 1234.0)
    store.record_rss(running.id, 2150.0)
    queued("interview.m4a", "b", Priority.HIGH)
    done = store.claim(queued("short.wav", "c").id)
    store.mark_succeeded(done.id, str(tmp_path / "outbox/short"), None)
    store.record_incoming("copy.wav", "c", 1000, Priority.NORMAL, 3, tmp_path / "copy.wav", jobs)
    return tmp_path, store


def ctl(root: Path, *args: str):
    result = CliRunner().invoke(cli, ["--state-dir", str(root), *args], env={"DIARIZED_CONFIG": ""})
    return result


def test_json_views_agree_with_the_store(state):
    root, store = state
    status = json.loads(ctl(root, "status", "--json").stdout)
    assert [j["state"] for j in status["jobs"]] == ["running", "queued"]
    assert status["jobs"][0]["progress"] == 0.42 and status["jobs"][1]["priority_name"] == "high"
    assert status["daemon"]["up"] is False
    listed = json.loads(ctl(root, "list", "--json").stdout)
    assert {j["id"] for j in listed} == {j.id for j in store.jobs()}
    assert json.loads(ctl(root, "list", "--state", "duplicate", "--json").stdout)[0]["source_name"] == "copy.wav"
    running = store.jobs(states=("running",))[0]
    shown = json.loads(ctl(root, "show", running.short_id, "--json").stdout)
    assert shown["job"]["id"] == running.id
    assert [e["kind"] for e in shown["events"]] == [e.kind for e in store.events(running.id)]
    stats = json.loads(ctl(root, "stats", "--json").stdout)
    assert {k: stats[k] for k in store.stats()} == json.loads(json.dumps(store.stats()))
    assert stats["jobs_by_state"]["queued"] == 1 and stats["workers"]["rss_mb"] == {running.id: 2150.0}
    assert stats["jobs_total"] == 4 and stats["succeeded"] == 1 and stats["duplicates"] == 1


def test_human_status_fits_80_columns(state):
    root, _ = state
    out = ctl(root, "status").output
    assert "daemon DOWN" in out and "board-meeting" in out and "42%" in out
    assert max(len(line) for line in out.splitlines()) <= 80


def test_status_with_several_nodes_lists_them_and_who_runs_what(state):
    root, store = state
    import os
    import socket
    import time

    row = dict(host=socket.gethostname(), pid=os.getpid(), started_at=time.time(), heartbeat_at=time.time(),
               workers_busy=1, workers_total=2, memory_used_gb=2.1, memory_budget_gb=20.0, queued=1,
               state="running")
    store.set_daemon("transcribe-01", **row, inbox=True)
    store.set_daemon("transcribe-02", **{**row, "heartbeat_at": time.time() - 600}, inbox=False)
    running = store.jobs(states=("running",))[0]
    store.requeue(running.id, "moved", spend_attempt=False)
    store.claim(running.id, "transcribe-01", 60)
    out = ctl(root, "status").output
    assert "daemon up 1 of 2 nodes" in out
    node_line = next(line for line in out.splitlines() if line.startswith("transcribe-01"))
    assert "yes" in node_line and "1/2" in node_line and running.short_id in node_line
    down_line = next(line for line in out.splitlines() if line.startswith("transcribe-02"))
    assert "DOWN" in down_line and running.short_id not in down_line
    assert max(len(line) for line in out.splitlines()) <= 80
    nodes = json.loads(ctl(root, "status", "--json").stdout)["daemon"]["nodes"]
    assert [(n["node"], n["up"], n["inbox"]) for n in nodes] == [("transcribe-01", True, True),
                                                                ("transcribe-02", False, False)]


def _render(renderable) -> str:
    console = Console(width=80, record=True, color_system=None, file=open("/dev/null", "w"))
    console.print(renderable)
    return console.export_text()


def test_status_table_snapshot(state):
    _, store = state
    now = 1_800_000_000.0
    jobs = [dataclasses.replace(j, started_at=now - 754, created_at=now - 800)
            for j in store.jobs(states=("running",))] + store.jobs(states=("queued",))
    header = {"up": True, "pid": 4242, "workers_busy": 1, "workers_total": 2, "memory_used_gb": 2.1,
              "memory_budget_gb": 20.0, "queued": 1}
    text = _render(status_header(header)) + _render(jobs_table(jobs, now))
    text = "\n".join(line.replace(jobs[0].short_id, "RUN001").replace(jobs[1].short_id, "QUE001")
                     for line in text.splitlines())
    assert text == (SNAPSHOTS / "status_80.txt").read_text()


def test_exit_codes(state, tmp_path):
    root, store = state
    assert ctl(root, "show", "nope").exit_code == 3
    done = store.jobs(states=("succeeded",))[0]
    result = ctl(root, "cancel", done.id)
    assert result.exit_code == 1 and "already succeeded" in result.output
    assert ctl(root, "priority", done.id, "urgent").exit_code == 2
    assert ctl(tmp_path / "elsewhere", "status").exit_code == 1


def test_cancel_priority_retry_change_the_store(state):
    root, store = state
    queued = store.jobs(states=("queued",))[0]
    assert ctl(root, "priority", queued.short_id, "low").exit_code == 0
    assert store.get(queued.id).priority_name == "low"
    assert ctl(root, "cancel", queued.short_id).exit_code == 0
    assert store.get(queued.id).cancel_requested == 1


def test_submit_makes_a_job_at_once_through_intake(tmp_path, data):
    open_store(tmp_path / "state/diarized.db").close()  # a daemon's state root
    first = ctl(tmp_path, "submit", str(data / "en-jfk/jfk.flac"), "--priority", "high", "--num-speakers", "1")
    assert first.exit_code == 0, first.output
    job = open_store(tmp_path / "state/diarized.db").jobs()[0]
    assert f"-> job {job.id} (queued)" in first.output
    assert job.priority_name == "high" and job.num_speakers == 1 and Path(job.source_path).is_file()
    again = ctl(tmp_path, "submit", str(data / "en-jfk/jfk.flac"))
    assert f"(duplicate of {job.id})" in again.output


def test_without_a_store_submit_copies_safely_into_the_priority_folder(tmp_path, data):
    result = ctl(tmp_path, "submit", str(data / "en-jfk/jfk.flac"), str(data / "en-jfk/jfk.flac"),
                 "--priority", "high")
    assert result.exit_code == 0, result.output
    high = tmp_path / "inbox/high"
    assert sorted(p.name for p in high.iterdir()) == ["jfk-1.flac", "jfk.flac"]
    assert (high / "jfk.flac").read_bytes() == (data / "en-jfk/jfk.flac").read_bytes()


def test_without_a_store_submit_writes_speaker_hints_beside_the_file_and_refuses_nonsense(tmp_path, data):
    result = ctl(tmp_path, "submit", str(data / "en-jfk/jfk.flac"), "--min-speakers", "2", "--max-speakers", "0")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "inbox/jfk.flac.toml").read_text() == "min_speakers = 2\nmax_speakers = 0\n"
    bad = ctl(tmp_path, "submit", str(data / "en-jfk/jfk.flac"), "--min-speakers", "5", "--max-speakers", "2")
    assert bad.exit_code == 2 and "min_speakers (5) is larger than max_speakers (2)" in bad.output


def test_show_lists_the_jobs_speaker_hints(tmp_path):
    from diarized.store import SpeakerHints

    store = open_store(tmp_path / "state/diarized.db")
    job = store.record_incoming("panel.wav", "s", 1, Priority.NORMAL, 3, tmp_path / "panel.wav",
                                tmp_path / "state/jobs", SpeakerHints(num=7))
    shown = json.loads(ctl(tmp_path, "show", job.short_id, "--json").stdout)["job"]
    assert shown["num_speakers"] == 7 and shown["max_speakers"] is None
    assert "num_speakers" in ctl(tmp_path, "show", job.short_id).output


def test_a_deep_queue_is_counted_not_listed(tmp_path):
    """Before: status printed every queued job (17.9 s with 21,492 of them)."""
    store = open_store(tmp_path / "state/diarized.db")
    jobs = tmp_path / "state/jobs"
    for n in range(3000):
        job = store.record_incoming(f"q{n:04d}.wav", f"{n:064x}", 1000,
                                    Priority.HIGH if n == 2999 else Priority.NORMAL, 3, tmp_path / f"q{n}.wav", jobs)
        store.mark_queued(job.id)
    out = ctl(tmp_path, "status").output
    listed = [line for line in out.splitlines() if " queued " in line]
    assert len(listed) == 20 and "q2999.wav" in listed[0]  # claim order: the high-priority one first
    assert "… and 2,980 more waiting (3,000 in all" in " ".join(out.split())
    data = json.loads(ctl(tmp_path, "status", "--json", "--queued", "5").stdout)
    assert len(data["jobs"]) == 5 and data["waiting"] == 3000 and data["counts"]["queued"] == 3000
    assert [j.source_name for j in store.claimable(limit=2)] == ["q2999.wav", "q0000.wav"]
    assert [j.source_name for j in store.queue(3)] == ["q2999.wav", "q0000.wav", "q0001.wav"]


def test_delete_asks_first_and_refuses_a_running_job(state):
    root, store = state
    done = store.jobs(states=("succeeded",))[0]
    asked = CliRunner().invoke(cli, ["--state-dir", str(root), "delete", done.short_id], input="n\n",
                               env={"DIARIZED_CONFIG": ""})
    assert asked.exit_code == 1 and "Delete job" in asked.output and store.get(done.id)
    running = store.jobs(states=("running",))[0]
    refused = ctl(root, "delete", running.id, "--yes")
    assert refused.exit_code == 1 and "cancel it first" in refused.output
    deleted = ctl(root, "delete", done.id, "--yes")
    assert deleted.exit_code == 0 and f"{done.id} deleted" in deleted.stdout
    assert done.id not in {j.id for j in store.jobs()}
