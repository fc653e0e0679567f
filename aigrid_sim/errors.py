"""The one exception users see for bad input: configuration, data files, traces."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad input caught before a run starts.

    The message names the key (or file and row) and says what was expected. The CLI prints it and
    exits with status 2 instead of showing a traceback.
    """
