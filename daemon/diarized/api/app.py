"""The HTTP API: jobs, outputs, system status and the seed's aliases, on the daemon's job store.

Every route goes through `Client` (client.py), the same library scripts use,
so the API holds no job logic of its own. Handlers are plain functions run in
Starlette's thread pool, each thread with its own store connection; only the
upload is async, to stream the body to disk as it arrives.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from contextlib import asynccontextmanager
from urllib.parse import quote
from pathlib import Path
from typing import Annotated, Callable

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from python_multipart.exceptions import FormParserError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from diarized.api import upload as multipart
from diarized.api import metrics, webhooks
from diarized.api.auth import Principal, ReloadingTokens, Scope
from diarized.api.guard import BodyGuard
from diarized.api.serve import DescriptorResponse, NotServable, open_owned
from diarized.api.models import (Deleted, ErrorOut, EventOut, JobDetail, JobOut, JobPage, OutputOut, PathSubmission,
                                 PriorityChange, SeedProcess)
from diarized.client import Client, seed_system_status
from diarized.config import Settings
from diarized.intake import Intake
from diarized.nofollow import Opened
from diarized.options import KEYS as OPTION_KEYS
from diarized.options import OptionError
from diarized.options import parse as parse_options
from diarized.store import (InvalidTransition, Job, JobOptions, NotFound, Priority, SpeakerHints, State,
                            StoreUnavailable, open_store)
from diarized.uploads import BadName, TooLarge


class ApiError(Exception):
    """An answer with a status, a stable code and a message that says what to do."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class Clients:
    """One Client per thread on SQLite (a connection is not shared across threads); one for all
    threads on PostgreSQL, whose store is a thread-safe connection pool."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.local = threading.local()
        self.shared: Client | None = None
        self.lock = threading.Lock()

    def get(self) -> Client:
        if not self.settings.store_is_file:
            with self.lock:
                if self.shared is None:
                    self.shared = Client(settings=self.settings)
                return self.shared
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = Client(settings=self.settings)
        return client


def create_app(settings: Settings, require_tokens: bool = True, send_webhooks: bool = True,
               config_file: Path | None = None) -> FastAPI:
    """require_tokens=False only for a unix socket, whose file permissions are the access control.

    api_tokens are read again from `config_file` when it changes, or on SIGHUP (server.py), as at
    start (the same file and environment): tokens are added and revoked without a restart.
    """
    from diarized.api.sessions import COOKIE, Sessions, key_path, load_key
    from diarized.config import load_settings

    tokens = ReloadingTokens(lambda: load_settings(config_file, {"state_dir": settings.state_dir}).api_tokens
                             if config_file else settings.api_tokens, config_file)
    clients = Clients(settings)
    sessions = Sessions(load_key(key_path(settings.db_path.parent)), tokens)

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
        "retry and change priorities."), responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})
    app.openapi = lambda: openapi_with_bearer(app)
    app.state.settings, app.state.clients, app.state.tokens = settings, clients, tokens
    _install_error_handlers(app)
    _install_dashboard(app, clients, sessions)

    def bearer(request: Request) -> Principal | None:
        if not tokens and not require_tokens:
            return Principal("unix-socket", Scope.SUBMIT)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return tokens.check(token.strip()) if scheme.lower() == "bearer" and token.strip() else None

    def authenticated(request: Request) -> bool:
        """Credentials only (headers), for guard.BodyGuard: no body is read before this says yes."""
        if request.url.path == "/ui" or request.url.path.startswith("/ui/"):
            return sessions.read(request.cookies.get(COOKIE)) is not None
        return bearer(request) is not None

    app.add_middleware(BodyGuard, authenticated=authenticated, upload_bytes=int(settings.max_file_gb * 2**30),
                       idle_seconds=settings.api_body_idle_seconds)

    def principal(request: Request) -> Principal:
        found = bearer(request)
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

    @app.get("/healthz", tags=["system"])
    def healthz() -> dict:
        """Liveness of this service and whether the daemon is up (no token needed)."""
        try:
            up = clients.get().store.daemon(15.0).up
        except StoreUnavailable as exc:
            raise ApiError(503, "store_unavailable", f"the job store cannot be read: {exc}")
        return {"status": "ok", "daemon_up": up}

    @app.post("/jobs", status_code=202, response_model=JobDetail, tags=["jobs"], dependencies=[Submit],
              openapi_extra={"requestBody": {"content": {
                  "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                      "file": {"type": "string", "format": "binary"},
                      "priority": {"type": "string", "enum": ["high", "normal", "low"]},
                      "num_speakers": {"type": "integer"}, "min_speakers": {"type": "integer"},
                      "max_speakers": {"type": "integer"},
                      "language": {"type": "string", "description": "auto, or a Whisper code: pt, en, ..."},
                      "model": {"type": "string", "description": "a model this server offers (GET /system)"},
                      "formats": {"type": "string", "description": "comma-separated: json,srt,vtt,txt,rttm,"
                                                                   "csv,tsv,docx"},
                      "initial_prompt": {"type": "string"}, "hotwords": {"type": "string"}}}},
                  "application/json": {"schema": PathSubmission.model_json_schema()}}}},
              responses={413: {"model": ErrorOut}, 400: {"model": ErrorOut}})
    async def submit(request: Request) -> JSONResponse:
        """Upload a recording (multipart, streamed to disk, at most max_file_gb), or name a file on this
        server inside api_allowed_roots (JSON). Options (language, model, formats, initial_prompt,
        hotwords) and speaker hints go with either; they are checked before anything is kept. The job
        exists when this answers."""
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = PathSubmission.model_validate_json(await request.body())
            except ValidationError as exc:
                raise ApiError(400, "bad_request", "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())) from None
            if (body.path is None) == (body.url is None):
                raise ApiError(400, "bad_request", "give either `path` (a file on this server) or `url`")
            hints = _hints(body.num_speakers, body.min_speakers, body.max_speakers)
            options = parse_options(body.model_dump(include=set(OPTION_KEYS)), settings)
            if body.url is not None:
                job = await submit_url(body.url, _priority(body.priority), hints, options)
            else:
                job = await run_in_threadpool(submit_path, body.path, body.priority, hints, options)
        else:
            job = await take_multipart(request, clients)
        detail = await run_in_threadpool(job_detail, clients.get(), job)
        return JSONResponse(detail.model_dump(), status_code=202, headers={"Location": f"/jobs/{job.id}"})

    async def submit_url(url: str, priority: Priority, hints: SpeakerHints, options: JobOptions) -> Job:
        """Downloaded here (api/fetch.py), then the same intake as an upload."""
        from diarized.api.fetch import download

        intake = Intake(settings, clients.get().store)
        upload = await download(url, settings, intake.new_upload)
        try:
            return await run_in_threadpool(lambda: Intake(settings, clients.get().store).take_upload(
                upload, priority, hints, options))
        finally:
            upload.close()

    def submit_path(path: str, priority: str, hints: SpeakerHints, options: JobOptions = JobOptions()) -> Job:
        return clients.get().submit(allowed_file(settings, path), _priority(priority), hints, options=options)

    @app.get("/jobs", response_model=JobPage, tags=["jobs"], dependencies=[Read])
    def list_jobs(state: Annotated[list[State] | None, Query()] = None,
                  limit: Annotated[int, Query(ge=1, le=500)] = 50,
                  offset: Annotated[int, Query(ge=0)] = 0) -> JobPage:
        """Newest first; filter with one or more `state`; page with `offset` (next_offset)."""
        jobs = clients.get().list(states=state, limit=limit + 1, offset=offset)
        return JobPage(jobs=[job_out(clients.get(), j) for j in jobs[:limit]], limit=limit, offset=offset,
                       next_offset=offset + limit if len(jobs) > limit else None)

    @app.get("/jobs/{job_id}", response_model=JobDetail, tags=["jobs"], dependencies=[Read],
             responses={404: {"model": ErrorOut}})
    def get_job(job_id: str) -> JobDetail:
        """State, stage, progress, ETA, the events timeline and the outputs (full or short id)."""
        client = clients.get()
        return job_detail(client, client.get(job_id))

    @app.get("/jobs/{job_id}/outputs", response_model=list[OutputOut], tags=["outputs"], dependencies=[Read])
    def list_outputs(job_id: str) -> list[OutputOut]:
        client = clients.get()
        return outputs_of(client, client.get(job_id))

    @app.get("/jobs/{job_id}/outputs.zip", tags=["outputs"], dependencies=[Read],
             response_class=FileResponse, responses={404: {"model": ErrorOut}})
    def get_archive(job_id: str) -> FileResponse:
        """Every published file of the job in one zip, under a folder named after the recording."""
        opened, name = outputs_archive(clients.get(), job_id)
        return DescriptorResponse(opened, filename=name, media_type="application/zip")

    @app.get("/jobs/{job_id}/outputs/{name:path}", tags=["outputs"], dependencies=[Read],
             response_class=FileResponse, responses={404: {"model": ErrorOut}})
    def get_output(job_id: str, name: str) -> FileResponse:
        """One published file, by a name from the job's own list (nothing else is reachable)."""
        opened, path = output_file(clients.get(), job_id, name)
        return DescriptorResponse(opened, filename=path.name, media_type=_media_type(path))

    @app.post("/jobs/{job_id}/cancel", response_model=JobOut, tags=["jobs"], dependencies=[Submit])
    def cancel(job_id: str) -> JobOut:
        """A queued job is cancelled at once, a running one at its worker's next check (about a second)."""
        return job_out(clients.get(), clients.get().cancel(job_id))

    @app.post("/jobs/{job_id}/retry", response_model=JobOut, tags=["jobs"], dependencies=[Submit])
    def retry(job_id: str) -> JobOut:
        return job_out(clients.get(), clients.get().retry(job_id))

    @app.delete("/jobs/{job_id}", response_model=Deleted, tags=["jobs"], dependencies=[Submit],
                responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}})
    def delete_job(job_id: str) -> Deleted:
        """Remove a job that is not running: its outputs, its original (done/ or failed/) and its
        records. No undo; a running job answers 409 (cancel it first). A duplicate of it keeps its
        own record, without outputs."""
        from diarized import retention

        client = clients.get()
        job, removed = retention.delete(settings, client.store, job_id)
        return Deleted(id=job.id, file=job.source_name, state=job.state, removed=len(removed.paths),
                       bytes=removed.bytes, problems=removed.problems)

    @app.post("/jobs/{job_id}/priority", response_model=JobOut, tags=["jobs"], dependencies=[Submit])
    def set_priority(job_id: str, change: PriorityChange) -> JobOut:
        return job_out(clients.get(), clients.get().set_priority(job_id, _priority(change.priority)))

    @app.get("/system", tags=["system"], dependencies=[Read])
    def system() -> dict:
        """The seed's get_system_status(): active_jobs, resource_manager, orchestrator_stats, ..."""
        client = clients.get()
        from diarized.options import offered_models

        return seed_system_status(client.system_status(), settings.max_memory_gb) | {
            "counts": client.store.counts(), "models": offered_models(settings), "default_model": settings.model}

    metrics_registry = metrics.registry(lambda: clients.get().store)

    @app.get("/metrics", tags=["system"], dependencies=[Read], response_class=Response)
    def prometheus() -> Response:
        """Prometheus text format: jobs by state and outcome, processing time and real-time factor by
        model, queue wait, worker RSS and the memory budget, webhook deliveries (a read token)."""
        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    # -- the seed's REST API, kept as documented aliases --------------------------------------
    @app.post("/process", status_code=202, tags=["seed"], dependencies=[Submit])
    def seed_process(body: SeedProcess) -> dict:
        """The seed's POST /process: {file_path} -> {job_id}. Same as POST /jobs with a `path`;
        outputs go to the outbox (GET /jobs/{id}/outputs), so output_dir is ignored."""
        job = submit_path(body.file_path, body.priority, SpeakerHints())
        return {"job_id": job.id, "status": job.status}

    @app.get("/status/{job_id}", tags=["seed"], dependencies=[Read])
    def seed_status(job_id: str) -> dict:
        """The seed's GET /status/<job_id>: the job with the seed's `status` word (a duplicate
        reports the job it duplicates)."""
        client = clients.get()
        job = client.get(job_id)
        followed = client.resolve(job.id)
        return job_out(client, followed).model_dump() | {"job_id": job.id, "status": followed.status,
                                                   "duplicate_of": job.duplicate_of}

    return app


