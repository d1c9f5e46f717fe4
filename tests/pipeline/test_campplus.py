"""The shared pass's sliding means (every frame's mean over the span centred on it, fewer at the ends)
and the inference-only head (batch norms folded, channels-last) against the head as trained."""

from __future__ import annotations

import pytest
import torch

from diarized.pipeline import campplus
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


def test_the_inference_head_computes_what_the_trained_head_does():
    """A head with random weights and batch-norm statistics (no model files needed): folding the
    norms into the convolutions and running channels-last must not change the output."""
    torch.manual_seed(0)
    head = campplus._campplus_module().FCM(feat_dim=campplus.NUM_MEL_BINS)
    for norm in (m for m in head.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.uniform_(-0.5, 0.5)
    head.eval()
    features = torch.randn(1, campplus.NUM_MEL_BINS, 321)
    with torch.inference_mode():
        want = head(features)
        got = campplus._inference_head(head)(features)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()


def test_sliding_means_of_bfloat16_frames_are_summed_in_float32():
    """CAM++'s frames run in bfloat16 on CPUs that have it: a bfloat16 running sum over a minute
    of positive frames keeps two or three digits, and the means taken from it would be noise."""
    x = (torch.rand(1, 4, 3000, generator=torch.Generator().manual_seed(1)) * 8).to(torch.bfloat16)
    got = sliding_mean(x, 998)
    assert torch.allclose(got.double(), _by_hand(x, 998), atol=1e-3), (got.double() - _by_hand(x, 998)).abs().max()
