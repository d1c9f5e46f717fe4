"""Options given with one file: checked when the job is made, never first in the worker.

A job may ask for a language, a Whisper model, output formats, an initial
prompt and hotwords (store.JobOptions), from any place a job is made: submit
flags, POST /jobs fields, Client.submit, the dashboard's form or a sidecar
<file>.toml. A client names a model, never a path: only the models this daemon
can load offline are offered (the bundled ones whose packages are installed,
CTranslate2 folders under models_dir, and the configured model), so an unknown
one is refused at submit time with the list, and no client can point a worker
at a folder of its choosing. Text options are bounded: they reach the decoder.
"""

from __future__ import annotations

from typing import Any, Mapping

from diarized.config import ALL_FORMATS, WHISPER_LANGUAGES, Settings
from diarized.store import JobOptions

MAX_TEXT = 1000  # characters of initial_prompt or hotwords (Whisper's prompt holds ~224 tokens anyway)
KEYS = ("language", "model", "formats", "initial_prompt", "hotwords")


class OptionError(ValueError):
    """Options that cannot be used; the message names each problem and what is allowed."""


def offered_models(settings: Settings) -> list[str]:
    """Whisper models a job may name: found offline without loading anything."""
    from diarized.models import offline_names

    names = offline_names(settings.models_dir)
    if "/" not in settings.model and settings.model not in names:
        names.append(settings.model)
    return names


def problems(options: JobOptions, settings: Settings) -> list[str]:
    found = []
    if options.language is not None and options.language != "auto" and options.language not in WHISPER_LANGUAGES:
        found.append(f"language must be auto or a Whisper language code (pt, en, es, ...), not {options.language!r}")
    if options.model is not None:
        offered = offered_models(settings)
        if options.model not in offered:
            found.append(f"model {options.model!r} is not available on this server; it has {', '.join(offered)}")
    model = options.model or settings.model
    language = options.language or settings.language
    if model.endswith(".en") and language not in ("auto", "en"):
        found.append(f"model {model} understands English only, but language is {language!r}: ask for a "
                     "multilingual model (base, ...) or language en")
    if options.formats is not None:
        bad = [f for f in options.formats if f not in ALL_FORMATS]
        if bad or not options.formats:
            found.append(f"formats must be one or more of {', '.join(ALL_FORMATS)}; not {', '.join(bad) or 'none'}")
    for key in ("initial_prompt", "hotwords"):
        value = getattr(options, key)
        if value is not None and (len(value) > MAX_TEXT or "\x00" in value):
            found.append(f"{key} must be at most {MAX_TEXT} characters of text")
    return found


def parse(values: Mapping[str, Any], settings: Settings) -> JobOptions:
    """Options from form fields, JSON or TOML (strings, or a list for formats); empty means not given.
    Raises OptionError naming every problem."""
    def text(key: str) -> str | None:
        value = values.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise OptionError(f"{key} must be text, not {type(value).__name__}")
        return value.strip()
    formats = values.get("formats")
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()] or None
    elif formats is not None and not (isinstance(formats, list) and all(isinstance(f, str) for f in formats)):
        raise OptionError("formats must be a list of names or one comma-separated text")
    options = JobOptions(language=text("language"), model=text("model"),
                         formats=tuple(dict.fromkeys(formats)) if formats else None,
                         initial_prompt=text("initial_prompt"), hotwords=text("hotwords"))
    found = problems(options, settings)
    if found:
        raise OptionError("; ".join(found))
    return options


def model_of(job, settings: Settings) -> str:
    """The Whisper model a job runs with: its own, else the configured one."""
    return (job.options or {}).get("model") or settings.model


def apply(settings: Settings, job) -> Settings:
    """The settings a job's worker runs with: the config, then its speaker hints and options."""
    from dataclasses import replace

    given = dict(job.options or {})
    if "formats" in given:
        given["formats"] = tuple(given["formats"])
    return replace(settings, **job.speakers.given(), **{k: v for k, v in given.items() if k in KEYS})
