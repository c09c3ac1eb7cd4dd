"""What the trainer verbs print: text that stdout can always encode.

A path or label from the user's disk may hold a name that is not UTF-8 (kept by Python as a
lone surrogate); printed as-is it would end the command with UnicodeEncodeError after the work
is done. ``shown`` writes such bytes as ``\\xe9`` instead.
"""

from __future__ import annotations

import os
from pathlib import Path


def shown(value: object) -> str:
    """``value`` as printable text; bytes that are not UTF-8 appear as ``\\xNN``."""
    text = os.fspath(value) if isinstance(value, Path) else str(value)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def say(line: str) -> None:
    """Progress lines from the library (phase, trial, fold, conversion), printed as they happen."""
    print(shown(line), flush=True)
