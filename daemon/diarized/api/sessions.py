"""Dashboard sessions: log in once with an API token, then a signed HttpOnly SameSite=Strict cookie.

The cookie holds the token's name and scope, a tag of its hash, a CSRF secret
and an expiry, signed with HMAC-SHA256 under a key kept in
state/keys/dashboard.key (0600, in a 0700 folder no route serves from), so
sessions survive restarts of the API. It never holds the token. Each request
checks that this very token (name, scope and hash tag) is still configured:
removing or rotating a token ends its sessions.
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

from diarized.api.auth import Principal, ReloadingTokens, Scope, Tokens, token_tag

COOKIE = "diarized_session"
LOGIN_COOKIE = "diarized_login"  # the login form's own CSRF secret, before there is a session
MAX_AGE = 12 * 3600


@dataclass(frozen=True)
class Session:
    name: str
    scope: Scope
    csrf: str
    expires: float
    tag: str = ""  # the start of the token's sha256: a rotated token (same name, new hash) ends it

    @property
    def principal(self) -> Principal:
        return Principal(self.name, self.scope)

    @property
    def scope_name(self) -> str:
        return self.scope.name.lower()

    @property
    def can_submit(self) -> bool:
        return self.scope >= Scope.SUBMIT


KEY_FOLDER, KEY_NAME = "keys", "dashboard.key"


def key_path(state: Path) -> Path:
    """state/keys/dashboard.key, its folder 0700; a key left at state/dashboard.key by an older
    version is moved there (a folder of its own, which no route serves from)."""
    folder = state / KEY_FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    path, old = folder / KEY_NAME, state / KEY_NAME
    if old.is_file() and not old.is_symlink() and not path.exists():
        os.rename(old, path)
    return path


def load_key(path: Path) -> bytes:
    """The signing key, made once (O_EXCL: two API processes starting together agree on one)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            key = fh.read(4096)
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
    def __init__(self, key: bytes, tokens: "Tokens | ReloadingTokens", max_age: float = MAX_AGE):
        self.key, self.tokens, self.max_age = key, tokens, max_age

    def open(self, token: str) -> tuple[Session, str] | None:
        """A new session for a valid token: (session, cookie value); None for a wrong token."""
        principal = self.tokens.check(token)
        if principal is None:
            return None
        session = Session(principal.name, principal.scope, secrets.token_urlsafe(24), time.time() + self.max_age,
                          token_tag(token))
        body = base64.urlsafe_b64encode(json.dumps(
            [session.name, int(session.scope), session.csrf, session.expires, session.tag]).encode()).decode()
        return session, f"{body}.{self._mac(body)}"

    def read(self, cookie: str | None) -> Session | None:
        if not cookie or "." not in cookie or len(cookie) > 4096:
            return None
        body, mac = cookie.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            name, scope, csrf, expires, tag = json.loads(base64.urlsafe_b64decode(body))
            session = Session(str(name), Scope(scope), str(csrf), float(expires), str(tag))
        except (ValueError, TypeError):
            return None
        if session.expires < time.time() or not self.tokens.has(session.principal, session.tag):
            return None
        return session

    def _mac(self, body: str) -> str:
        return hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two CSRF values; a missing one never matches."""
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())
