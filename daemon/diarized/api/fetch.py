"""Submit by URL: POST /jobs {"url": …} downloads the recording here, in the API process, never the daemon.

A URL from a client is a request to make a connection from this server, so it is
checked like everything else a client sends. Off unless api_url_hosts names the
hosts it may reach ("media.example.org", or ".example.org" for its subdomains;
"*" for any). Every hop of a redirect (at most MAX_REDIRECTS) is checked again.
The host's addresses are resolved here and each must be public (no loopback,
private, link-local, multicast or reserved address) unless api_url_allow_private;
the connection then goes to the address that was checked, so a name that
resolves differently a moment later (DNS rebinding) cannot slip through
(httpcore's network backend is wrapped for this; TLS still verifies the host
name). The body streams to disk under max_file_gb, with a deadline for the
whole download and one for each silence.
"""

from __future__ import annotations

import ipaddress
import socket
from email.message import Message
from pathlib import PurePosixPath
from typing import Callable
from urllib.parse import unquote, urljoin, urlsplit

import anyio
import httpcore

from diarized.config import Settings
from diarized.uploads import TooLarge, Upload

MAX_REDIRECTS = 3
CHUNK = 1 << 16
CONNECT_SECONDS = 10.0
IDLE_SECONDS = 30.0  # a server silent this long mid-body is given up on


class FetchError(Exception):
    """The URL cannot be fetched; the message says why and what to do (400 unless said otherwise)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower().rstrip(".")
        if entry == "*" or host == entry or (entry.startswith(".") and host.endswith(entry)):
            return True
    return False


def check_url(url: str, settings: Settings) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL this server may fetch; FetchError otherwise."""
    if not settings.api_url_hosts:
        raise FetchError("this server does not fetch URLs (api_url_hosts is empty): upload the file instead", 403)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{url[:200]!r} is not an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise FetchError("a URL with a user name or password in it is refused; use a link that needs none")
    if not host_allowed(parts.hostname, settings.api_url_hosts):
        raise FetchError(f"{parts.hostname} is not among the hosts this server fetches from "
                         f"({', '.join(settings.api_url_hosts)}; api_url_hosts)", 403)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError(f"{url[:200]!r} has a port that is not a number") from None
    return parts.scheme, parts.hostname, port


def refused_address(address: str) -> str | None:
    """Why an address may not be reached from here (None: a public address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    for kind in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return f"{address} is a {kind.replace('_', '-')} address"
    return None


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses it has checked itself."""

    def __init__(self, allow_private: bool):
        self.inner = httpcore.AnyIOBackend()
        self.allow_private = allow_private

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options=None) -> httpcore.AsyncNetworkStream:
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise FetchError(f"{host} cannot be resolved ({exc.strerror or exc})") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not self.allow_private:
            for address in addresses:
                why = refused_address(address)
                if why:
                    raise FetchError(f"{host} resolves to {why}; this server fetches only from public "
                                     "addresses (api_url_allow_private)", 403)
        return await self.inner.connect_tcp(addresses[0], port, timeout, local_address, socket_options)

    async def connect_unix_socket(self, *args, **kwargs):
        raise FetchError("unix sockets are never fetched from")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def file_name(url: str, disposition: str | None) -> str:
    """The name a download is recorded under: Content-Disposition's filename, else the URL's last part."""
    if disposition:
        message = Message()
        message["content-disposition"] = disposition
        name = message.get_filename()
        if name:
            return PurePosixPath(name.replace("\\", "/")).name or "download"
    return PurePosixPath(unquote(urlsplit(url).path)).name or "download"


async def download(url: str, settings: Settings, new_upload: Callable[[str], Upload]) -> Upload:
    """The recording at `url` in a new upload (not yet committed); FetchError or TooLarge otherwise.

    The whole download must finish within api_url_timeout_seconds."""
    limit = int(settings.max_file_gb * 2**30)
    async with httpcore.AsyncConnectionPool(network_backend=CheckedBackend(settings.api_url_allow_private),
                                            max_connections=1, retries=0) as pool:
        try:
            with anyio.fail_after(settings.api_url_timeout_seconds):
                return await _follow(pool, url, settings, limit, new_upload)
        except TimeoutError:
            raise FetchError(f"{url[:200]} did not finish downloading within "
                             f"{settings.api_url_timeout_seconds:g} s (api_url_timeout_seconds)", 408) from None
        except httpcore.TimeoutException:
            raise FetchError(f"{url[:200]} stopped sending for {IDLE_SECONDS:g} s", 408) from None
        except httpcore.ConnectError as exc:
            raise FetchError(f"{url[:200]} cannot be reached: {exc or 'connection refused'}", 502) from None
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise FetchError(f"{url[:200]}: the download broke off ({type(exc).__name__}: {exc})", 502) from None


async def _follow(pool: httpcore.AsyncConnectionPool, url: str, settings: Settings, limit: int,
                  new_upload: Callable[[str], Upload]) -> Upload:
    for _hop in range(MAX_REDIRECTS + 1):
        check_url(url, settings)
        timeouts = {"connect": CONNECT_SECONDS, "read": IDLE_SECONDS, "write": IDLE_SECONDS, "pool": IDLE_SECONDS}
        async with pool.stream("GET", url, headers=[("User-Agent", "diarized-fetch/1"), ("Accept", "*/*")],
                               extensions={"timeout": timeouts}) as response:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
            if response.status in (301, 302, 303, 307, 308) and "location" in headers:
                url = urljoin(url, headers["location"])
                continue
            if response.status != 200:
                raise FetchError(f"{url[:200]} answered HTTP {response.status}; check the link", 502)
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                raise TooLarge(f"{url[:200]} is {int(length) / 2**30:.2f} GiB, larger than the limit of "
                               f"{settings.max_file_gb:g} GiB (max_file_gb)")
            upload = new_upload(file_name(url, headers.get("content-disposition")))
            try:
                async for chunk in response.aiter_stream():
                    upload.write(chunk)  # raises TooLarge past the limit
            except BaseException:
                upload.close()
                raise
            return upload
    raise FetchError(f"more than {MAX_REDIRECTS} redirects from the URL given; give the final link")
