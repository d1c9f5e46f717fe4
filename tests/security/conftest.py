"""The security suite's shared pieces: the daemon as the service's own unprivileged user."""

from __future__ import annotations

import pytest

from tests.harness import Daemon


@pytest.fixture
def daemon(public_tmp, unprivileged, models_cache):
    """The real daemon (fake workers) running as `nobody`, so file modes are real; killed at the end."""
    d = Daemon(public_tmp / "var", models_cache, fake_workers=True, user=unprivileged).start()
    yield d
    if d.proc.poll() is None:
        d.kill9()
