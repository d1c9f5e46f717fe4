"""Finding a job among 100,000: the jobs page, search and GET /jobs?q= timed, and the query plans, on both stores.

    python -m bench.search_scale [--jobs 100000] [--requests 60] [--out FILE]

Fills a SQLite store, and a PostgreSQL one on a temporary server (Debian's binaries,
tests/support/postgres.py), with N finished jobs, each with a 40-word transcript
drawn from a vocabulary with a few rare words, bulk-inserted in the shape the
store writes them. Then runs the dashboard and the API in this process (Starlette's
test client) and times each page by the server's own Server-Timing header
(app;dur=: time before the body streams): the jobs page, a search for a common
word and for a rare one, with filters, and the API's search. Reports p50/p95 per
page and backend, and EXPLAIN of each search statement. Writes a JSON file.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

from diarized.config import load_settings
from diarized.store import JobQuery, open_store

RESULTS = Path(__file__).parent / "results"
WORDS = ("budget meeting library energy project report school council market river garden music health "
         "question answer minute hour water power street house family friend student teacher city").split()
RARE = ("zeppelin", "quasar", "marimba")
SPEAKERS = ("Ana Souza", "Bruno Lima", "Carla Dias", "Davi Rocha")


def rows(jobs: int, seed: int = 7):
    """(job row, text row) pairs, the newest last; one job in 10,000 says a rare word."""
    rng = random.Random(seed)
    start = time.time() - jobs * 60
    for n in range(jobs):
        said = " ".join(rng.choice(WORDS) for _ in range(40))
        if n % 10_000 == 5:
            said += " " + RARE[n // 10_000 % len(RARE)]
        speakers = rng.sample(SPEAKERS, 2)
        found = json.dumps([{"label": f"SPEAKER_0{i}", "name": s, "seconds": 30.0} for i, s in enumerate(speakers)])
        job_id = f"20260101-{n:06d}-{n % 0xffffff:06x}"
        at = start + n * 60
        yield ((job_id, f"recording-{n:06d}.mp4", f"{n:064x}", 1000, 2, "succeeded", 1, 3, 1.0, 600.0, at, at + 30,
                at + 100, at + 100, 0.0, "pt" if n % 3 else "en", 0.95, 40, found, "base", 70.0, 0),
               (job_id, f"recording-{n:06d}.mp4", " ".join(speakers), said))


JOB_COLUMNS = ("id, source_name, sha256, size, priority, state, attempts, max_attempts, progress, duration, "
               "created_at, started_at, finished_at, updated_at, not_before, language, language_probability, "
               "word_count, speakers_found, model, processing_seconds, cancel_requested")


def fill(store, jobs: int) -> float:
    started = time.monotonic()
    batch: list = []
    with store.transaction() as conn:
        for job, text in rows(jobs):
            batch.append((job, text))
            if len(batch) == 5000:
                _insert(store, conn, batch)
                batch = []
        _insert(store, conn, batch)
    return time.monotonic() - started


def _insert(store, conn, batch: list) -> None:
    if not batch:
        return
    marks = ",".join("?" * len(batch[0][0]))
    cursor = conn.cursor()
    sql = lambda s: re.sub(r"\?", "%s", s) if "postgres" in type(store).__name__.lower() else s  # noqa: E731
    cursor.executemany(sql(f"INSERT INTO jobs ({JOB_COLUMNS}) VALUES ({marks})"), [j for j, _ in batch])
    cursor.executemany(sql("INSERT INTO job_text (job_id, name, speakers, body) VALUES (?, ?, ?, ?)"),
                       [t for _, t in batch])


QUERIES = {  # page -> (dashboard path or API path, JobQuery for EXPLAIN)
    "jobs page": ("/ui/jobs", JobQuery(limit=51)),
    "search, a common word": ("/ui/jobs?q=budget", JobQuery(text="budget", limit=51)),
    "search, a rare word": ("/ui/jobs?q=zeppelin", JobQuery(text="zeppelin", limit=51)),
    "search + filters": ("/ui/jobs?q=library&language=en&speaker=ana&sort=oldest",
                         JobQuery(text="library", language="en", speaker="ana", sort="oldest", limit=51)),
    "a later page": ("/ui/jobs?offset=5000", JobQuery(limit=51, offset=5000)),
    "GET /jobs?q=": ("/jobs?q=river+garden&limit=50", JobQuery(text="river garden", limit=51)),
}


def explain(store, query: JobQuery) -> list[str]:
    sql, params = store.search_sql(query)
    postgres = "postgres" in type(store).__name__.lower()
    prefix = "EXPLAIN ANALYZE " if postgres else "EXPLAIN QUERY PLAN "
    with store.reading() as conn:
        found = store._x(conn, prefix + sql, params).fetchall()
    return [row[0] if postgres else row[-1] for row in found]


def timed_pages(settings, requests: int) -> dict:
    from starlette.testclient import TestClient

    from diarized.api.app import create_app
    from diarized.api.auth import new_token

    token, entry = new_token("bench", "read")
    app = create_app(settings.__class__(**{**settings.__dict__, "api_tokens": (entry,)}), send_webhooks=False)
    report = {}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        form = client.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        client.post("/ui/login", data={"csrf": csrf, "token": token, "next": "/ui/"})
        for name, (path, _) in QUERIES.items():
            headers = {"Authorization": f"Bearer {token}"} if path.startswith("/jobs") else {}
            times = []
            for _ in range(requests):
                answer = client.get(path, headers=headers)
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:200])
                times.append(float(answer.headers["server-timing"].split("dur=")[1]))
            times.sort()
            report[name] = {"path": path, "p50_ms": round(statistics.median(times), 1),
                            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1), "requests": requests}
    return report


def backend(settings, jobs: int, requests: int) -> dict:
    store = open_store(settings.store_location)
    filled = fill(store, jobs)
    if "postgres" in type(store).__name__.lower():
        with store.transaction() as conn:
            conn.execute("ANALYZE")
    plans = {name: explain(store, query) for name, (_, query) in QUERIES.items()}
    store.close()
    return {"fill_seconds": round(filled, 1), "pages": timed_pages(settings, requests), "plans": plans}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search_scale")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    result = {"jobs": args.jobs, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="diarized-search-") as tmp:
        settings = load_settings(None, {"state_dir": Path(tmp) / "sqlite"}, env={})
        settings.db_path.parent.mkdir(parents=True)
        result["backends"]["sqlite"] = backend(settings, args.jobs, args.requests)
        if not args.no_postgres:
            result["backends"]["postgresql"] = postgres(Path(tmp), args.jobs, args.requests)
    out = args.out or RESULTS / f"search-scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for name, found in result["backends"].items():
        for page, figures in found["pages"].items():
            print(f"{name:10} {page:24} p50 {figures['p50_ms']:7.1f} ms  p95 {figures['p95_ms']:7.1f} ms")
    print(f"wrote {out}")


def postgres(tmp: Path, jobs: int, requests: int) -> dict:
    import pwd

    from tests.support.postgres import PostgresServer

    nobody = pwd.getpwnam("nobody")
    server = PostgresServer(nobody.pw_uid, nobody.pw_gid).start()
    try:
        dsn = server.new_database()
        settings = load_settings(None, {"state_dir": tmp / "postgres", "store": dsn}, env={})
        settings.db_path.parent.mkdir(parents=True, exist_ok=True)
        return backend(settings, jobs, requests)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
