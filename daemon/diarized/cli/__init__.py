"""Thin command-line layers: `diarized` (the daemon) and `diarizectl` (the operator's tool)."""

import enum


class CliExit(enum.IntEnum):
    """Exit codes of every command (a worker's codes are worker.WorkerExit, a different thing)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
