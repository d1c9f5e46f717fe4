"""The web dashboard: server-rendered pages under /ui, made live by one script, all served offline.

Pages: log in (an API token, once), the overview (daemon, workers, memory,
queue, finished jobs, a chart of the workers' last hour, an upload form), a
job (timeline, stages, error and hint, retry/cancel, downloads) and its
transcript (who-spoke-when lanes, speaker-coloured paragraphs, the original
to play, naming the speakers). Uploads go through the same intake as the
API. Every form carries the session's CSRF secret; no page has an inline
script or style, so the Content-Security-Policy allows only 'self'.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from diarized import __version__, editing, formats, relabel, summary
from diarized.api.clients import Clients
from diarized.api.errors import ApiError
from diarized.api.job_views import output_file, outputs_archive, outputs_of
from diarized.api.serve import DescriptorResponse, NotServable, open_owned
from diarized.api.submission import take_multipart
from diarized.client import Client
from diarized.api.sessions import COOKIE, LOGIN_COOKIE, Session, Sessions, same
from diarized.store import FINAL_STATES, SORTS, Event, Job, JobQuery, NotFound, State

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
QUEUE_ROWS = 100
FINISHED_ROWS = 20
JOBS_PAGE = 50
SAMPLE_WINDOW = 3600.0


class LoginRequired(Exception):
    """No valid session: a page redirects to the login form, a script gets 401."""


class Forbidden(Exception):
    """A read-only session, or a form without this session's CSRF secret."""


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(max(0.0, seconds)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def when(at: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) if at else "-"


def rtf(job: Job) -> str:
    return f"{job.processing_seconds / job.duration:.3f}" if job.processing_seconds and job.duration else "-"


def eta(job: Job) -> str:
    return clock(job.eta_seconds) if job.state == State.RUNNING and job.eta_seconds is not None else "-"


def stages(events: list[Event]) -> list[dict]:
    """The last attempt's stages with their start and length, from the worker's checkpoint events."""
    starts = [i for i, e in enumerate(events) if e.kind == "claimed"]
    last = events[starts[-1]:] if starts else events
    marks = [("decode", "worker_started"), ("transcribe", "decoded"), ("diarize", "unit_done"),
             ("merge and publish", "diarized")]
    ends = {"decode": "decoded", "transcribe": "unit_done", "diarize": "diarized", "merge and publish": "succeeded"}
    found = []
    for name, begin in marks:
        begins = [e.at for e in last if e.kind == begin]
        finished = [e.at for e in last if e.kind == ends[name]]
        if begins:
            start = begins[-1] if begin == "unit_done" else begins[0]
            end = finished[-1] if finished and finished[-1] >= start else None
            found.append({"name": name, "at": start, "took": (end - start) if end else None})
    return found


def speakers_text(job: Job) -> str:
    """Who was found: a count, and the names an operator gave (machine labels say nothing)."""
    found = job.speakers_found or []
    named = [s["name"] for s in found if s["name"] != s["label"]]
    return str(len(found)) + (f" ({', '.join(named)})" if named else "") if found else "-"


def outcome_text(job: Job) -> str:
    """The state, and for a failure its error type: what went wrong at a glance (the hint is the title)."""
    if job.state in (State.FAILED, State.CANCELLED) and job.error_type:
        return f"{job.state}: {job.error_type}"
    return str(job.state)


def job_row(job: Job) -> dict:
    """What the overview script shows for one job (already formatted: one place formats)."""
    return {"id": job.id, "short_id": job.short_id, "file": job.source_name, "state": str(job.state),
            "priority": job.priority_name, "stage": job.stage, "progress": job.progress, "eta_text": eta(job),
            "audio_text": clock(job.duration), "took_text": clock(job.processing_seconds), "rtf_text": rtf(job),
            "ended_text": when(job.finished_at), "outcome_text": outcome_text(job), "hint": job.hint or "",
            "speakers_text": speakers_text(job), "language": job.language or "-",
            "duplicate_of": job.duplicate_of}


def create_router(clients: Clients, sessions: Sessions) -> APIRouter:
    settings = clients.settings
    env = Environment(loader=PackageLoader("diarized.api", "templates"), autoescape=select_autoescape(["html"]))
    env.globals.update(static=lambda name: f"/ui/static/{name}?v={__version__}", clock=clock, when=when, rtf=rtf,
                       eta=eta, outcome_text=outcome_text, speakers_text=speakers_text)
    router = APIRouter(prefix="/ui", include_in_schema=False)

    def page(name: str, status: int = 200, **values) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**values), status_code=status)

    def session_of(request: Request) -> Session:
        session = sessions.read(request.cookies.get(COOKIE))
        if session is None:
            raise LoginRequired()
        return session

    def submit_session(request: Request) -> Session:
        session = session_of(request)
        if not session.can_submit:
            raise Forbidden(f"{session.name} may only look (a read token); log in with a submit token to change jobs")
        return session

    def writer(request: Request, form_csrf: str | None = None) -> Session:
        """A submit session whose request carries its CSRF secret (header or form field)."""
        session = submit_session(request)
        if not same(request.headers.get("x-csrf-token") or form_csrf, session.csrf):
            raise Forbidden("this form is stale or was not sent by this dashboard: reload the page and try again")
        return session

    async def form_writer(request: Request) -> tuple[Session, dict]:
        form = await request.form()
        return writer(request, form.get("csrf")), form

    # -- logging in ---------------------------------------------------------------------------
    def login_page(next_path, status: int = 200, **values) -> HTMLResponse:
        """The login form with a fresh CSRF secret, in the form and in its own cookie."""
        secret = secrets.token_urlsafe(24)
        response = page("login.html", status=status, login_csrf=secret, next=_local(next_path), session=None,
                        **values)
        response.set_cookie(LOGIN_COOKIE, secret, httponly=True, samesite="strict", path="/ui/login")
        return response

    @router.get("/login")
    def login_form(next: str = "/ui/") -> Response:
        return login_page(next)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        if not same(form.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
            raise Forbidden("the login form is stale: reload it and try again")
        opened = sessions.open(str(form.get("token", "")).strip())
        if opened is None:
            return login_page(form.get("next"), 401, message="That token is not valid here.", message_kind="error")
        _, cookie = opened
        response = RedirectResponse(_local(form.get("next")), status_code=303)
        response.set_cookie(COOKIE, cookie, max_age=int(sessions.max_age), httponly=True, samesite="strict",
                            path="/ui", secure=request.url.scheme == "https")
        response.delete_cookie(LOGIN_COOKIE, path="/ui/login")
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        session = session_of(request)  # before the body is read
        form = await request.form()
        if not same(form.get("csrf"), session.csrf):
            raise Forbidden("this form is stale: reload the page and try again")
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui")
        return response

    # -- the overview ---------------------------------------------------------------------------
    def overview_data() -> dict:
        client = clients.get()
        store = client.store
        daemon = store.daemon(15.0)
        running = sorted(store.jobs(states=(State.RUNNING,)), key=lambda j: j.started_at or 0)
        queued = store.queue(QUEUE_ROWS)  # the first ones: a queue of 100,000 is counted in the header
        finished = store.jobs(states=FINAL_STATES, limit=FINISHED_ROWS)
        budget = daemon.memory_budget_gb or settings.max_memory_gb
        counts = store.counts()
        return {"daemon": daemon, "running": running, "queued": queued, "finished": finished,
                "waiting": counts.get(State.INCOMING, 0) + counts.get(State.QUEUED, 0),
                "memory_share": daemon.memory_used_gb / budget if budget else 0.0,
                "samples": store.samples(time.time() - SAMPLE_WINDOW)}

    @router.get("/")
    def overview(request: Request, deleted: str | None = None) -> Response:
        from diarized.options import offered_models

        session = session_of(request)
        data = overview_data()
        message = {"message": f"{deleted[:200]} was deleted.", "message_kind": "ok"} if deleted else {}
        return page("overview.html", session=session, can_submit=session.can_submit,
                    models=offered_models(clients.settings), default_model=clients.settings.model, **message, **data)

    def client_names(samples) -> dict[str, str]:
        """Each sampled job's label for the chart: its file name and short id."""
        store = clients.get().store
        names = {}
        for job_id in {s.job_id for s in samples}:
            try:
                job = store.get(job_id)
                names[job_id] = f"{job.source_name} ({job.short_id})"
            except NotFound:
                names[job_id] = f"deleted job {job_id[-6:]}"
        return names

    @router.get("/jobs")
    def jobs_page(request: Request, q: str = "", state: str = "", language: str = "", model: str = "",
                  speaker: str = "", since: str = "", until: str = "", sort: str = "newest",
                  offset: int = 0) -> Response:
        """Any job among all of them: words and filters, one page at a time (the store's search)."""
        session = session_of(request)
        form = {"q": q[:500], "state": state if state in set(State) else "", "language": language[:10],
                "model": model[:100], "speaker": speaker[:100], "since": since, "until": until,
                "sort": sort if sort in SORTS else "newest"}
        query = JobQuery(text=form["q"], states=(form["state"],) if form["state"] else (),
                         language=form["language"] or None, model=form["model"] or None,
                         speaker=form["speaker"] or None, since=_day_start(since), until=_day_start(until, 1),
                         sort=form["sort"], limit=JOBS_PAGE + 1, offset=max(0, min(offset, 1_000_000)))
        found = clients.get().store.search(query)
        link = lambda at: "/ui/jobs?" + urlencode({**{k: v for k, v in form.items() if v}, "offset": at})  # noqa
        return page("jobs.html", session=session, jobs=found[:JOBS_PAGE], form=form, states=[str(s) for s in State],
                    sorts=list(SORTS), offset=query.offset, day=day,
                    next=link(query.offset + JOBS_PAGE) if len(found) > JOBS_PAGE else None,
                    previous=link(max(0, query.offset - JOBS_PAGE)) if query.offset else None)

    @router.get("/overview.json")
    def overview_json(request: Request) -> JSONResponse:
        session_of(request)
        data = overview_data()
        return JSONResponse({
            "daemon": data["daemon"].to_dict() | {"paused": None}, "memory_share": data["memory_share"],
            "running": [job_row(j) for j in data["running"]],
            "queued": [job_row(j) for j in data["queued"]], "waiting": data["waiting"],
            "finished": [job_row(j) for j in data["finished"]],
            "samples": _by_job(client_names(data["samples"]), data["samples"])})

    @router.post("/upload", status_code=202)
    async def upload(request: Request) -> JSONResponse:
        session = session_of(request)
        if not session.can_submit:
            raise Forbidden(f"{session.name} may only look (a read token); uploads need a submit token")
        header_ok = same(request.headers.get("x-csrf-token"), session.csrf)

        def csrf_sent(fields: dict[str, str]) -> None:
            if not header_ok and not same(fields.get("csrf"), session.csrf):
                raise Forbidden("this form is stale or was not sent by this dashboard: reload the page")
        job = await take_multipart(request, clients, csrf_sent)
        return JSONResponse({"id": job.id, "file": job.source_name, "state": str(job.state),
                             "duplicate_of": job.duplicate_of, "error": job.error}, status_code=202)

    # -- one job ---------------------------------------------------------------------------------
    @router.get("/jobs/{job_id}.json")
    def job_json(request: Request, job_id: str) -> JSONResponse:
        session_of(request)
        return JSONResponse(job_row(clients.get().get(job_id)))

    @router.get("/jobs/{job_id}")
    def job_page(request: Request, job_id: str) -> Response:
        session = session_of(request)
        client = clients.get()
        job = client.get(job_id)
        events = client.store.events(job.id)
        return page("job.html", session=session, can_submit=session.can_submit, job=job, events=events,
                    stages=stages(events), outputs=[o.name for o in outputs_of(client, job)])

    @router.post("/jobs/{job_id}/cancel")
    async def cancel(request: Request, job_id: str) -> Response:
        await form_writer(request)
        job = await run_in_threadpool(lambda: clients.get().cancel(job_id))
        return RedirectResponse(f"/ui/jobs/{quote(job.id)}", status_code=303)

    @router.post("/jobs/{job_id}/retry")
    async def retry(request: Request, job_id: str) -> Response:
        await form_writer(request)
        job = await run_in_threadpool(lambda: clients.get().retry(job_id))
        return RedirectResponse(f"/ui/jobs/{quote(job.id)}", status_code=303)

    @router.get("/jobs/{job_id}/outputs/{name:path}")
    def download(request: Request, job_id: str, name: str) -> FileResponse:
        session_of(request)
        opened, path = output_file(clients.get(), job_id, name)
        return DescriptorResponse(opened, filename=path.name)

    @router.get("/jobs/{job_id}/audio")
    def audio(request: Request, job_id: str) -> FileResponse:
        """The original, with HTTP range requests (the player seeks without downloading it all)."""
        session_of(request)
        job = clients.get().resolve(job_id)
        try:  # the job's own original, in a folder the service owns, opened without following a link
            opened = open_owned((settings.done, settings.failed, settings.jobs_dir),
                                Path(job.source_path or ""), size=job.size)
        except NotServable:
            raise ApiError(404, "no_original", f"the original of {job.source_name} is not kept") from None
        return DescriptorResponse(opened, filename=job.source_name, content_disposition_type="inline")

    @router.get("/jobs/{job_id}/transcript")
    def transcript(request: Request, job_id: str, saved: bool = False) -> Response:
        session = session_of(request)
        job = clients.get().resolve(job_id)
        view = transcript_view(job)
        return page("transcript.html", session=session, can_submit=session.can_submit, job=job, saved=saved,
                    **view)

    @router.post("/jobs/{job_id}/rename")
    async def rename(request: Request, job_id: str) -> Response:
        session, form = await form_writer(request)
        client = clients.get()
        job = client.resolve(job_id)
        names = {key[5:]: str(value) for key, value in form.items() if key.startswith("name:")}
        try:
            await run_in_threadpool(rename_speakers, client, job, names, session.principal.name)
        except relabel.RenameError as exc:
            raise ApiError(400, "bad_rename", str(exc)) from None
        return RedirectResponse(f"/ui/jobs/{quote(job.id)}/transcript?saved=1", status_code=303)

    @router.post("/jobs/{job_id}/edit")
    async def edit(request: Request, job_id: str) -> JSONResponse:
        """Edits from the transcript page (JSON: version, edits); the script reloads the page after."""
        session = writer(request)
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("edits"), list) or not 0 < len(body["edits"]) <= 20:
            raise ApiError(400, "bad_edit", "send {version, edits: [1 to 20 edits]}")
        client = clients.get()
        job = client.resolve(job_id)
        try:
            doc, notes = await run_in_threadpool(edit_transcript, client, job, body["edits"], body.get("version"),
                                                 session.principal.name)
        except editing.Stale as exc:
            raise ApiError(409, "stale", str(exc)) from None
        except editing.EditError as exc:
            raise ApiError(400, "bad_edit", str(exc)) from None
        return JSONResponse({"version": doc["version"], "done": notes})

    @router.get("/jobs/{job_id}/outputs.zip")
    def download_all(request: Request, job_id: str) -> FileResponse:
        session_of(request)
        opened, name = outputs_archive(clients.get(), job_id)
        return DescriptorResponse(opened, filename=name, media_type="application/zip")

    @router.get("/jobs/{job_id}/delete")
    def delete_page(request: Request, job_id: str) -> Response:
        """The confirmation step, a page of its own: it works without the script too."""
        session = submit_session(request)
        client = clients.get()
        job = client.get(job_id)
        return page("delete.html", session=session, job=job, outputs=len(client.outputs(job.id)))

    @router.post("/jobs/{job_id}/delete")
    async def delete(request: Request, job_id: str) -> Response:
        from diarized import retention

        await form_writer(request)
        client = clients.get()
        job, _ = await run_in_threadpool(retention.delete, settings, client.store, job_id)
        return RedirectResponse(f"/ui/?deleted={quote(job.source_name)}", status_code=303)

    return router


