"""Bearer tokens: only their sha256 is configured; a check compares against every one in constant time.

Entries in api_tokens are "name:scope:sha256hex". A token is 32 random bytes,
so a plain sha256 is enough (no salt or slow hash is needed for a secret that
cannot be guessed); only `diarizectl token new` ever sees it, once.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger("diarized.api")

TOKEN_PREFIX = "dz_"


class Scope(enum.IntEnum):
    """What a token may do; a higher scope includes the lower ones."""

    READ = 1
    SUBMIT = 2


@dataclass(frozen=True)
class Principal:
    name: str
    scope: Scope


def new_token(name: str, scope: str) -> tuple[str, str]:
    """(the token to hand out, the api_tokens entry to configure)."""
    if not name or ":" in name or "," in name:
        raise ValueError("a token name is a word without ':' or ',' (who or what uses it)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, f"{name}:{Scope[scope.upper()].name.lower()}:{digest(token)}"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def token_tag(token: str) -> str:
    """The first 64 bits of the token's sha256: names this token in a session, reveals nothing usable."""
    return digest(token)[:16]


class Tokens:
    def __init__(self, entries: tuple[str, ...]):
        self.entries = []
        for entry in entries:
            name, scope, hexdigest = parse_entry(entry)
            self.entries.append((bytes.fromhex(hexdigest), Principal(name, Scope[scope.upper()])))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def has(self, principal: Principal, tag: str) -> bool:
        """Is this token (name, scope and hash tag) still configured? A session outlives no token,
        and a rotated one (a new hash under the same name) ends the old token's sessions."""
        return bool(tag) and any(p == principal and hmac.compare_digest(expected.hex()[:len(tag)], tag)
                                 for expected, p in self.entries)

    def check(self, token: str) -> Principal | None:
        """The token's owner, or None. Every entry is compared, so timing says nothing."""
        given = bytes.fromhex(digest(token))
        found = None
        for expected, principal in self.entries:
            if hmac.compare_digest(given, expected):
                found = principal
        return found


def parse_entry(entry: str) -> tuple[str, str, str]:
    """(name, scope, sha256 hex) of an api_tokens entry (config.py has checked its shape)."""
    name, scope, hexdigest = entry.split(":")
    return name, scope, hexdigest


class ReloadingTokens:
    """The configured tokens, read again when the config file changes or on SIGHUP, without a restart.

    `load` reads api_tokens from the config (file and environment) as at start. The file is looked at
    (one stat) at most every `every` seconds, on the request that comes after; a file that cannot be
    read or is invalid keeps the tokens as they were (logged), and is tried again until it loads. A
    revoked token fails its next request and ends its dashboard sessions (Sessions asks `has`).
    """

    def __init__(self, load: Callable[[], tuple[str, ...]], watch: Path | None, every: float = 1.0):
        self.load, self.watch, self.every = load, watch, every
        self.lock = threading.Lock()
        self.tokens = Tokens(load())
        self.seen = self._signature()
        self.looked = time.monotonic()
        self.requested = False  # SIGHUP: reload at the next request whatever the file says
        self.failed: tuple[int, int, int] | None = None  # a file version that did not load (logged once)

    def request_reload(self) -> None:
        """For a signal handler: only sets a flag (no lock, no I/O in a handler)."""
        self.requested = True

    def current(self) -> Tokens:
        now = time.monotonic()
        if self.requested or (self.watch is not None and now - self.looked >= self.every):
            with self.lock:
                self._maybe_reload(now)
        return self.tokens

    def _maybe_reload(self, now: float) -> None:
        self.looked = now
        signature = self._signature()
        if not self.requested and signature in (self.seen, self.failed):
            return
        self.requested = False
        try:
            tokens = Tokens(self.load())
        except Exception as exc:  # noqa: BLE001 - a bad edit must not lock everyone out
            log.error("api_tokens not reloaded (fix %s; the previous tokens stay): %s", self.watch, exc)
            self.failed = signature
            return
        names = sorted({p.name for _, p in tokens.entries})
        log.info("api_tokens reloaded from %s: %d token(s) (%s)", self.watch or "the environment",
                 len(tokens.entries), ", ".join(names) or "none")
        self.tokens, self.seen = tokens, signature

    def _signature(self) -> tuple[int, int, int] | None:
        if self.watch is None:
            return None
        try:
            st = os.stat(self.watch)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    # the Tokens interface, on the current set
    def __bool__(self) -> bool:
        return bool(self.current())

    def has(self, principal: Principal, tag: str) -> bool:
        return self.current().has(principal, tag)

    def check(self, token: str) -> Principal | None:
        return self.current().check(token)