def _install_dashboard(app: FastAPI, clients: Clients, sessions) -> None:
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


async def take_multipart(request: Request, clients: Clients,
                         accept: Callable[[dict[str, str]], None] = lambda fields: None) -> Job:
    """A multipart upload streamed into intake: the one path of POST /jobs and the dashboard's form.

    An honest Content-Length over the limit is refused before the body is read; `accept` may
    refuse the form by its fields (the dashboard's CSRF secret) before anything is recorded.
    """
    settings = clients.settings
    length = request.headers.get("content-length")
    limit = int(settings.max_file_gb * 2**30)
    if length and length.isdigit() and int(length) > limit + (1 << 20):
        raise TooLarge(f"the upload ({int(length) / 2**30:.2f} GiB) is larger than the limit "
                       f"of {settings.max_file_gb:g} GiB (max_file_gb)")
    intake = Intake(settings, clients.get().store)
    received = await multipart.receive(request.headers.get("content-type", ""), request.stream(),
                                       intake.new_upload)
    try:
        fields = received.fields
        accept(fields)
        priority = _priority(fields.get("priority", "normal"))
        hints = _hints(*(_int_field(fields, k) for k in ("num_speakers", "min_speakers", "max_speakers")))
        options = parse_options(fields, settings)
        return await run_in_threadpool(lambda: Intake(settings, clients.get().store).take_upload(
            received.upload, priority, hints, options))
    finally:
        received.upload.close()


