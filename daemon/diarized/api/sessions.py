"""Dashboard sessions: log in once with an API token, then a signed HttpOnly SameSite=Strict cookie.

The cookie holds the token's name and scope, a CSRF secret and an expiry,
signed with HMAC-SHA256 under a key kept in state/dashboard.key (0600), so
sessions survive restarts of the API. It never holds the token. Each request
checks that a token with that name and scope is still configured: removing a
token from api_tokens ends its sessions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from diarized.api.auth import Principal, Scope, Tokens

COOKIE = "diarized_session"
LOGIN_COOKIE = "diarized_login"  # the login form's own CSRF secret, before there is a session
MAX_AGE = 12 * 3600


@dataclass(frozen=True)
class Session:
    name: str
    scope: Scope
    csrf: str
    expires: float

    @property
    def principal(self) -> Principal:
        return Principal(self.name, self.scope)

    @property
    def scope_name(self) -> str:
        return self.scope.name.lower()

    @property
    def can_submit(self) -> bool:
        return self.scope >= Scope.SUBMIT


def load_key(path: Path) -> bytes:
    """The signing key, made once (O_EXCL: two API processes starting together agree on one)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
        path.unlink()  # a key cut short by a crash: make a new one (old sessions end)
        return load_key(path)
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
        fh.flush()
        os.fsync(fh.fileno())
    return key


class Sessions:
    def __init__(self, key: bytes, tokens: Tokens, max_age: float = MAX_AGE):
        self.key, self.tokens, self.max_age = key, tokens, max_age

    def open(self, token: str) -> tuple[Session, str] | None:
        """A new session for a valid token: (session, cookie value); None for a wrong token."""
        principal = self.tokens.check(token)
        if principal is None:
            return None
        session = Session(principal.name, principal.scope, secrets.token_urlsafe(24), time.time() + self.max_age)
        body = base64.urlsafe_b64encode(json.dumps(
            [session.name, int(session.scope), session.csrf, session.expires]).encode()).decode()
        return session, f"{body}.{self._mac(body)}"

    def read(self, cookie: str | None) -> Session | None:
        if not cookie or "." not in cookie:
            return None
        body, mac = cookie.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            name, scope, csrf, expires = json.loads(base64.urlsafe_b64decode(body))
            session = Session(name, Scope(scope), csrf, float(expires))
        except (ValueError, TypeError):
            return None
        if session.expires < time.time() or not self.tokens.has(session.principal):
            return None
        return session

    def _mac(self, body: str) -> str:
        return hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two CSRF values; a missing one never matches."""
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())
