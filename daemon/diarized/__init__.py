"""diarized: offline speaker-attributed transcription service."""

import os

# pyannote.audio 4 sends usage metrics unless told not to, and reads this
# variable each time it would send. This service must never phone home.
os.environ["PYANNOTE_METRICS_ENABLED"] = "0"
# onnxruntime (faster-whisper's VAD) uploads usage events from Linux too since 1.29; only
# its environment switch, read before its first session, stops the uploader from starting
# (disable_telemetry_events() in transcribe.py silences the events that would follow).
# Two spellings: the variable was renamed between releases.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
os.environ["ORT_TELEMETRY_DISABLED"] = "1"

__version__ = "0.1.0"

# The Python API (client.py): light imports only, no model or media library.
from diarized.client import Client, JobFailed, Orchestrator  # noqa: E402
from diarized.options import OptionError  # noqa: E402
from diarized.store import JobOptions, Priority, SpeakerHints, State  # noqa: E402

__all__ = ["Client", "JobFailed", "JobOptions", "OptionError", "Orchestrator", "Priority", "SpeakerHints", "State"]