def output_file(client: Client, job_id: str, name: str) -> tuple[Opened, Path]:
    """A published file of the job (or of the job it duplicates), by a name from its own list,
    opened below the outbox without following a link (api/serve.py)."""
    job = client.resolve(job_id)
    files = client.outputs(job.id)
    path = files.get(name)
    try:
        if path is None:
            raise NotServable(name)
        return open_owned((client.settings.outbox,), path), path
    except NotServable:
        raise ApiError(404, "no_such_output", f"job {job.id} has no output {name!r}; "
                       f"it has: {', '.join(files) or 'none (not succeeded)'}") from None


def outputs_archive(client: Client, job_id: str) -> tuple[Opened, str]:
    """The job's files (or its original's, for a duplicate) as a zip, and the zip's file name."""
    from diarized.api import archive

    job = client.get(job_id)
    files = client.outputs(job.id)
    if not files:
        raise ApiError(404, "no_outputs", f"job {job.id} is {job.state}: it has no outputs to download")
    top = f"{Path(job.source_name).stem or 'job'}-{job.short_id}"
    try:
        return archive.build(client.settings.outbox, files, top), f"{top}.zip"
    except NotServable:
        raise ApiError(404, "no_outputs", f"the outputs of job {job.id} changed while they were read; "
                       "try again") from None


