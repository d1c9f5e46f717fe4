"""The dashboard's colours, light and dark, read from its stylesheet: every text pair meets WCAG AA."""

from __future__ import annotations

import re
from importlib import resources

import pytest

# (text, background) variable pairs the pages put together
PAIRS = [("ink", "bg"), ("ink", "card"), ("muted", "card"), ("muted", "bg"), ("ok", "card"), ("bad", "card"),
         ("running", "card"), ("link", "card"), ("link", "bg"), ("button-ink", "button"),
         ("danger-ink", "danger"), ("bad", "error-bg"), ("ink", "error-bg"),
         ("muted", "error-bg"), ("ok", "flash-bg"), ("ink", "flash-bg"), ("ink", "now-bg"), ("muted", "now-bg"),
         ("muted", "panel"), ("ink", "panel"), ("ink", "drop-over")]
AA = 4.5


def stylesheet() -> str:
    return (resources.files("diarized.api") / "static" / "dashboard.css").read_text()


def themes() -> dict[str, dict[str, str]]:
    css = stylesheet()
    light = re.search(r":root\s*{(.*?)}", css, re.S).group(1)
    dark = re.search(r"prefers-color-scheme:\s*dark\)\s*{\s*:root\s*{(.*?)}", css, re.S).group(1)
    parse = lambda block: dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", block))  # noqa: E731
    return {"light": parse(light), "dark": parse(dark)}


def luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_both_themes_define_every_colour_the_pairs_use():
    for name, colours in themes().items():
        missing = {v for pair in PAIRS for v in pair} - set(colours)
        assert not missing, (name, missing)
    assert set(themes()["light"]) == set(themes()["dark"])


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_text_colour_meets_wcag_aa_on_its_background(theme):
    colours = themes()[theme]
    failing = {f"{text} on {back}": round(contrast(colours[text], colours[back]), 2) for text, back in PAIRS
               if contrast(colours[text], colours[back]) < AA}
    assert not failing, failing


def test_the_contrast_formula_is_wcags():
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)  # the classic just-failing grey
