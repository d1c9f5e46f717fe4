"""Run the real daemon as a process, the way systemd would, and watch it through the store."""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import psutil

from diarized.store import open_store


def worker_pids(root: Path | None = None) -> set[int]:
    """Real and fake workers alike: of the daemon on `root`, or of every daemon on the machine."""
    pids = set()
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "diarized.worker" in cmd or any(part.endswith("fake_worker.py") for part in cmd):
            if root is None or any(str(root) in part for part in cmd):
                pids.add(proc.pid)
    return pids


def wait_until(predicate: Callable[[], object], timeout: float, what: str | Callable[[], str],
               every: float = 0.2):
    """`what` may be a function: it is asked at the time-out (e.g. for the log as it is then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what() if callable(what) else what}")


FAKE_DAEMON = Path(__file__).parent / "support" / "fake_daemon.py"


def script(name: str, **run) -> bytes:
    """A file that tells fake_worker.py what to do: one run, exiting 0 (after `seconds`, if given)."""
    return json.dumps({"runs": [{"exit": 0, **run}], "name": name}).encode()


class Service:
    """A diarized process the way systemd would run it: output appended to `log`, SIGTERM to stop."""

    log: Path
    env: dict
    proc: subprocess.Popen | None = None
    stop_timeout: float = 60

    def spawn(self, command: list[str], **popen) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, **popen)

    def stop(self, timeout: float | None = None) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout or self.stop_timeout)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Daemon(Service):
    """`diarized run` on a temporary state root with the small bundled model.

    fake_workers=True runs the same daemon with tests/support/fake_worker.py as
    its worker: no model is loaded, so scheduling and crash tests take seconds.
    With node_id= and store= (PostgreSQL), several Daemons on one root act as the
    nodes of one service; each has its own log and runtime folder.
    """

    def __init__(self, root: Path, cache: Path, fake_workers: bool = False,
                 user: tuple[int, int] | None = None, chaos: str | None = None, **settings):
        self.root = root
        self.fake_workers = fake_workers
        self.user = user  # (uid, gid) to run as; None: as the test runner
        self.chaos = chaos  # fake_daemon.py --chaos SEED:PROBABILITY:LOG
        self.delay_publication: Path | None = None  # fake_daemon.py --delay-publication FILE
        node = settings.get("node_id")
        self.env = {**os.environ, "DIARIZED_CONFIG": "", "DIARIZED_CACHE_DIR": str(cache),
                    "DIARIZED_MODEL": "tiny.en", "DIARIZED_SETTLE_SECONDS": "1",
                    "DIARIZED_RESCAN_SECONDS": "1", "DIARIZED_RETRY_BACKOFF_SECONDS": "1",
                    "DIARIZED_LOG_FORMAT": "json", "HF_HUB_OFFLINE": "1",
                    "XDG_RUNTIME_DIR": str(root.parent / (f"run-{node}" if node else "run"))}
        self.env.update({f"DIARIZED_{k.upper()}": str(v) for k, v in settings.items()})
        self.proc: subprocess.Popen | None = None
        self.node = node
        self.store_location = settings.get("store") or str(root / "state/diarized.db")
        self.inbox = root / "inbox"
        self.outbox = root / "outbox"
        self.log = root / (f"daemon-{node}.log" if node else "daemon.log")

    def start(self, wait: bool = True) -> "Daemon":
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:
            os.chown(self.root, *self.user)
        command = [sys.executable, str(FAKE_DAEMON)] if self.fake_workers else \
            [sys.executable, "-m", "diarized.cli.daemon", "run"]
        if self.chaos:
            command += ["--chaos", self.chaos]
        if self.delay_publication:
            command += ["--delay-publication", str(self.delay_publication)]
        uid, gid = self.user or (None, None)
        self.spawn([*command, "--state-dir", str(self.root)], user=uid, group=gid,
                   extra_groups=[] if uid is not None else None)
        if wait:
            wait_until(lambda: self.store_ready(), 60, "the daemon to start")
        return self

    def store_ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log.read_text()}")
        if "://" not in self.store_location and not Path(self.store_location).exists():
            return False
        from psycopg.errors import UndefinedTable

        try:
            nodes = self.store.nodes()
        except (sqlite3.OperationalError, UndefinedTable):  # the daemon is still creating the schema
            return False
        return any(n.pid == self.proc.pid and n.state == "running" for n in nodes)

    @property
    def store(self):
        if self._store is None or "://" not in self.store_location:
            self._store = open_store(self.store_location, readonly=True)
        return self._store

    _store = None  # one pooled PostgreSQL store per Daemon; SQLite files are opened afresh

    def drop(self, source: Path, name: str | None = None, sub: str = "") -> Path:
        """Copy like an operator's `cp`: written in place, then closed."""
        target = self.inbox / sub / (name or source.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        return target

    def failed_report(self, stem: str, timeout: float = 10) -> dict:
        """failed/<stem>/error.json: the store says failed or cancelled first, then the files move."""
        path = self.root / "failed" / stem / "error.json"
        wait_until(path.exists, timeout, f"{path} to be written")
        return json.loads(path.read_text())

    def jobs(self, *states: str):
        return self.store.jobs(states=states or None)

    def wait_all_final(self, count: int, timeout: float = 300):
        def done():
            jobs = self.jobs()
            return len(jobs) >= count and all(
                j.state in ("succeeded", "failed", "cancelled", "duplicate") for j in jobs) and jobs
        return wait_until(done, timeout, lambda: f"{count} jobs to finish: "
                          f"{[(j.source_name, j.state) for j in self.jobs()]}\n{self.log.read_text()[-3000:]}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiServer(Service):
    """`diarized api` as a real uvicorn process on a free loopback port (or a unix socket)."""

    stop_timeout = 30

    def __init__(self, root: Path, tokens: list[str] = (), listen: str | None = None,
                 descriptors: int | None = None, config: Path | None = None, **settings):
        self.root = root
        self.config = config  # a config file (its api_tokens are used, read again when it changes)
        self.descriptors = descriptors  # a hard RLIMIT_NOFILE for the process (a unit without LimitNOFILE)
        self.listen = listen or f"127.0.0.1:{free_port()}"
        self.env = {**os.environ, "DIARIZED_CONFIG": "", "DIARIZED_API_TOKENS": ",".join(tokens),
                    "DIARIZED_LOG_FORMAT": "json", "XDG_RUNTIME_DIR": str(root.parent / "run")}
        self.env.update({f"DIARIZED_{k.upper()}": str(v) for k, v in settings.items()})
        if config is not None:
            del self.env["DIARIZED_API_TOKENS"]
        self.log = root.parent / f"api-{self.listen.replace('/', '_')}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return "http://api" if self.listen.startswith("unix:") else f"http://{self.listen}"

    def client(self, token: str | None = None, **kw):
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = httpx.HTTPTransport(uds=self.listen[5:]) if self.listen.startswith("unix:") else None
        return httpx.Client(base_url=self.url, headers=headers, transport=transport, timeout=60, **kw)

    def start(self, wait: bool = True) -> "ApiServer":
        self.root.mkdir(parents=True, exist_ok=True)
        limit = self.descriptors
        self.spawn([sys.executable, "-m", "diarized.cli.daemon", "api", "--state-dir", str(self.root),
                    "--listen", self.listen, *(["--config", str(self.config)] if self.config else [])],
                   preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))) if limit else None)
        if wait:
            wait_until(self._healthy, 60, lambda: f"the API to answer:\n{self.log.read_text()}")
        return self

    def _healthy(self) -> bool:
        import httpx

        if self.proc.poll() is not None:
            raise AssertionError(f"api exited with {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            with self.client() as client:
                return client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

