"""Bearer tokens: only their sha256 is configured; a check compares against every one in constant time.

Entries in api_tokens are "name:scope:sha256hex". A token is 32 random bytes,
so a plain sha256 is enough (no salt or slow hash is needed for a secret that
cannot be guessed); only `diarizectl token new` ever sees it, once.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass

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
            name, scope, hexdigest = entry.split(":")
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
