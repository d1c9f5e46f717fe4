"""Who may call a route: bearer tokens for the API, sessions for the dashboard (checked from headers only).

An Access is kept on the app (app.state.access); the routers' dependencies `Read` and
`Submit` ask it, so every router module shares one definition of who may do what.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Request

from diarized.api.auth import Principal, ReloadingTokens, Scope
from diarized.api.errors import ApiError


@dataclass
class Access:
    tokens: ReloadingTokens
    sessions: object  # api/sessions.Sessions
    require_tokens: bool = True  # False only on a unix socket, whose permissions are the access control

    def bearer(self, request: Request) -> Principal | None:
        if not self.tokens and not self.require_tokens:
            return Principal("unix-socket", Scope.SUBMIT)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return self.tokens.check(token.strip()) if scheme.lower() == "bearer" and token.strip() else None

    def authenticated(self, request: Request) -> bool:
        """Credentials only (headers), for guard.BodyGuard: no body is read before this says yes."""
        from diarized.api.sessions import COOKIE

        if request.url.path == "/ui" or request.url.path.startswith("/ui/"):
            return self.sessions.read(request.cookies.get(COOKIE)) is not None
        return self.bearer(request) is not None


def principal(request: Request) -> Principal:
    found = request.app.state.access.bearer(request)
    if found is None:
        raise ApiError(401, "unauthorized", "a valid bearer token is required "
                       "(Authorization: Bearer <token>; `diarizectl token new NAME` makes one)",
                       {"WWW-Authenticate": "Bearer"})
    return found


def reader(who: Principal = Depends(principal)) -> Principal:
    return who


def submitter(who: Principal = Depends(principal)) -> Principal:
    if who.scope < Scope.SUBMIT:
        raise ApiError(403, "forbidden", f"token {who.name!r} is read-only; this needs a submit token")
    return who


Read = Depends(reader)
Submit = Depends(submitter)