def job_out(client: Client, job: Job) -> JobOut:
    """The job as the API shows it: links under api_public_url, a duplicate with its original's results."""
    results = client.resolve(job.id) if job.state == State.DUPLICATE else None
    return JobOut.of(job, client.settings.api_public_url.rstrip("/"), results)


def job_detail(client: Client, job: Job) -> JobDetail:
    """What POST /jobs and GET /jobs/{id} both answer: the job, its timeline and its files."""
    return JobDetail(**job_out(client, job).model_dump(), events=[EventOut.of(e) for e in client.events(job.id)],
                     outputs=outputs_of(client, job))


def outputs_of(client: Client, job: Job) -> list[OutputOut]:
    """The job's files; a duplicate's are its original's, with the original's URLs (by reference).
    Absolute under api_public_url when it is set."""
    owner = client.resolve(job.id)
    base = client.settings.api_public_url.rstrip("/")
    return [OutputOut(name=name, size=path.lstat().st_size, url=f"{base}/jobs/{owner.id}/outputs/{name}")
            for name, path in client.outputs(owner.id).items()]


def allowed_file(settings: Settings, text: str) -> Path:
    """A server-side path the API may copy from: a regular file whose real path (symlinks
    resolved) lies inside one of api_allowed_roots."""
    if "\x00" in text:
        raise ApiError(400, "bad_path", "the path contains a NUL byte; no file on this server has such a name")
    if not settings.api_allowed_roots:
        raise ApiError(403, "paths_disabled", "this server takes no server-side paths "
                       "(api_allowed_roots is empty): upload the file instead")
    real = Path(os.path.realpath(text))
    if not any(_inside(real, Path(os.path.realpath(root))) for root in settings.api_allowed_roots):
        raise ApiError(403, "path_not_allowed", f"{text} is outside the folders this server takes "
                       f"files from ({', '.join(map(str, settings.api_allowed_roots))})")
    if not real.is_file():
        raise ApiError(404, "no_such_file", f"{text} is not a file on this server")
    return real


