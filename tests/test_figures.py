"""The figures diarizectl stats and /metrics share: nearest-rank percentiles."""

from __future__ import annotations

import pytest

from diarized.figures import percentile


@pytest.mark.parametrize("values, share, expected", [
    ([0.52, 0.96], 0.5, 0.52), ([0.52, 0.96], 0.95, 0.96), ([3, 1, 2], 0.5, 2), ([5], 0.95, 5),
    (list(range(1, 101)), 0.95, 95), (list(range(1, 101)), 0.5, 50), ([], 0.5, None)])
def test_nearest_rank(values, share, expected):
    assert percentile(values, share) == expected
