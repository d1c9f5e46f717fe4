"""Every failure of the HTTP API as {"error": {"code", "message"}}, with a message that says what to do."""

from __future__ import annotations

import errno

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from python_multipart.exceptions import FormParserError
from starlette.exceptions import HTTPException as StarletteHTTPException

from diarized.api import upload as multipart
from diarized.api.fetch import FetchError
from diarized.options import OptionError
from diarized.store import InvalidTransition, NotFound, StoreUnavailable
from diarized.uploads import BadName, TooLarge


class ApiError(Exception):
    """An answer with a status, a stable code and a message that says what to do."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """The handlers, for the API and the dashboard alike."""

    @app.exception_handler(ApiError)
    async def api_error(_request, exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers)

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
