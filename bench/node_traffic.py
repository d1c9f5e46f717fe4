"""Transactions per second each node makes on a shared PostgreSQL store, idle and busy.

    python -m bench.node_traffic [--nodes 3] [--seconds 20] [--out FILE]

Starts a real PostgreSQL server (tests/support/postgres.py) and N real daemons as nodes of one
state root (fake workers: the store's traffic is the point, not the models), then counts the
database's committed and rolled-back transactions (pg_stat_database) over a window: first with
every node idle, then with every worker slot busy. The numbers size a database for many nodes
(README, Scaling out); they are counts, not timings, so a busy machine changes them little.
"""

from __future__ import annotations

import argparse
import json
import pwd
import tempfile
import time
from pathlib import Path

from tests.harness import Daemon, wait_until
from tests.support.postgres import PostgresServer

RESULTS = Path(__file__).parent / "results"
MAX_WORKERS = 2


def transactions(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                            "WHERE datname = current_database()").fetchone()[0]


def rate(dsn: str, seconds: float) -> float:
    """Transactions a second over `seconds`, less the two this measurement makes."""
    before = transactions(dsn)
    time.sleep(seconds)
    return (transactions(dsn) - before - 2) / seconds


def measure(tmp: Path, dsn: str, count: int, seconds: float) -> dict:
    cache = tmp / "models"
    nodes = [Daemon(tmp / "var", cache, fake_workers=True, store=dsn, node_id=f"n{i}", max_workers=MAX_WORKERS)
             for i in range(count)]
    try:
        for node in nodes:
            node.start()
        time.sleep(3)  # start-up writes settle
        idle = rate(dsn, seconds)
        busy_files = count * MAX_WORKERS
        for i in range(busy_files):
            (nodes[0].inbox / f"busy{i}.wav").write_text(json.dumps({"runs": [{"seconds": seconds + 30}], "n": i}))
        wait_until(lambda: len(nodes[0].jobs("running")) == busy_files, 60, "every slot busy")
        time.sleep(2)
        busy = rate(dsn, seconds)
    finally:
        for node in nodes:
            if node.proc and node.proc.poll() is None:
                node.kill9()
    return {"nodes": count, "window_seconds": seconds, "idle_tx_per_s": round(idle, 1),
            "idle_tx_per_s_per_node": round(idle / count, 2), "busy_tx_per_s": round(busy, 1),
            "busy_tx_per_s_per_node": round(busy / count, 2), "workers_per_node": MAX_WORKERS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    nobody = pwd.getpwnam("nobody")
    server = PostgresServer(nobody.pw_uid, nobody.pw_gid).start()
    try:
        with tempfile.TemporaryDirectory(prefix="diarized-traffic-") as tmp:
            result = measure(Path(tmp), server.new_database(), args.nodes, args.seconds)
    finally:
        server.stop()
    out = args.out or RESULTS / f"node-traffic-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{result['nodes']} nodes: idle {result['idle_tx_per_s']} tx/s ({result['idle_tx_per_s_per_node']} a node), "
          f"busy {result['busy_tx_per_s']} tx/s ({result['busy_tx_per_s_per_node']} a node)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
