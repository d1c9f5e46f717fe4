"""Every Python example in the README's "Python API" section runs as written, on real audio and models."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import Daemon

README = Path(__file__).parents[1] / "README.md"


def examples() -> list[str]:
    text = README.read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_the_examples_we_promise():
    blocks = examples()
    assert len(blocks) == 3
    assert sum("Orchestrator(" in b for b in blocks) == 2 and sum("Client(" in b for b in blocks) == 1


@pytest.mark.slow
@pytest.mark.parametrize("index", range(3))
def test_readme_example_runs(index, tmp_path, data, models_cache):
    code = examples()[index]
    shutil.copy(data / "pyannote-sample/sample.wav", tmp_path / "meeting.wav")
    shutil.copy(data / "en-jfk/jfk.flac", tmp_path / "interview.flac")
    env = {**os.environ, "DIARIZED_CONFIG": "", "DIARIZED_CACHE_DIR": str(models_cache), "HF_HUB_OFFLINE": "1",
           "XDG_RUNTIME_DIR": str(tmp_path / "run"), "PYTHONPATH": str(Path(__file__).parents[1])}
    daemon = None
    if "Client(" in code:  # the Client example needs a daemon that runs anyway, as `make run` would
        daemon = Daemon(tmp_path / "var", models_cache).start()
    try:
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=600)
    finally:
        if daemon:
            daemon.stop()
    assert result.returncode == 0, result.stderr + result.stdout
    out = result.stdout
    if index == 0:
        assert out.startswith("completed [") and "'transcription.srt'" in out
    elif index == 1:
        assert "Completed jobs: 2" in out and "Success rate: 100.0%" in out
        assert (tmp_path / "out/interview/transcription.srt").is_file()
        assert (tmp_path / "out/meeting/transcription.srt").is_file()
    else:
        assert "SPEAKER_00: And so my fellow Americans" in out and "1.0 True" in out
    assert (tmp_path / "meeting.wav").is_file() and (tmp_path / "interview.flac").is_file()  # copied, not moved
