"""diarized: offline speaker-attributed transcription service."""

import os

# pyannote.audio 4 sends usage metrics unless told not to, and reads this
# variable each time it would send. This service must never phone home.
os.environ["PYANNOTE_METRICS_ENABLED"] = "0"

__version__ = "0.1.0"
