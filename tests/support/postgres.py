"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster, a unix socket.

initdb refuses to run as root, so the cluster belongs to `nobody`; it listens on no
TCP port at all, only on a socket in its own temporary folder, with trust
authentication for that socket, and is stopped at the end of the session.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def postgres_bin() -> Path | None:
    """The newest installed /usr/lib/postgresql/<version>/bin (Debian's layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    def __init__(self, uid: int, gid: int):
        binaries = postgres_bin()
        if binaries is None:
            raise RuntimeError("PostgreSQL is not installed: `make system-deps` installs Debian's postgresql")
        self.bin, self.uid, self.gid = binaries, uid, gid
        self.root = Path(tempfile.mkdtemp(prefix="diarized-pg-", dir="/tmp"))
        os.chown(self.root, uid, gid)
        self.data, self.socket = self.root / "data", self.root
        self.names = itertools.count(1)

    def _run(self, *args: str) -> None:
        subprocess.run([str(a) for a in args], check=True, capture_output=True, user=self.uid, group=self.gid,
                       cwd=self.root, timeout=120)

    def start(self) -> "PostgresServer":
        self._run(self.bin / "initdb", "-D", self.data, "--auth=trust", "-U", "postgres", "-E", "UTF8")
        self.resume()
        return self

    def halt(self) -> None:
        """Stop the server, cluster kept (a database outage); every session ends at once."""
        self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        self._run(self.bin / "pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-w", "start",
                  "-o", f"-k {self.socket} -c listen_addresses='' -c fsync=off")

    def stop(self) -> None:
        try:
            self.halt()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket}"

    def new_database(self) -> str:
        """A fresh, empty database for one test; returns its DSN."""
        import psycopg

        name = f"diarized_test_{next(self.names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)
