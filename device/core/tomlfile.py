"""Reading TOML files and secret files: one place, one error shape, every Python from 3.10.

The daemon's config, the trainer's config and the tuner's search space all go through
:func:`read_toml`. Python 3.10 (JetPack 6, Ubuntu 22.04) has no ``tomllib``; the ``tomli``
backport, which the ``[device]`` extra installs there, is the same parser under another name.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised by the 3.10 CI run
    import tomli as tomllib


def read_toml(path: Path, what: str = "config file") -> dict[str, Any]:
    """Parse a TOML file; a missing, unreadable or malformed file is one line naming it."""
    if not path.exists():
        raise ConfigError(f"{path}: no such {what}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None


def read_secret(path: str | Path, key: str) -> str:
    """First line of a secret file (token, password), so secrets stay out of the config file."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, IndexError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}: cannot read {path} ({exc.__class__.__name__})") from None
