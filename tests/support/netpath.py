"""A network path to the test PostgreSQL server that a test can cut, as a partition would.

The server listens on a unix socket only (postgres.py). NetPath makes a network namespace
joined to this one by a veth pair (10.231.N.1 here, 10.231.N.2 there) and runs, inside it,
a TCP proxy from 10.231.N.2:5432 to that socket. A node given dsn() reaches the server over
the veth; cut() takes the link down (packets are lost, nothing is refused: the node learns
only from its own timeouts), heal() brings it back. The proxy's accepted sockets carry the
keepalives and TCP_USER_TIMEOUT the daemon asks the server for (store/postgres.py), and it
closes the server side when the client side dies, as the server itself would on TCP.

    python tests/support/netpath.py serve HOST PORT UNIX_SOCKET   (the proxy; run by NetPath)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

PORT = 5432


class NetPath:
    def __init__(self, unix_socket: Path, index: int = 1):
        tag = f"{os.getpid() % 10000}{index}"
        self.ns, self.here, self.there = f"dz{tag}", f"dzh{tag}", f"dzn{tag}"
        self.host, self.peer = f"10.231.{index}.1", f"10.231.{index}.2"
        self.unix_socket = unix_socket
        self.proxy: subprocess.Popen | None = None

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def start(self) -> "NetPath":
        self._ip("netns", "add", self.ns)
        self._ip("link", "add", self.here, "type", "veth", "peer", "name", self.there)
        self._ip("link", "set", self.there, "netns", self.ns)
        self._ip("addr", "add", f"{self.host}/30", "dev", self.here)
        self._ip("link", "set", self.here, "up")
        self._ip("-n", self.ns, "addr", "add", f"{self.peer}/30", "dev", self.there)
        self._ip("-n", self.ns, "link", "set", self.there, "up")
        self._ip("-n", self.ns, "link", "set", "lo", "up")
        self.proxy = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, __file__, "serve", self.peer,
                                       str(PORT), str(self.unix_socket)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.peer, PORT), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the proxy in the network namespace did not start")

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@{self.peer}:{PORT}/{database}"

    def cut(self) -> None:
        self._ip("link", "set", self.here, "down")

    def heal(self) -> None:
        self._ip("link", "set", self.here, "up")

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.kill()
            self.proxy.wait()
        subprocess.run(["ip", "link", "del", self.here], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    for sock in (source, sink):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


def serve(host: str, port: int, unix_socket: str) -> None:
    listener = socket.create_server((host, port))
    while True:
        client, _ = listener.accept()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 5)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 2)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 15000)
        server = socket.socket(socket.AF_UNIX)
        server.connect(str(Path(unix_socket) / f".s.PGSQL.{PORT}"))
        threading.Thread(target=_pump, args=(client, server), daemon=True).start()
        threading.Thread(target=_pump, args=(server, client), daemon=True).start()


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
