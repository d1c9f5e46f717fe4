"""Which number format the diarization networks run in, and running a layer in it.

On a CPU with bfloat16 instructions (AVX-512 BF16, AMX, Arm BF16) oneDNN's bfloat16
convolutions and LSTMs are much faster than float32 ones, and the speaker embeddings
and the segmentation scores move far less than shifting the audio by 10 ms moves them
(README, Accuracy). Without the instructions oneDNN emulates bfloat16 and is slower
than float32 (a CAM++ block: 1.7 s against 0.9 s with AVX-512 but no BF16, 24 s with
AVX2 only), so "auto" reads the CPU's flags; torch's own check accepts any AVX-512 CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import MutableMapping

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
NATIVE_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 flags, Arm64 Features


def network_precision(setting: str) -> str:
    """`diarization_precision` ("auto", "float32" or "bfloat16") made concrete for this CPU."""
    if setting != "auto":
        return setting
    return "bfloat16" if native_bfloat16() else "float32"


def network_dtype(setting: str) -> torch.dtype:
    """The dtype for `diarization_precision`."""
    return DTYPES[network_precision(setting)]


def bound_primitive_cache(threads: int, environ: MutableMapping[str, str] = os.environ) -> None:
    """On one thread, no oneDNN primitive cache; call before the stage's first convolution.

    The cache keeps the compiled convolutions with their buffers; in bfloat16 on one
    thread (each of two jobs at once) it held 130-250 MiB at the stage's peak (30 min:
    1,284 / 1,382 MiB with it, 1,179 / 1,116 without, the same speed: 56 s / 56-60 s).
    On two threads the same change cost 15 % (35 s -> 41 s), so there the cache stays.
    oneDNN reads the variable when it first builds a primitive, which in a worker is here:
    transcription runs on CTranslate2's own copy. An operator's own value wins.
    """
    if threads == 1:
        environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")


def native_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Does this CPU compute bfloat16 natively?"""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return bool(NATIVE_FLAGS & set(value.split()))
    return False


def autocast(dtype: torch.dtype) -> torch.autocast:
    """CPU autocast to `dtype`; a no-op for float32."""
    return torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32)


class InPrecision(torch.nn.Module):
    """A layer run under autocast to `dtype`, its tensor outputs handed on as float32.

    Used on the layers of pyannote's segmentation model that gain from it (its LSTM and
    the two small SincNet convolutions); the first SincNet convolution works on the raw
    waveform and stays float32: in bfloat16 it changed the most likely class on 7 % of
    frames.
    """

    def __init__(self, layer: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.layer, self.dtype = layer, dtype

    def forward(self, *args, **kwargs):
        with autocast(self.dtype):
            return _as_float(self.layer(*args, **kwargs))


def _as_float(value):
    """A tensor, or an LSTM's (output, (h, c)), in float32."""
    if torch.is_tensor(value):
        return value.float()
    if isinstance(value, tuple):
        return tuple(_as_float(v) for v in value)
    return value


def lower_segmentation(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """pyannote's PyanNet with its LSTM and later SincNet convolutions run in `dtype`."""
    if dtype == torch.float32:
        return model
    model.lstm = InPrecision(model.lstm, dtype)
    for index in range(1, len(model.sincnet.conv1d)):
        model.sincnet.conv1d[index] = InPrecision(model.sincnet.conv1d[index], dtype)
    return model
