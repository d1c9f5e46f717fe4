"""Three nodes on one PostgreSQL store and one state root; a random node is killed with -9 every
10-20 s for NODES_CHAOS_SECONDS (90 s in `make test`, 3 minutes in `make chaos`) and started
again 0-15 s later (after its 10-s leases ran out, at times), while 40 files go through.

Afterwards every file is in the outbox exactly once, in one job that succeeded once, with one
notification; none failed. Fake workers (the store, the leases and the take-overs are the
point), real daemons, a real PostgreSQL server, real signals.
"""

from __future__ import annotations

import json
import os
import random
import time

import pytest

from tests.harness import Daemon
from tests.test_nodes import assert_each_file_once, events_of

pytestmark = pytest.mark.chaos

NAMES = ("a", "b", "c")
FILES = 40
SECONDS = float(os.environ.get("NODES_CHAOS_SECONDS", "90"))  # make chaos: 180
SEED = int(os.environ.get("CHAOS_SEED", "20261201"))


def test_three_nodes_killed_at_random_lose_and_duplicate_nothing(postgres_server, models_cache, tmp_path):
    rng = random.Random(SEED)
    dsn, root = postgres_server.new_database(), tmp_path / "var"
    nodes = {n: Daemon(root, models_cache, fake_workers=True, store=dsn, node_id=n, lease_seconds=10,
                       max_workers=2) for n in NAMES}
    try:
        for daemon in nodes.values():
            daemon.start()
        probe = nodes["a"]
        files = iter(range(FILES))

        def drop(count: int) -> None:  # over the whole window, so jobs run while nodes die
            for _, i in zip(range(count), files):  # range first: zip would drop one from files
                (probe.inbox / f"talk{i:02d}.wav").write_text(
                    json.dumps({"runs": [{"seconds": rng.uniform(3, 10)}], "n": i}))
        drop(10)
        kills, ends = [], time.monotonic() + SECONDS
        while time.monotonic() < ends:
            drop(4)
            time.sleep(rng.uniform(10, 20))
            name = rng.choice(NAMES)
            nodes[name].kill9()
            kills.append(name)
            time.sleep(rng.uniform(0, 15))  # past the 10-s lease at times: the others take its jobs over
            nodes[name].start()
        drop(FILES)
        jobs = probe.wait_all_final(FILES, timeout=300)
        assert {j.state for j in jobs} == {"succeeded"}, events_of(probe)
        assert_each_file_once(probe, FILES)
        taken = sum("stopped renewing its lease" in e.detail for j in jobs for e in probe.store.events(j.id))
        recovered = sum("the daemon stopped while it ran" in e.detail for j in jobs for e in probe.store.events(j.id))
        print(f"\n{len(kills)} kills ({', '.join(kills)}): {taken} jobs taken over by another node, {recovered} "
              f"requeued by their own node's restart; {FILES} files once each")
        assert all(d.stop() == 0 for d in nodes.values())
    finally:
        for daemon in nodes.values():
            if daemon.proc and daemon.proc.poll() is None:
                daemon.kill9()
