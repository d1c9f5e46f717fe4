"""One real run of the whole pipeline on pyannote's 30-s two-speaker sample, shared by tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diarized.config import load_settings
from diarized.pipeline.runner import Hooks, Runner


@pytest.fixture(scope="session")
def sample_run(data, models_cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("sample-run")
    settings = load_settings(None, {"state_dir": root / "var", "cache_dir": models_cache}, env={})
    events: list[tuple[str, str]] = []
    runner = Runner(settings, Hooks(event=lambda kind, detail: events.append((kind, detail))))
    result = runner.run(data / "pyannote-sample/sample.wav", root / "work", root / "out")
    return {"result": result, "events": events, "root": root, "settings": settings,
            "document": json.loads((root / "out/final_transcription.json").read_text())}


@pytest.fixture(scope="session")
def sample_out(sample_run) -> Path:
    return sample_run["root"] / "out"
