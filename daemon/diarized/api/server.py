"""Running the API: where it listens (TCP, a unix socket, or a socket systemd passed in) and when it refuses.

Sockets are bound here rather than by uvicorn, so a unix socket gets mode
0660 (uvicorn would make it 0666, letting every local user in) and a socket
from systemd's socket activation (LISTEN_FDS) is used as it is.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from diarized.config import Settings

log = logging.getLogger("diarized.api")
SD_LISTEN_FDS_START = 3


class Refused(RuntimeError):
    """The API will not start this way; the message says why and what to do."""


@dataclass(frozen=True)
class Listen:
    host: str | None = None
    port: int | None = None
    path: Path | None = None  # a unix socket
    systemd: bool = False  # sockets passed by systemd (LISTEN_FDS)

    @classmethod
    def parse(cls, text: str) -> "Listen":
        if text.startswith("unix:"):
            return cls(path=Path(text[5:]))
        host, _, port = text.rpartition(":")
        return cls(host=host.strip("[]"), port=int(port))

    @property
    def local_only(self) -> bool:
        return self.path is not None

    def __str__(self) -> str:
        if self.systemd:
            return "sockets from systemd"
        return f"unix:{self.path}" if self.path else f"http://{self.host}:{self.port}"


def systemd_sockets(env: dict | None = None) -> list[socket.socket]:
    """Sockets systemd passed (sd_listen_fds), or none."""
    env = os.environ if env is None else env
    if env.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(env.get("LISTEN_FDS", "0"))
    return [socket.socket(fileno=SD_LISTEN_FDS_START + n) for n in range(count)]


def bind(listen: Listen) -> socket.socket:
    if listen.path is not None:
        if listen.path.exists() and stat.S_ISSOCK(listen.path.stat().st_mode):
            listen.path.unlink()  # a socket left by a killed server
        listen.path.parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(listen.path))
        os.chmod(listen.path, 0o660)  # the service's user and group only
    else:
        family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
        # proto given: asyncio sets TCP_NODELAY only on connections whose proto says TCP; with
        # proto 0 every keep-alive response waited 40 ms for a delayed ACK (Nagle)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((listen.host, listen.port))
    sock.listen(2048)
    return sock


def check_access(settings: Settings, local_only: bool, where: str) -> bool:
    """Whether requests need a token; refuses a network listener without any configured."""
    if settings.api_tokens:
        return True
    if local_only:
        return False
    raise Refused(f"no api_tokens are configured, so the API would be open to anyone who can reach "
                  f"{where}: run `diarizectl token new NAME` and add the entry it prints to api_tokens, "
                  "or listen on a unix socket (--listen unix:/run/diarized/api.sock)")


def serve(settings: Settings, listen_text: str | None = None, config_file: Path | None = None) -> None:
    """Run until SIGTERM/SIGINT (uvicorn handles both and finishes requests in flight); SIGHUP
    reads api_tokens again (uvicorn leaves it alone; its default action would end the process)."""
    import uvicorn

    from diarized.api.app import create_app
    from diarized.api.connections import connection_bound, guarded_protocol, raise_descriptor_limit

    sockets = systemd_sockets()
    listen = Listen(systemd=True) if sockets else Listen.parse(listen_text or settings.api_listen)
    local_only = all(s.family == socket.AF_UNIX for s in sockets) if sockets else listen.local_only
    require = check_access(settings, local_only, str(listen))
    if not sockets:
        sockets = [bind(listen)]
    app = create_app(settings, require_tokens=require, config_file=config_file)
    signal.signal(signal.SIGHUP, lambda _signum, _frame: app.state.tokens.request_reload())
    bound = connection_bound(settings.api_max_connections, raise_descriptor_limit())
    log.info("diarized api on %s (%s; at most %d connections)", listen,
             "tokens required" if require else "unix socket permissions", bound)
    config = uvicorn.Config(app, log_level="info", access_log=True, timeout_graceful_shutdown=10,
                            server_header=False, timeout_keep_alive=5,
                            http=guarded_protocol(settings.api_header_timeout_seconds, bound))
    try:
        uvicorn.Server(config).run(sockets=sockets)
    finally:
        if listen.path is not None:
            listen.path.unlink(missing_ok=True)
