"""The library client (client.py) each request works through, so the API holds no job logic of its own."""

from __future__ import annotations

import threading

from fastapi import Request

from diarized.client import Client
from diarized.config import Settings


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


def client_of(request: Request) -> Client:
    """A route's dependency: this thread's client of the app's store."""
    return request.app.state.clients.get()


def clients_of(request: Request) -> Clients:
    return request.app.state.clients
