"""Several nodes on one PostgreSQL store and one shared state folder, as real processes.

Two daemons on this machine act as two nodes (node_id a and b, one state root,
one database on a real PostgreSQL server). What must hold whatever happens: every
file ends exactly once in the outbox, one job per file, one success per job; the
inbox always has exactly one live scanner; a node killed with -9 loses nothing.
The fake-worker test runs in seconds; the real-model ones (tiny.en) are slow.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from tests.harness import Daemon, wait_until

NODES = ("a", "b")


@pytest.fixture
def two_nodes(postgres_server, models_cache, tmp_path):
    """Start nodes a and b on one state root and a fresh database; any still running is killed at the end."""
    started: list[Daemon] = []

    def start(env: dict[str, dict] | None = None, delay: Path | None = None, **settings) -> dict[str, Daemon]:
        """env: extra environment per node name (a skewed clock for one of them); delay: a
        publication delay file (fake_daemon.py --delay-publication) given to every node."""
        dsn, root = postgres_server.new_database(), tmp_path / "var"
        nodes = {n: Daemon(root, models_cache, store=dsn, node_id=n, **settings) for n in NODES}
        for name, extra in (env or {}).items():
            nodes[name].env.update(extra)
        for daemon in nodes.values():
            daemon.delay_publication = delay
        for daemon in nodes.values():
            started.append(daemon.start())
        return nodes
    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.kill9()


def other_node(node: str) -> str:
    return next(n for n in NODES if n != node)


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
    """kill -9 the node holding the inbox once it runs two jobs; wait for the other to take the inbox.

    Returns the killed node, the jobs it ran, and how many seconds the take-over took.
    """
    any_node = next(iter(nodes.values()))
    holder = wait_until(lambda: inbox_holder(any_node), 30, "a node to take the inbox")
    victims = wait_until(lambda: len(running_on(any_node, holder)) == 2 and running_on(any_node, holder), timeout,
                         lambda: f"node {holder} to run two jobs\n{logs(nodes)}")
    nodes[holder].kill9()
    killed = time.monotonic()
    other = other_node(holder)
    wait_until(lambda: inbox_holder(nodes[other]) == other, 15, lambda: f"node {other} to take the inbox")
    return holder, victims, time.monotonic() - killed


def restart_changes_nothing(nodes: dict[str, Daemon], holder: str, count: int, settle: float) -> None:
    """The killed node comes back: nothing is taken or published again."""
    other = other_node(holder)
    nodes[holder].start()
    time.sleep(settle)
    assert_each_file_once(nodes[other], count)
    assert inbox_holder(nodes[other]) == other
    assert all(d.stop() == 0 for d in nodes.values())


def test_two_nodes_share_the_inbox_and_survive_kill9_of_the_inbox_node(two_nodes):
    nodes = two_nodes(fake_workers=True, lease_seconds=10, max_workers=2)
    for i in range(6):
        (nodes["a"].inbox / f"talk{i}.wav").write_text(json.dumps({"runs": [{"seconds": 6}], "n": i}))
    started = time.monotonic()
    holder, victims, takeover = kill_the_inbox_node_with_two_jobs(nodes, 30)
    other = other_node(holder)
    survivor = nodes[other]
    (survivor.inbox / "late.wav").write_text(json.dumps({"runs": [{"seconds": 1}]}))
    survivor.wait_all_final(7, timeout=120)
    jobs = assert_each_file_once(survivor, 7)
    for victim in victims:
        events = survivor.store.events(victim.id)
        assert any(f"node {holder} stopped renewing its lease" in e.detail for e in events), events
        assert survivor.store.get(victim.id).node == other
    assert {j.node for j in jobs if j.source_name == "late.wav"} == {other}
    print(f"\ninbox taken over in {takeover:.1f} s; all 7 done {time.monotonic() - started:.1f} s after the drop")
    restart_changes_nothing(nodes, holder, 7, settle=3)


@pytest.mark.slow
def test_two_real_nodes_finish_six_recordings_once_after_kill9(two_nodes, data):
    nodes = two_nodes(lease_seconds=15, max_workers=2)
    for source in [data / "en-jfk/jfk.flac", data / "pyannote-sample/sample.wav",
                   data / "picovoice-falcon-3spk/test.wav", *sorted((data / "ptbr-falabrasil").glob("*.wav"))[:3]]:
        nodes["a"].drop(source)
    holder, victims, takeover = kill_the_inbox_node_with_two_jobs(nodes, 120)
    other = other_node(holder)
    nodes[other].wait_all_final(6, timeout=600)
    assert_each_file_once(nodes[other], 6)
    assert {nodes[other].store.get(v.id).node for v in victims} == {other}
    print(f"\nreal models: inbox taken over in {takeover:.1f} s")
    restart_changes_nothing(nodes, holder, 6, settle=5)


def resumed_at(daemon: Daemon) -> float:
    """When the daemon logged that the store was back (epoch seconds, from its JSON log)."""
    from datetime import datetime

    lines = [json.loads(line) for line in daemon.log.read_text().splitlines() if '"resumed' in line]
    return datetime.fromisoformat(lines[-1]["timestamp"].replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_a_45_second_database_outage_pauses_nodes_and_loses_nothing(two_nodes, postgres_server, data):
    """Before: the nodes resumed 17-21 s after the database returned (the pool's doubling reconnect
    delay), and the worker's events written during the outage were lost."""
    nodes = two_nodes(lease_seconds=120, max_workers=2)
    probe = nodes["a"]
    for source in [data / "pyannote-sample/sample.wav", data / "picovoice-falcon-3spk/test.wav",
                   data / "ami-mixture-4spk/mixture.wav", data / "en-jfk/jfk.flac"]:
        probe.drop(source)
    workers = wait_until(lambda: len(probe.jobs("running")) >= 2 and all(
        j.worker_pid for j in probe.jobs("running")) and {j.worker_pid for j in probe.jobs("running")},
        120, lambda: f"two running workers\n{logs(nodes)}")
    postgres_server.halt()
    try:
        time.sleep(45)
        alive = {pid for pid in workers if psutil.pid_exists(pid)}
    finally:
        postgres_server.resume()
        back = time.time()
    assert alive, "every worker died with the database"
    probe.wait_all_final(4, timeout=600)
    jobs = assert_each_file_once(probe, 4)
    assert [j.attempts for j in jobs] == [1] * 4, events_of(probe)
    for job in jobs:  # every checkpoint the worker reported, outage or not, is on the timeline
        kinds = Counter(e.kind for e in probe.store.events(job.id))
        assert kinds["decoded"] == 1 and kinds["diarized"] == 1 and kinds["unit_done"] >= 1, (job.source_name, kinds)
    delays = {}
    for name, daemon in nodes.items():
        text = daemon.log.read_text()
        assert "paused: cannot write the store" in text and "resumed" in text, text[-3000:]
        delays[name] = resumed_at(daemon) - back
    print(f"\noutage 45 s: {len(alive)} of {len(workers)} workers kept working; nodes resumed "
          + ", ".join(f"{n} {d:.1f} s" for n, d in delays.items()) + " after the database returned")
    assert all(d < 5 for d in delays.values()), delays  # 17-21 s before
    assert all(d.stop() == 0 for d in nodes.values())


