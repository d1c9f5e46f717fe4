"""Thin command-line layers: `diarized` (the daemon) and `diarizectl` (the operator's tool).

Exit codes, for every command: 0 ok, 1 error, 2 usage, 3 not found.
"""

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND = 0, 1, 2, 3