def rename_speakers(client: Client, job: Job, names: dict[str, str], who: str) -> None:
    """The files first (relabel.py), then the job record's speaker names and a timeline entry."""
    doc, before, shown = relabel.renamed(Path(job.output_dir or ""), names)
    client.store.record_summary(job.id, summary.summarize(doc))
    changes = [f"{before[label]} → {name}" for label, name in shown.items() if before.get(label) != name]
    if changes:
        client.store.event(job.id, "renamed", f"{', '.join(changes)} (by {who})")


def edit_transcript(client: Client, job: Job, edits: list, version, who: str) -> tuple[dict, list[str]]:
    """The files (editing.py), then the job record's summary and a timeline entry."""
    if job.state != State.SUCCEEDED or not job.output_dir:
        raise editing.EditError(f"{job.source_name} has no transcript to edit (it is {job.state})")
    doc, notes = editing.edit(Path(job.output_dir), [e for e in edits if isinstance(e, dict)], version, who)
    client.store.record_summary(job.id, summary.summarize(doc))
    client.store.event(job.id, "edited", f"by {who}: " + "; ".join(notes))
    return doc, notes


def transcript_view(job: Job) -> dict:
    """Speakers with their lanes, and paragraphs (consecutive segments of one speaker joined)."""
    import json

    if job.state != State.SUCCEEDED or not job.output_dir:
        raise ApiError(404, "no_transcript", f"{job.source_name} has no transcript (it is {job.state})")
    doc = json.loads((Path(job.output_dir) / "final_transcription.json").read_text())
    labels = relabel.labels_of(doc)
    speakers = {name: {"name": name, "label": labels[name], "index": i, "colour": i % 8, "turns": []}
                for i, name in enumerate(doc["speakers"])}
    for seg in doc["segments"]:
        speakers[seg["speaker_id"]]["turns"].append((seg["start_time"], seg["end_time"]))
    segments = doc["segments"]
    paragraphs = [{"name": span.speaker, "colour": speakers[span.speaker]["colour"],
                   "start": segments[span.first]["start_time"], "end": segments[span.last - 1]["end_time"],
                   "text": " ".join(s["text"] for s in segments[span.first:span.last]),
                   "edited": any(s.get("edited") for s in segments[span.first:span.last])}
                  for span in formats.spans(segments)]
    duration = float(doc.get("total_duration") or max((p["end"] for p in paragraphs), default=1.0)) or 1.0
    audio = bool(job.source_path and Path(job.source_path).is_file())
    return {"speakers": list(speakers.values()), "paragraphs": paragraphs, "duration": duration, "audio": audio,
            "version": doc.get("version", 0), "edits": len(doc.get("edits") or []),
            "edited_at": doc.get("edited_at")}


def day(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at)) if at else "-"


def _day_start(text: str, plus_days: int = 0) -> float | None:
    """A date from the form (YYYY-MM-DD) as the unix time its day starts here; "to" days are included."""
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%d")) + plus_days * 86400
    except ValueError:
        return None


def _local(target) -> str:
    """Only a path inside the dashboard may be a redirect target (no open redirect)."""
    text = str(target or "")
    return text if text.startswith("/ui/") and not text.startswith("//") and "\\" not in text else "/ui/"


def _by_job(names: dict[str, str], samples) -> list[dict]:
    """The chart's lines: one per job (a worker's pid said nothing to an operator), oldest first."""
    groups: dict[str, list] = {}
    for s in samples:
        groups.setdefault(s.job_id, []).append([s.at, s.rss_mb, s.cpu_percent])
    return [{"job": job_id, "label": names.get(job_id, job_id), "points": points} for job_id, points in groups.items()]
