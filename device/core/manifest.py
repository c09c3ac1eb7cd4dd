"""The one schema check of ``manifest.json``: every key the device reads, with its type and range.

A manifest is written by the trainer but may be edited by hand or arrive from anywhere, and a
wrong type must not surface later as a traceback deep in preprocessing (``input = 5``, ``std =
0``, a list as ``default_model``). :func:`check_manifest` runs once, before any file is read, and
raises a :class:`BundleError` whose one line names the key, what it should be and what it is.
"""

from __future__ import annotations

import math
import re
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import BundleError

SCHEMA_VERSION = 1
REQUIRED_KEYS = (
    "schema_version",
    "name",
    "version",
    "created",
    "architecture",
    "input",
    "output",
    "files",
    "default_model",
    "metrics",
)
REQUIRED_INPUT_KEYS = ("size", "color", "fit", "mean", "std")
INPUT_DTYPES = ("uint8", "int8", "float32", "float16")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


# The only folders a bundle may hold files in (the self-test probes); everything else sits at its top.
SUBFOLDERS = ("probes",)


def check_file_name(name: Any, where: str) -> str:
    """A plain file name inside the bundle: no directories, no ``..``, not absolute, not hidden tricks.

    Raises:
        BundleError: naming ``where`` (e.g. ``manifest.json: files``) and the bad name.
    """
    if not isinstance(name, str) or not name:
        raise BundleError(f"{where}: expected a file name, got {_show(name)}")
    folder, _, rest = name.partition("/")
    if folder in SUBFOLDERS and rest:  # e.g. probes/probes.json: one known folder, then a plain name
        check_file_name(rest, where)
        return name
    if (
        name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or PurePosixPath(name).is_absolute()
        or Path(name).is_absolute()
    ):
        raise BundleError(f"{where}: {_show(name)} is not a plain file name inside the bundle")
    return name


class _Checker:
    """Collects the path of the key being checked so every message names it the same way."""

    def __init__(self, where: Path) -> None:
        self.where = where

    def fail(self, key: str, expected: str, value: Any) -> BundleError:
        return BundleError(f"{self.where}: {key}: expected {expected}, got {_show(value)}")

    def section(self, manifest: dict[str, Any], key: str) -> dict[str, Any]:
        value = manifest[key]
        if not isinstance(value, dict):
            raise self.fail(key, "an object", value)
        return value

    def number(self, section: dict[str, Any], key: str, name: str, *, positive: bool = False) -> None:
        if name not in section:
            return
        value = section[name]
        if not _is_number(value) or (positive and value <= 0):
            raise self.fail(f"{key}.{name}", "a finite number" + (" > 0" if positive else ""), value)

    def optional_index(self, section: dict[str, Any], key: str, name: str, minimum: int) -> None:
        value = section.get(name)
        if value is not None and (not _is_int(value) or value < minimum):
            raise self.fail(f"{key}.{name}", f"an integer >= {minimum} or null", value)


def _check_input(check: _Checker, section: dict[str, Any]) -> None:
    missing = [key for key in REQUIRED_INPUT_KEYS if key not in section]
    if missing:
        raise BundleError(f"{check.where}: missing key(s) input.{', input.'.join(missing)}")
    size = section["size"]
    if not isinstance(size, list) or len(size) != 2 or not all(_is_int(v) and 0 < v <= 8192 for v in size):
        raise check.fail("input.size", "[height, width] of two integers 1..8192", size)
    if section["color"] != "RGB":
        raise check.fail("input.color", '"RGB"', section["color"])
    if section["fit"] not in ("centre", "center", "crop", "stretch"):
        raise check.fail("input.fit", '"centre" or "stretch"', section["fit"])
    check.number(section, "input", "mean")
    check.number(section, "input", "std", positive=True)
    check.number(section, "input", "scale")
    if "scale" in section and section["scale"] < 0:
        raise check.fail("input.scale", "a number >= 0", section["scale"])
    if "zero_point" in section and not (_is_int(section["zero_point"]) and -128 <= section["zero_point"] <= 255):
        raise check.fail("input.zero_point", "an integer -128..255", section["zero_point"])
    if "dtype" in section and section["dtype"] not in INPUT_DTYPES:
        raise check.fail("input.dtype", " or ".join(INPUT_DTYPES), section["dtype"])


def _check_files(check: _Checker, files: Any) -> None:
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{check.where}: 'files' must map file names to their sha256")
    for name, entry in files.items():
        check_file_name(name, f"{check.where}: files")
        sha = entry.get("sha256") if isinstance(entry, dict) else entry
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise check.fail(f"files.{name}.sha256", "64 lower-case hex digits", sha)
        if isinstance(entry, dict) and "bytes" in entry:
            size = entry["bytes"]
            if not _is_int(size) or size < 0:
                raise check.fail(f"files.{name}.bytes", "a size in bytes (an integer >= 0)", size)


def _check_calibration(check: _Checker, manifest: dict[str, Any]) -> None:
    """Optional ``calibration: {temperature, ece_before, ece_after}`` and ``thresholds: {label: t}``.

    The device divides logits by the temperature and compares scores with the thresholds, so a
    zero, negative or non-number temperature and a threshold outside 0..1 are refused here.
    """
    if "calibration" in manifest:
        section = check.section(manifest, "calibration")
        if "temperature" not in section:
            raise BundleError(f"{check.where}: missing key calibration.temperature")
        check.number(section, "calibration", "temperature", positive=True)
        for name in ("ece_before", "ece_after"):
            check.number(section, "calibration", name)
    if "thresholds" in manifest:
        section = check.section(manifest, "thresholds")
        for label, value in section.items():
            if not _is_number(value) or not 0 <= value <= 1:
                raise check.fail(f"thresholds.{label}", "a score 0..1", value)


def check_manifest(manifest: Any, where: Path) -> dict[str, Any]:
    """Check the shape and types of a parsed manifest; return it unchanged when it is good.

    Raises:
        BundleError: one line naming ``where`` and the first key that is missing or wrong.
    """
    check = _Checker(where)
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: expected a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise BundleError(f"{where}: missing key(s) {', '.join(missing)}")
    if manifest["schema_version"] != SCHEMA_VERSION or not _is_int(manifest["schema_version"]):
        raise BundleError(
            f"{where}: schema_version {manifest['schema_version']!r} is not supported "
            f"(this edgesight reads version {SCHEMA_VERSION})"
        )
    for key in ("name", "created"):
        if not isinstance(manifest[key], str):
            raise check.fail(key, "a string", manifest[key])
    if not isinstance(manifest["version"], (str, int, float)) or isinstance(manifest["version"], bool):
        raise check.fail("version", "a string", manifest["version"])
    for key in ("architecture", "metrics"):
        check.section(manifest, key)
    _check_input(check, check.section(manifest, "input"))
    output = check.section(manifest, "output")
    check.optional_index(output, "output", "num_classes", 1)
    check.optional_index(output, "output", "background_index", 0)
    classes, background = output.get("num_classes"), output.get("background_index")
    if classes is not None and background is not None and background >= classes:
        raise check.fail("output.background_index", f"an index below num_classes ({classes})", background)
    _check_files(check, manifest["files"])
    _check_calibration(check, manifest)
    default = manifest["default_model"]
    check_file_name(default, f"{where}: default_model")
    if default not in manifest["files"]:
        raise BundleError(f"{where}: 'files' does not list {default}")
    return manifest
