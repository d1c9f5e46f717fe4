"""Where the networks may run in bfloat16 (precision.py): only on a CPU that computes it natively,
and a layer run in it hands float32 on, whatever it returns."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from diarized.pipeline import precision


@pytest.mark.parametrize("flags, native", [
    ("flags\t\t: fpu avx2 avx512f avx512bw avx512_vnni", False),  # AVX-512 without BF16: emulated, slower
    ("flags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni", True),
    ("flags\t\t: fpu avx2 amx_bf16 amx_tile", True),
    ("Features\t: fp asimd bf16 i8mm", True),  # arm64
    ("Features\t: fp asimd", False),
    ("", False),
])
def test_bfloat16_counts_as_native_only_with_its_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: a CPU\n{flags}\n\nprocessor\t: 1\n{flags}\n")
    assert precision.native_bfloat16(cpuinfo) is native


def test_auto_follows_the_cpu_and_a_named_format_is_taken_as_it_is(tmp_path):
    assert precision.network_dtype("auto") == (torch.bfloat16 if precision.native_bfloat16() else torch.float32)
    assert precision.network_dtype("float32") == torch.float32
    assert precision.network_dtype("bfloat16") == torch.bfloat16
    assert precision.network_precision("auto") == ("bfloat16" if precision.native_bfloat16() else "float32")
    assert precision.network_precision("float32") == "float32"
    assert precision.native_bfloat16(tmp_path / "missing") is False


def test_an_lstm_in_bfloat16_hands_on_float32_close_to_the_float32_one():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(60, 128, num_layers=2, bidirectional=True, batch_first=True).eval()
    x = torch.randn(4, 50, 60)
    wrapped = precision.InPrecision(lstm, torch.bfloat16)
    with torch.inference_mode():
        (want, (h, c)), (got, (gh, gc)) = lstm(x), wrapped(x)
    assert got.dtype == gh.dtype == gc.dtype == torch.float32
    assert got.shape == want.shape and gh.shape == h.shape and gc.shape == c.shape
    assert 0 < (got - want).abs().max() < 0.05  # in bfloat16 indeed, and close


def test_float32_leaves_the_segmentation_model_as_it_is():
    model = torch.nn.Module()
    model.lstm = torch.nn.LSTM(4, 4)
    assert precision.lower_segmentation(model, torch.float32).lstm is model.lstm


CACHE_PROBE = """
import sys, torch
from diarized.pipeline.precision import bound_primitive_cache
bound_primitive_cache(int(sys.argv[1]))
conv = torch.nn.Conv1d(8, 8, 3)
with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
    for _ in range(3):
        conv(torch.randn(1, 8, 100))
"""


@pytest.mark.skipif(not precision.native_bfloat16(), reason="oneDNN runs bfloat16 convolutions only natively here")
@pytest.mark.parametrize("threads, hits", [(1, 0), (2, 2)])
def test_one_thread_builds_each_convolution_again_and_two_keep_the_cache(threads, hits):
    """Set after torch is imported, the variable still reaches oneDNN: its log shows no cache hits."""
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    log = subprocess.run([sys.executable, "-c", CACHE_PROBE, str(threads)], capture_output=True, text=True,
                         env={**env, "ONEDNN_VERBOSE": "profile_create"}, check=True, timeout=120).stdout
    assert log.count("create:cache_hit,cpu,convolution") == hits
    assert log.count("create:cache_miss,cpu,convolution") == 3 - hits


def test_an_operators_own_cache_capacity_is_kept():
    environ = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"}
    precision.bound_primitive_cache(1, environ)
    assert environ == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64"}
    environ = {}
    precision.bound_primitive_cache(2, environ)
    assert environ == {}
