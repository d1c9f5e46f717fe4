"""The shared pass's sliding means: every frame's mean over the span centred on it, fewer at the ends."""

from __future__ import annotations

import pytest
import torch

from diarized.pipeline.campplus import network_frames, sliding_mean


def _by_hand(x: torch.Tensor, span: int) -> torch.Tensor:
    frames = x.shape[-1]
    out = torch.empty_like(x, dtype=torch.float64)
    for i in range(frames):
        low, high = max(0, i - span // 2), min(frames, i + span // 2 + 1)
        out[..., i] = x[..., low:high].double().mean(dim=-1)
    return out


@pytest.mark.parametrize("frames, span", [(1, 499), (7, 3), (40, 9), (600, 499), (1200, 998)])
def test_sliding_mean_is_the_mean_over_the_centred_span(frames, span):
    x = torch.randn(2, 3, frames, generator=torch.Generator().manual_seed(frames))
    got = sliding_mean(x, span)
    assert got.shape == x.shape and got.dtype == x.dtype
    assert torch.allclose(got.double(), _by_hand(x, span), atol=1e-4)


def test_network_frames_are_fbank_frames_halved():
    assert network_frames(16000 * 10) == 499  # a 10-s window: WINDOW_FRAMES
    assert network_frames(400) == 1