def _inside(path: Path, root: Path) -> bool:
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return real == base or base in real.parents


def _priority(text: str) -> Priority:
    try:
        return Priority.parse(text)
    except ValueError as exc:
        raise ApiError(400, "bad_priority", str(exc)) from None


def _int_field(fields: dict[str, str], key: str) -> int | None:
    value = fields.get(key, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, "bad_field", f"{key} must be a whole number, not {value!r}") from None


def _hints(num: int | None, low: int | None, high: int | None) -> SpeakerHints:
    from diarized.config import speaker_hint_problems

    problems = speaker_hint_problems(num, low, high)
    if problems:
        raise ApiError(400, "bad_speaker_hints", "; ".join(problems))
    return SpeakerHints(num, low, high)


MEDIA_TYPES = {".json": "application/json", ".srt": "application/x-subrip", ".vtt": "text/vtt",
               ".txt": "text/plain; charset=utf-8", ".rttm": "text/plain; charset=utf-8",
               ".csv": "text/csv; charset=utf-8", ".tsv": "text/tab-separated-values; charset=utf-8",
               ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
               ".zip": "application/zip"}


def _media_type(path: Path) -> str:
    return MEDIA_TYPES.get(path.suffix, "application/octet-stream")


def _install_error_handlers(app: FastAPI) -> None:
    """Every failure is {"error": {"code", "message"}} with a message that says what to do."""

    @app.exception_handler(ApiError)
    async def api_error(_request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    from diarized.api.fetch import FetchError

    @app.exception_handler(FetchError)
    async def fetch_error(_request, exc: FetchError):
        return error_response(exc.status, "fetch_failed", f"{exc}; nothing was kept")

    @app.exception_handler(NotFound)
    async def not_found(_request, exc: NotFound):
        return error_response(404, "no_such_job", f"no job {exc.args[0]!r} (GET /jobs lists them)")

    # errors whose own message already says what is wrong: (status, code, suffix)
    plain = {InvalidTransition: (409, "invalid_transition", ""), TooLarge: (413, "too_large", "; nothing was kept"),
             OptionError: (400, "bad_options", "; nothing was kept"),
             BadName: (400, "bad_file_name", ""), multipart.BadUpload: (400, "bad_upload", ""),
             FormParserError: (400, "bad_upload", " (the multipart body cannot be parsed)")}

    async def plain_error(_request, exc: Exception):
        status, code, suffix = next(v for k, v in plain.items() if isinstance(exc, k))
        return error_response(status, code, f"{exc}{suffix}")

    for kind in plain:
        app.add_exception_handler(kind, plain_error)

    @app.exception_handler(StoreUnavailable)
    async def unavailable(_request, exc: StoreUnavailable):
        return error_response(503, "store_unavailable", f"the job store cannot be written now ({exc}); "
                              "try again later", {"Retry-After": "60"})

    @app.exception_handler(OSError)
    async def os_error(_request, exc: OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return error_response(507, "disk_full", "no space left for the upload on the server; "
                                  "try again once space is freed", {"Retry-After": "300"})
        return error_response(500, "io_error", f"the server could not store the file: {exc.strerror}")

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}"
                             for e in exc.errors())
        return error_response(400, "bad_request", problems)

    @app.exception_handler(Exception)
    async def unexpected(_request, exc: Exception):
        """A bug still answers in JSON (the traceback goes to the log, never to the client)."""
        return error_response(500, "internal_error", f"the server failed on this request ({type(exc).__name__}); "
                              "the API's log has the details")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 408: "timeout", 413: "too_large"}.get(
            exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)
