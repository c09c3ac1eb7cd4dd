"""How library code tells the user what it is doing without printing: a ``say`` callback.

Library modules (train, tune, export) never print; they call ``say(line)``, which a command
sets to print on stdout and which otherwise only logs, so the command decides what a user sees
and a caller embedding the trainer gets no stray output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

Say = Callable[[str], None]


def log_only(log: logging.Logger) -> Say:
    """A ``say`` that only logs at INFO (the default when no command is listening)."""

    def say(line: str) -> None:
        log.info("%s", line)

    return say