def test_every_node_is_visible_in_system_metrics_and_each_job(two_nodes, make_api):
    """Before: GET /system had one merged row ("node": "a,b") and a job did not say where it ran."""
    from diarized.api.auth import new_token

    token, entry = new_token("ops", "read")
    nodes = two_nodes(fake_workers=True, max_workers=1)
    (nodes["a"].inbox / "talk.wav").write_text(json.dumps({"runs": [{"seconds": 0.2}]}))
    job = nodes["a"].wait_all_final(1, timeout=60)[0]
    api = make_api([entry], store=nodes["a"].store_location)
    with api.client(token) as client:
        system = client.get("/system").json()
        assert sorted(n["node"] for n in system["nodes"]) == ["a", "b"] and all(n["up"] for n in system["nodes"])
        assert sum(n["inbox"] for n in system["nodes"]) == 1
        assert client.get(f"/jobs/{job.id}").json()["node"] == job.node in NODES
        metrics = client.get("/metrics").text
    for node in NODES:
        assert f'diarized_node_up{{node="{node}"}} 1.0' in metrics
        assert f'diarized_node_workers_max{{node="{node}"}} 1.0' in metrics
    assert metrics.count("diarized_node_inbox{") == 2


def events_of(daemon: Daemon) -> str:
    return "\n".join(f"{j.source_name} {j.state} a{j.attempts}: {e.kind} {e.detail}"
                     for j in daemon.jobs() for e in daemon.store.events(j.id))


