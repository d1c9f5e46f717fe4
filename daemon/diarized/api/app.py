"""The HTTP API: one app assembled from its routers (jobs, system, the seed's aliases, the dashboard).

Every route goes through `Client` (client.py), the same library scripts use,
so the API holds no job logic of its own. Handlers are plain functions run in
Starlette's thread pool, each thread with its own store connection; only the
upload is async, to stream the body to disk as it arrives. This module only
assembles: who may call what is access.py, errors are errors.py, the routes are
jobs.py, system.py, seed.py and dashboard.py, and what they share about a job
is job_views.py and submission.py.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline

from diarized.api import errors, jobs, metrics, seed, system, webhooks
from diarized.api.access import Access
from diarized.api.auth import ReloadingTokens
from diarized.api.clients import Clients
from diarized.api.errors import error_response
from diarized.api.guard import BodyGuard
from diarized.api.models import ErrorOut
from diarized.api.sessions import Sessions, key_path, load_key
from diarized.config import Settings, load_settings
from diarized.store import open_store


def create_app(settings: Settings, require_tokens: bool = True, send_webhooks: bool = True,
               config_file: Path | None = None) -> FastAPI:
    """require_tokens=False only for a unix socket, whose file permissions are the access control.

    api_tokens are read again from `config_file` when it changes, or on SIGHUP (server.py), as at
    start (the same file and environment): tokens are added and revoked without a restart.
    """
    tokens = ReloadingTokens(lambda: load_settings(config_file, {"state_dir": settings.state_dir}).api_tokens
                             if config_file else settings.api_tokens, config_file)
    clients = Clients(settings)
    sessions = Sessions(load_key(key_path(settings.db_path.parent)), tokens)
    access = Access(tokens, sessions, require_tokens)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        halt = webhooks.start(settings, lambda: open_store(settings.store_location)) if send_webhooks else None
        yield
        if halt:
            halt()

    # FastAPIOffline: FastAPI whose /docs and /redoc load Swagger UI and ReDoc from the package's
    # own files, not a CDN (an offline service's docs were a blank page); maintained, and no more
    # than FastAPI's own docs helpers pointed at bundled assets.
    app = FastAPIOffline(title="diarized", version="1", lifespan=lifespan, description=(
        "Speaker-attributed transcripts, offline. Authenticate with `Authorization: Bearer <token>` "
        "(`diarizectl token new NAME`); read tokens may read, submit tokens may also submit, cancel, "
        "retry, delete and change priorities."), responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})
    app.openapi = lambda: openapi_with_bearer(app)
    app.state.settings, app.state.clients, app.state.tokens, app.state.access = settings, clients, tokens, access
    app.state.metrics = metrics.registry(lambda: clients.get().store)
    errors.install(app)
    _install_dashboard(app, clients, sessions)
    app.add_middleware(BodyGuard, authenticated=access.authenticated,
                       upload_bytes=int(settings.max_file_gb * 2**30), idle_seconds=settings.api_body_idle_seconds)
    for router in (system.router, jobs.router, seed.router):
        app.include_router(router)
    return app


def _install_dashboard(app: FastAPI, clients: Clients, sessions: Sessions) -> None:
    """The web pages under /ui (dashboard.py), their assets, and the headers that lock them down."""
    from fastapi.staticfiles import StaticFiles
    from fastapi.responses import RedirectResponse

    from diarized.api import dashboard

    app.mount("/ui/static", StaticFiles(packages=[("diarized.api", "static")]), name="static")
    app.include_router(dashboard.create_router(clients, sessions))

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=303)

    app.add_middleware(LockDown, page_headers={
        "Content-Security-Policy": dashboard.CSP, "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"})

    @app.exception_handler(dashboard.LoginRequired)
    async def login_required(request: Request, _exc):
        if request.method == "GET" and not request.url.path.endswith(".json"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/ui/login?next={quote(target)}", status_code=303)
        return error_response(401, "login_required", "log in to the dashboard first (/ui/login)")

    @app.exception_handler(dashboard.Forbidden)
    async def forbidden(_request: Request, exc):
        return error_response(403, "forbidden", str(exc))


def openapi_with_bearer(app: FastAPI) -> dict:
    """The OpenAPI document with the bearer scheme declared, so /docs's Authorize button works.

    Tokens are checked by our own dependency (not fastapi.security), so FastAPI cannot know the
    scheme by itself; every route takes it, /healthz and /metrics answer without it too.
    """
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "a token from `diarizectl token new NAME` (read or submit scope)"}}
        schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema


class LockDown:
    """The dashboard's security headers on every /ui answer, and Server-Timing on all (the server's own
    time before the body streams, for browsers' devtools and bench/api_load.py).

    Plain ASGI rather than BaseHTTPMiddleware, which runs receive() in a task group of its own:
    an error raised while reading the body (guard.BodyRefused) would reach the client as a 500.
    """

    def __init__(self, app, page_headers: dict[str, str]):
        self.app = app
        self.page_headers = [(k.lower().encode(), v.encode()) for k, v in page_headers.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        page = scope["path"] == "/ui" or scope["path"].startswith("/ui/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={(time.perf_counter() - started) * 1000:.1f}".encode()))
                if page:
                    headers += self.page_headers
                message = {**message, "headers": headers}
            await send(message)
        await self.app(scope, receive, send_with_headers)
