"""Pull a bundle tar from the URL of an offer: ``http(s)://`` with a size cap and a timeout, or ``file://``.

For bundles too large to push through the broker the sender names a URL instead of sending
chunks. The device fetches it itself (outbound only, like MQTT), never more than the offer's
``size`` bytes, and then checks it exactly like a pushed tar (sha256 of the offer, signature,
every file's hash). ``file://`` is only read under one folder the device owner chose (a mount
of a share, a USB stick), so an offer cannot make the device read arbitrary local files.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

BLOCK = 1 << 16
TIMEOUT_S = 30.0


class PullError(Exception):
    """One line: why the tar could not be fetched."""


def fetch(url: str, dest: Path, size: int, *, allowed_dir: Path | None, timeout_s: float = TIMEOUT_S) -> None:
    """Write the tar at ``url`` to ``dest``; exactly ``size`` bytes or PullError."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        _copy_file(parsed, dest, size, allowed_dir)
        return
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise PullError(f"url {url[:100]!r}: only http://, https:// and file:// are accepted")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, dest.open("wb") as out:  # noqa: S310
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) != size:
                raise PullError(f"url serves {int(length)} bytes, the offer announced {size}")
            total = 0
            while block := response.read(BLOCK):
                total += len(block)
                if total > size:
                    raise PullError(f"url serves more than the {size} bytes the offer announced")
                out.write(block)
    except PullError:
        raise
    except urllib.error.HTTPError as exc:
        raise PullError(f"url answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PullError(f"cannot fetch the url ({reason})") from None
    if total != size:
        raise PullError(f"url served {total} bytes, the offer announced {size}")


def _copy_file(parsed: urllib.parse.SplitResult, dest: Path, size: int, allowed_dir: Path | None) -> None:
    if allowed_dir is None:
        raise PullError("file:// urls are refused: no pull folder is configured on this device")
    if parsed.netloc not in ("", "localhost"):
        raise PullError("file:// url must name a local path (file:///...)")
    source = Path(urllib.parse.unquote(parsed.path))
    try:
        resolved = source.resolve(strict=True)
    except (OSError, RuntimeError):
        raise PullError(f"file:// url: no such file {source}") from None
    if not resolved.is_relative_to(allowed_dir.resolve()):
        raise PullError(f"file:// url {source} is outside the pull folder {allowed_dir}")
    if not resolved.is_file() or resolved.stat().st_size != size:
        raise PullError(f"file:// url {source} is not a regular file of the announced {size} bytes")
    with resolved.open("rb") as handle, dest.open("wb") as out:
        shutil.copyfileobj(handle, out, BLOCK)