def test_a_paused_inbox_holder_loses_the_inbox_and_its_jobs_and_takes_nothing_back(two_nodes):
    """SIGSTOP of the inbox holder for longer than the leases. Before: the role was a session
    advisory lock the stopped process kept, so new files sat in the inbox and only the holder
    requeued expired leases. Now: the other node takes the inbox once the role's lease is past
    the server's clock, takes over the stopped node's job, and on SIGCONT the stopped node
    neither scans the inbox nor publishes what its worker left."""
    nodes = two_nodes(fake_workers=True, lease_seconds=10, max_workers=1)
    any_node = nodes["a"]
    holder = wait_until(lambda: inbox_holder(any_node), 30, "a node to take the inbox")
    other = other_node(holder)
    (any_node.inbox / "before.wav").write_text(json.dumps({"runs": [{"seconds": 2}]}))
    wait_until(lambda: running_on(any_node, holder) or running_on(any_node, other), 30, "the first job to run")
    os.kill(nodes[holder].proc.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        (any_node.inbox / "during.wav").write_text(json.dumps({"runs": [{"seconds": 0.5}]}))
        wait_until(lambda: inbox_holder(nodes[other]) == other, 30, lambda: f"node {other} to take the inbox")
        took_inbox = time.monotonic() - stopped
        wait_until(lambda: {j.state for j in any_node.jobs()} == {"succeeded"} and len(any_node.jobs()) == 2,
                   60, lambda: f"both files done by node {other}\n{events_of(any_node)}")
        done = time.monotonic() - stopped
    finally:
        os.kill(nodes[holder].proc.pid, signal.SIGCONT)
    time.sleep(4)  # the stopped node's ticks after SIGCONT: nothing may change
    jobs = assert_each_file_once(nodes[other], 2)
    assert inbox_holder(nodes[other]) == other
    assert all(j.attempts == 1 for j in jobs), events_of(any_node)
    print(f"\npaused holder: inbox taken over {took_inbox:.1f} s after SIGSTOP, both files done after {done:.1f} s")
    assert all(d.stop() == 0 for d in nodes.values())


def test_a_node_whose_clock_is_five_minutes_ahead_takes_over_nothing(two_nodes, clockstep, tmp_path):
    """Before: leases were written and compared on each node's clock, and a node 5 minutes ahead
    took over every job the other claimed within 0.5 s. Now every lease is the server's now()."""
    offset = tmp_path / "offset"
    offset.write_text("300")
    skewed = {"LD_PRELOAD": str(clockstep), "CLOCKSTEP_FILE": str(offset)}
    nodes = two_nodes(fake_workers=True, lease_seconds=10, max_workers=1, env={"a": skewed})
    assert inbox_holder(nodes["b"]) == "a"  # started first; the node that looked after leases (before)
    for i in range(4):
        (nodes["a"].inbox / f"talk{i}.wav").write_text(json.dumps({"runs": [{"seconds": 3}], "n": i}))
    jobs = nodes["a"].wait_all_final(4, timeout=120)
    text = events_of(nodes["a"])
    assert "stopped renewing its lease" not in text and all(j.attempts == 1 for j in jobs), text
    assert {j.node for j in jobs} == {"a", "b"}, text  # both nodes worked
    assert_each_file_once(nodes["a"], 4)
    assert all(d.stop() == 0 for d in nodes.values())


def test_a_node_on_another_state_root_refuses_to_start(postgres_server, models_cache, tmp_path):
    """Before: node b with its own state_dir on the same database started, took jobs into its own
    outbox and, once it held the inbox role, left the real inbox unread. Now it refuses to start."""
    dsn = postgres_server.new_database()
    a = Daemon(tmp_path / "var", models_cache, fake_workers=True, store=dsn, node_id="a").start()
    b = Daemon(tmp_path / "elsewhere", models_cache, fake_workers=True, store=dsn, node_id="b").start(wait=False)
    try:
        assert b.proc.wait(timeout=60) == 1
        text = b.log.read_text()
        assert f"state_dir {tmp_path / 'elsewhere'} is not the state root of the job store" in text, text
        assert "Set state_dir to the shared folder the other nodes use" in text
        assert [n.node for n in a.store.nodes()] == ["a"]  # b never registered
        (a.inbox / "talk.wav").write_text(json.dumps({"runs": [{"seconds": 0.2}]}))
        assert a.wait_all_final(1, timeout=60)[0].state == "succeeded"
        assert a.stop() == 0
    finally:
        for daemon in (a, b):
            if daemon.proc.poll() is None:
                daemon.kill9()


def test_a_publication_delayed_past_the_lease_converges_to_one_success(two_nodes, tmp_path):
    """The node that ran the job passes the fence of its publication, then its rename waits 20 s
    (a hard NFS mount, a pause); the lease runs out and the other node runs the job again, and
    that run fails. Before: the late node published and moved the original to done/ after losing
    the lease, and the job ended failed with a valid published transcript. Now: the late node
    publishes but leaves the original; the holder finds the published folder and records success."""
    flag = tmp_path / "delay"
    flag.write_text("20")
    nodes = two_nodes(fake_workers=True, lease_seconds=10, max_workers=1, delay=flag)
    probe = nodes["a"]
    (probe.inbox / "talk.wav").write_text(json.dumps({"runs": [{"seconds": 0.5}, {"seconds": 18, "exit": 2}]}))
    first = wait_until(lambda: [j for j in probe.jobs("running") if j.attempts == 1], 30, "the first run")[0]
    late = first.node
    wait_until(lambda: any(e.kind == "claimed" and e.data.get("generation") == 2
                           for e in probe.store.events(first.id)), 40, lambda: f"a take-over\n{logs(nodes)}")
    holder = probe.store.get(first.id).node
    # the late node wakes mid-run of the new holder: it may publish, never move the original
    wait_until(lambda: list(probe.outbox.iterdir()), 30, lambda: f"the late publication\n{logs(nodes)}")
    assert probe.store.get(first.id).state == "running" and not list((probe.root / "done").iterdir())
    job = probe.wait_all_final(1, timeout=60)[0]
    assert job.state == "succeeded", events_of(probe)
    assert_each_file_once(probe, 1)
    assert not (probe.root / "failed").exists() or not list((probe.root / "failed").iterdir())
    assert "the original is left to that node" in nodes[late].log.read_text()
    print(f"\nlate node {late}, holder {holder}: one success, one outbox folder, original in done/ once")
    assert all(d.stop() == 0 for d in nodes.values())


def test_a_node_paused_while_its_worker_runs_spends_no_attempt(two_nodes):
    """SIGSTOP of a node's supervisor for longer than the lease while its worker goes on renewing the
    lease. On SIGCONT the supervisor must not take its own worker for a silent one: the job ends once,
    in its first attempt, with nothing killed."""
    nodes = two_nodes(fake_workers=True, lease_seconds=10, max_workers=1)
    probe = nodes["a"]
    (probe.inbox / "long.wav").write_text(json.dumps({"runs": [{"seconds": 25}]}))
    job = wait_until(lambda: [j for j in probe.jobs("running") if j.worker_pid], 30, "the job to run")[0]
    paused = nodes[job.node]
    os.kill(paused.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(15)
        assert psutil.pid_exists(job.worker_pid) and probe.store.get(job.id).node == job.node
    finally:
        os.kill(paused.proc.pid, signal.SIGCONT)
    done = probe.wait_all_final(1, timeout=60)[0]
    assert done.state == "succeeded" and done.attempts == 1 and done.node == job.node, events_of(probe)
    assert not [e for e in probe.store.events(job.id) if e.kind in ("killed", "lease_lost", "requeued")]
    assert_each_file_once(probe, 1)
    assert all(d.stop() == 0 for d in nodes.values())


def test_a_partitioned_node_pauses_loses_its_jobs_and_rejoins_without_duplicates(postgres_server, models_cache,
                                                                                 tmp_path):
    """Node a reaches the database over a link the test cuts (tests/support/netpath.py: a network
    namespace and a veth pair); node b over the unix socket. Before: the server kept a cut-off
    node's session, and so the inbox role, for TCP's two hours, and a's calls had no timeout."""
    from tests.support.netpath import NetPath

    path = NetPath(postgres_server.socket).start()
    a = b = None
    try:
        local = postgres_server.new_database()
        over_link = path.dsn(local.split("@/", 1)[1].split("?")[0])
        root = tmp_path / "var"
        a = Daemon(root, models_cache, fake_workers=True, store=over_link, node_id="a", lease_seconds=10,
                   max_workers=2).start()
        b = Daemon(root, models_cache, fake_workers=True, store=local, node_id="b", lease_seconds=10,
                   max_workers=2).start()
        for i in range(4):
            (b.inbox / f"talk{i}.wav").write_text(json.dumps({"runs": [{"seconds": 15}], "n": i}))
        wait_until(lambda: running_on(b, "a"), 30, lambda: f"node a to run a job\n{events_of(b)}")
        path.cut()
        cut = time.monotonic()
        wait_until(lambda: inbox_holder(b) == "b", 40, "node b to take the inbox")
        took_inbox = time.monotonic() - cut
        wait_until(lambda: "paused: cannot write the store" in a.log.read_text(), 60, "node a to pause")
        paused = time.monotonic() - cut
        wait_until(lambda: not running_on(b, "a"), 60, lambda: f"a's jobs taken over\n{events_of(b)}")
        path.heal()
        healed = time.monotonic()
        wait_until(lambda: "resumed" in a.log.read_text(), 60, lambda: f"node a to resume\n{a.log.read_text()[-3000:]}")
        rejoined = time.monotonic() - healed
        (b.inbox / "after.wav").write_text(json.dumps({"runs": [{"seconds": 1}]}))
        b.wait_all_final(5, timeout=120)
        assert_each_file_once(b, 5)
        print(f"\npartition: b took the inbox {took_inbox:.1f} s after the cut, a paused after {paused:.1f} s; "
              f"a resumed {rejoined:.1f} s after the heal")
        assert a.stop() == 0 and b.stop() == 0
    finally:
        for daemon in (a, b):
            if daemon is not None and daemon.proc.poll() is None:
                daemon.kill9()
        path.stop()
