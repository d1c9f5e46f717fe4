"""A multipart/form-data upload streamed straight into state/uploads/, never held in memory or /tmp.

Starlette's form parser spools a file to a temporary file and checks sizes
only afterwards; a two-hour video would be written twice and an oversized one
fully received. Here python-multipart's streaming parser feeds each block of
the file part into an `Upload` (hashed, counted, size-limited as it goes),
and the small fields (priority, speaker hints) are kept as text.

Only a whole body makes a job: one that ends before its closing boundary (a
cut connection, a Content-Length shorter than what was sent) is refused, and
so is a form with more parts, or parts with more header bytes, than a real
upload has (50,000 fields once grew the API by 180 MB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Callable

from python_multipart.multipart import MultipartParser, parse_options_header

from diarized.uploads import TooLarge, Upload

FIELD_LIMIT = 4096  # bytes of one text field
MAX_PARTS = 16  # the file and a few fields (priority, speaker hints, csrf)
HEADER_LIMIT = 8192  # bytes of one part's headers
DRAIN_LIMIT = 64 << 20  # after a refusal, read at most this much more so the client sees the answer


class BadUpload(ValueError):
    """A request body that is not the upload this API takes."""


@dataclass
class Received:
    upload: Upload | None = None
    fields: dict[str, str] = field(default_factory=dict)


async def receive(content_type: str, body: AsyncIterator[bytes], new_upload: Callable[[str], Upload]) -> Received:
    """Parse the body; the caller owns (and must close) `received.upload` when this returns.

    On any error the partial upload is removed before the error propagates.
    """
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise BadUpload("send the file as multipart/form-data (a `file` part), or JSON with a `path`")
    received = Received()
    part: dict = {}
    seen = {"parts": 0, "end": False}

    def on_part_begin():
        seen["parts"] += 1
        if seen["parts"] > MAX_PARTS:
            raise BadUpload(f"the form has more than {MAX_PARTS} parts; send the file and its few fields only")
        part.clear()
        part.update(headers={}, header=b"", value=b"", data=bytearray(), name=None, filename=None, size=0)

    def on_header_field(data, start, end):
        part["header"] += data[start:end]
        header_bytes(end - start)

    def on_header_value(data, start, end):
        part["value"] += data[start:end]
        header_bytes(end - start)

    def header_bytes(count: int) -> None:
        part["size"] += count
        if part["size"] > HEADER_LIMIT:
            raise BadUpload(f"a part's headers are longer than {HEADER_LIMIT} bytes")

    def on_end():
        seen["end"] = True

    def on_header_end():
        part["headers"][part["header"].lower()] = part["value"]
        part["header"], part["value"] = b"", b""

    def on_headers_finished():
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        part["name"] = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        if filename is not None:
            if received.upload is not None:
                raise BadUpload("one file per request")
            received.upload = new_upload(filename.decode("utf-8", "surrogateescape"))
            part["filename"] = filename

    def on_part_data(data, start, end):
        if part["filename"] is not None:
            received.upload.write(bytes(data[start:end]))
            return
        part["data"] += data[start:end]
        if len(part["data"]) > FIELD_LIMIT:
            raise BadUpload(f"the form field {part['name']!r} is longer than {FIELD_LIMIT} bytes")

    def on_part_end():
        if part["filename"] is None and part["name"]:
            received.fields[part["name"]] = part["data"].decode("utf-8", "replace")

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end, "on_end": on_end})
    try:
        async for chunk in body:
            parser.write(chunk)
        parser.finalize()
        if not seen["end"]:
            raise BadUpload("the upload is incomplete: the body ended before its closing boundary (was the "
                            "connection cut?); nothing was kept, send it again")
    except BaseException as exc:
        if received.upload is not None:
            received.upload.close()
        if isinstance(exc, TooLarge):
            await _drain(body)
        raise
    if received.upload is None:
        raise BadUpload("the form has no file part: send the recording as `file`")
    return received


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read (and drop) the rest, up to a cap, so the client gets the 413 instead of a broken pipe."""
    left = DRAIN_LIMIT
    try:
        async for chunk in body:
            left -= len(chunk)
            if left <= 0:
                return
    except Exception:
        return
