"""What the API reads from a client before it knows who it is, and how much and how slowly.

A plain ASGI wrapper around the whole app, so it acts before any route, form
parser or FastAPI's own body reading (FastAPI reads a JSON body before the
dependencies that check the token run):

- a request that may carry a body (any method but GET, HEAD and OPTIONS, or any
  request with a Content-Length or Transfer-Encoding) must be authenticated
  first: a bearer token for the API, a dashboard session under /ui. The one
  exception is the login form, whose body (the token field) is capped at
  LOGIN_BODY_BYTES;
- a body larger than its route's cap is refused before it is read when its
  Content-Length says so, and as soon as it passes the cap otherwise (413);
- a body that sends nothing for api_body_idle_seconds is refused (408).

Uploads (POST /jobs as multipart, /ui/upload) may be as large as max_file_gb;
every other body is a form or a small JSON document (SMALL_BODY_BYTES). A
refusal closes the connection, so the rest of a refused body is never read.
"""

from __future__ import annotations

from typing import Callable

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOGIN_PATH = "/ui/login"
LOGIN_BODY_BYTES = 4096
SMALL_BODY_BYTES = 64 * 1024
UPLOAD_SLACK_BYTES = 1 << 20  # the multipart framing and fields around the file
CLOSE = {"Connection": "close"}


class BodyRefused(HTTPException):
    """A body over its cap (413) or stalled (408); raised from receive() inside the app."""

    def __init__(self, status: int, message: str):
        super().__init__(status, message, headers=CLOSE)


class BodyGuard:
    """See the module docstring. `authenticated(request)` says whether the request's credentials
    (bearer token, or dashboard cookie under /ui) are valid; it reads headers only."""

    def __init__(self, app: ASGIApp, authenticated: Callable[[Request], bool], upload_bytes: int,
                 idle_seconds: float):
        self.app, self.authenticated = app, authenticated
        self.upload_bytes, self.idle_seconds = upload_bytes, idle_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        if scope["method"] in ("GET", "HEAD", "OPTIONS") and "content-length" not in headers \
                and "transfer-encoding" not in headers:
            return await self.app(scope, receive, send)
        if scope["path"] != LOGIN_PATH and not self.authenticated(Request(scope)):
            return await _refuse(401, "unauthorized", "log in (a dashboard session) or send a valid bearer token "
                                 "before any request body (Authorization: Bearer <token>)", scope, receive, send,
                                 {"WWW-Authenticate": "Bearer", **CLOSE})
        cap = self.cap(scope["method"], scope["path"], headers)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            status, code = (400, "bad_request") if not length.isdigit() else (413, "too_large")
            return await _refuse(status, code, f"this request's body may be at most {cap:,} bytes "
                                 f"(Content-Length: {length[:30]}); nothing was read", scope, receive, send, CLOSE)
        await self.app(scope, self.limited(receive, cap), send)

    def cap(self, method: str, path: str, headers: Headers) -> int:
        if path == LOGIN_PATH:
            return LOGIN_BODY_BYTES
        multipart = headers.get("content-type", "").startswith("multipart/form-data")
        if method == "POST" and (path == "/ui/upload" or (path == "/jobs" and multipart)):
            return self.upload_bytes + UPLOAD_SLACK_BYTES
        return SMALL_BODY_BYTES

    def limited(self, receive: Receive, cap: int) -> Receive:
        """receive() that counts the body against `cap` and gives up on a body that stalls."""
        received, complete = 0, False

        async def guarded() -> Message:
            nonlocal received, complete
            if complete:  # the body is in: waiting for a disconnect may take as long as it takes
                return await receive()
            with anyio.move_on_after(self.idle_seconds) as waited:
                message = await receive()
            if waited.cancelled_caught:
                raise BodyRefused(408, f"the request body sent nothing for {self.idle_seconds:g} s; "
                                       "nothing was kept")
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > cap:
                    raise BodyRefused(413, f"this request's body is larger than {cap:,} bytes; nothing was kept")
            return message
        return guarded


async def _refuse(status: int, code: str, message: str, scope: Scope, receive: Receive, send: Send,
                  headers: dict) -> None:
    response = JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)
    await response(scope, receive, send)
