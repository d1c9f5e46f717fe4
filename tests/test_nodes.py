"""Several nodes on one PostgreSQL store and one shared state folder, as real processes.

Two daemons on this machine act as two nodes (node_id a and b, one state root,
one database on a real PostgreSQL server). What must hold whatever happens: every
file ends exactly once in the outbox, one job per file, one success per job; the
inbox always has exactly one live scanner; a node killed with -9 loses nothing.
The fake-worker test runs in seconds; the real-model ones (tiny.en) are slow.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from tests.harness import Daemon, wait_until

NODES = ("a", "b")


def start_nodes(tmp_path: Path, cache: Path, dsn: str, **settings) -> dict[str, Daemon]:
    root = tmp_path / "var"
    nodes = {n: Daemon(root, cache, store=dsn, node_id=n, **settings) for n in NODES}
    for daemon in nodes.values():
        daemon.start()
    return nodes


def inbox_holder(daemon: Daemon) -> str | None:
    holders = [n.node for n in daemon.store.nodes() if n.up and n.inbox]
    assert len(holders) <= 1, f"two nodes scan the inbox at once: {holders}"
    return holders[0] if holders else None


def running_on(daemon: Daemon, node: str) -> list:
    return [j for j in daemon.jobs("running") if j.node == node and j.worker_pid]


def logs(nodes: dict[str, Daemon]) -> str:
    return "\n".join(f"--- node {n}\n{d.log.read_text()[-4000:]}" for n, d in nodes.items())


def assert_each_file_once(daemon: Daemon, count: int) -> list:
    """count jobs, all succeeded once, one outbox folder and one original in done/ each."""
    jobs = daemon.jobs()
    assert len(jobs) == count and {j.state for j in jobs} == {"succeeded"}, [(j.source_name, j.state) for j in jobs]
    for job in jobs:
        kinds = Counter(e.kind for e in daemon.store.events(job.id))
        assert kinds["succeeded"] == 1, (job.source_name, kinds)
        assert json.loads((Path(job.output_dir) / "job.json").read_text())["job_id"] == job.id
    published = sorted(p.name for p in daemon.outbox.iterdir())
    assert len(published) == count and sorted(Path(j.output_dir).name for j in jobs) == published
    assert len(list((daemon.root / "done").iterdir())) == count
    assert Counter(n.job_id for n in daemon.store.pending_notifications(1000)) == {j.id: 1 for j in jobs}
    return jobs


def kill_the_inbox_node_with_two_jobs(nodes: dict[str, Daemon], timeout: float) -> tuple[str, list, float]:
    """kill -9 the node holding the inbox once it runs two jobs; returns it, its jobs, the kill time."""
    any_node = next(iter(nodes.values()))
    holder = wait_until(lambda: inbox_holder(any_node), 30, "a node to take the inbox")
    victims = wait_until(lambda: len(running_on(any_node, holder)) == 2 and running_on(any_node, holder), timeout,
                         lambda: f"node {holder} to run two jobs\n{logs(nodes)}")
    nodes[holder].kill9()
    return holder, victims, time.monotonic()


def test_two_nodes_share_the_inbox_and_survive_kill9_of_the_inbox_node(postgres_server, models_cache,
                                                                        tmp_path):
    dsn = postgres_server.new_database()
    nodes = start_nodes(tmp_path, models_cache, dsn, fake_workers=True, lease_seconds=10, max_workers=2)
    try:
        first = nodes["a"]
        for i in range(6):
            (first.inbox / f"talk{i}.wav").write_text(json.dumps({"runs": [{"seconds": 6}], "n": i}))
        holder, victims, killed = kill_the_inbox_node_with_two_jobs(nodes, 30)
        other = next(n for n in NODES if n != holder)
        survivor = nodes[other]
        wait_until(lambda: inbox_holder(survivor) == other, 15, lambda: f"node {other} to take the inbox")
        takeover = time.monotonic() - killed
        (survivor.inbox / "late.wav").write_text(json.dumps({"runs": [{"seconds": 1}]}))
        survivor.wait_all_final(7, timeout=120)
        finished = time.monotonic() - killed
        jobs = assert_each_file_once(survivor, 7)
        for victim in victims:
            events = survivor.store.events(victim.id)
            assert any("node " + holder + " stopped renewing its lease" in e.detail for e in events), events
            assert survivor.store.get(victim.id).node == other
        assert {j.node for j in jobs if j.source_name == "late.wav"} == {other}

        nodes[holder].start()  # the killed node comes back: nothing is taken or published again
        time.sleep(3)
        assert_each_file_once(survivor, 7)
        assert inbox_holder(survivor) == other
        print(f"\ninbox taken over in {takeover:.1f} s; all 7 done {finished:.1f} s after the kill")
        assert all(d.stop() == 0 for d in nodes.values())
    finally:
        for daemon in nodes.values():
            if daemon.proc.poll() is None:
                daemon.kill9()


@pytest.mark.slow
def test_two_real_nodes_finish_six_recordings_once_after_kill9(postgres_server, models_cache, tmp_path, data):
    dsn = postgres_server.new_database()
    nodes = start_nodes(tmp_path, models_cache, dsn, lease_seconds=15, max_workers=2)
    try:
        files = [data / "en-jfk/jfk.flac", data / "pyannote-sample/sample.wav",
                 data / "picovoice-falcon-3spk/test.wav", *sorted((data / "ptbr-falabrasil").glob("*.wav"))[:3]]
        for source in files:
            nodes["a"].drop(source)
        holder, victims, killed = kill_the_inbox_node_with_two_jobs(nodes, 120)
        other = next(n for n in NODES if n != holder)
        survivor = nodes[other]
        wait_until(lambda: inbox_holder(survivor) == other, 15, lambda: f"node {other} to take the inbox")
        takeover = time.monotonic() - killed
        survivor.wait_all_final(6, timeout=600)
        finished = time.monotonic() - killed
        assert_each_file_once(survivor, 6)
        assert {survivor.store.get(v.id).node for v in victims} == {other}
        nodes[holder].start()
        time.sleep(5)
        assert_each_file_once(survivor, 6)
        print(f"\nreal models: inbox taken over in {takeover:.1f} s; all 6 done {finished:.1f} s after the kill")
        assert all(d.stop() == 0 for d in nodes.values())
    finally:
        for daemon in nodes.values():
            if daemon.proc.poll() is None:
                daemon.kill9()


@pytest.mark.slow
def test_a_20_second_database_outage_pauses_nodes_and_loses_nothing(postgres_server, models_cache, tmp_path,
                                                                     data):
    dsn = postgres_server.new_database()
    nodes = start_nodes(tmp_path, models_cache, dsn, lease_seconds=60, max_workers=2)
    try:
        files = [data / "pyannote-sample/sample.wav", data / "picovoice-falcon-3spk/test.wav",
                 data / "ami-mixture-4spk/mixture.wav", data / "en-jfk/jfk.flac"]
        for source in files:
            nodes["a"].drop(source)
        probe = nodes["a"]
        workers = wait_until(lambda: len(probe.jobs("running")) >= 2 and all(
            j.worker_pid for j in probe.jobs("running")) and {j.worker_pid for j in probe.jobs("running")},
            120, lambda: f"two running workers\n{logs(nodes)}")
        postgres_server.halt()
        try:
            time.sleep(20)
            alive = {pid for pid in workers if psutil.pid_exists(pid)}
        finally:
            postgres_server.resume()
        assert alive, "every worker died with the database"
        probe.wait_all_final(4, timeout=600)
        jobs = assert_each_file_once(probe, 4)
        assert [j.attempts for j in jobs] == [1] * 4, "\n".join(
            f"{j.source_name}: {e.kind} {e.detail}" for j in jobs for e in probe.store.events(j.id))
        for daemon in nodes.values():
            text = daemon.log.read_text()
            assert "paused: cannot write the store" in text and "resumed" in text, text[-3000:]
        print(f"\noutage: {len(alive)} of {len(workers)} workers kept working through 20 s without the database")
        assert all(d.stop() == 0 for d in nodes.values())
    finally:
        for daemon in nodes.values():
            if daemon.proc.poll() is None:
                daemon.kill9()
