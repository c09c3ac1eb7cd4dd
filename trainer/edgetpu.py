"""Compile a full-integer TFLite model for the Coral Edge TPU with ``edgetpu_compiler``.

The compiler is a closed x86_64 binary from Coral's apt repository; it maps the ops it can to
one ``edgetpu-custom-op`` and leaves the rest on the CPU. How many ops landed on the TPU is
what decides whether the stick is worth plugging in, so it is parsed from the compiler's
output and recorded in the bundle's manifest.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..device.core.errors import EdgesightError

log = logging.getLogger(__name__)

COMPILER = "edgetpu_compiler"
INSTALL_HINT = (
    "edgetpu_compiler not found on PATH; install it on an x86_64 Debian/Ubuntu machine "
    "(there is no ARM build): curl https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add - "
    "&& echo 'deb https://packages.cloud.google.com/apt coral-edgetpu-stable main' | "
    "sudo tee /etc/apt/sources.list.d/coral-edgetpu.list && sudo apt-get update && "
    "sudo apt-get install edgetpu-compiler (or set EDGETPU_COMPILER=/path/to/edgetpu_compiler)"
)
TIMEOUT_S = 600

_SUMMARY = {
    "compiler_version": (r"Edge TPU Compiler version\s+(\S+)", str),
    "subgraphs": (r"Number of Edge TPU subgraphs:\s*(\d+)", int),
    "total_ops": (r"Total number of operations:\s*(\d+)", int),
    "ops_on_tpu": (r"Number of operations that will run on Edge TPU:\s*(\d+)", int),
    "ops_on_cpu": (r"Number of operations that will run on CPU:\s*(\d+)", int),
    "on_chip_memory": (r"On-chip memory used for caching model parameters:\s*(\S+)", str),
    "off_chip_memory": (r"Off-chip memory used for streaming uncached model parameters:\s*(\S+)", str),
}
_OP_ROW = re.compile(r"^([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")


def find_compiler() -> str:
    """Path of ``edgetpu_compiler`` (``EDGETPU_COMPILER`` overrides PATH), or the install instructions."""
    override = os.environ.get("EDGETPU_COMPILER")
    found = shutil.which(override) if override else shutil.which(COMPILER)
    if not found:
        raise EdgesightError(INSTALL_HINT)
    return found


def parse_compiler_log(text: str) -> dict[str, Any]:
    """Summary counts and the per-operator table from the compiler's stdout and/or ``*_edgetpu.log``.

    When every op maps, the compiler omits the "will run on" lines: then all ops are on the TPU.
    The operator table (``-s`` or the log file) is summed as a cross-check when counts are missing.
    """
    result: dict[str, Any] = {}
    for key, (pattern, kind) in _SUMMARY.items():
        match = re.search(pattern, text)
        if match:
            result[key] = kind(match.group(1))
    operators: list[dict[str, Any]] = []
    in_table = False
    for line in text.splitlines():
        if line.startswith("Operator") and "Status" in line:
            if operators:  # the same table again (stdout with -s, then the .log file)
                break
            in_table = True
            continue
        if in_table:
            match = _OP_ROW.match(line.strip())
            if match:
                operators.append({"op": match.group(1), "count": int(match.group(2)), "status": match.group(3)})
            elif line.strip() and not line.startswith(" ") and operators:
                in_table = False
    if operators:
        result["operators"] = operators
        mapped = sum(o["count"] for o in operators if o["status"] == "Mapped to Edge TPU")
        table_total = sum(o["count"] for o in operators)
        result.setdefault("ops_on_tpu", mapped)
        result.setdefault("ops_on_cpu", table_total - mapped)
        result.setdefault("total_ops", table_total)
    if "total_ops" in result and "ops_on_tpu" not in result:
        result["ops_on_tpu"], result["ops_on_cpu"] = result["total_ops"], 0
    if "ops_on_tpu" in result and "ops_on_cpu" not in result:
        result["ops_on_cpu"] = result.get("total_ops", result["ops_on_tpu"]) - result["ops_on_tpu"]
    return result


def compile_edgetpu(tflite_path: Path, out_dir: Path) -> tuple[Path, dict]:
    """Compile ``tflite_path`` (full-integer) into ``out_dir``; return the model and what mapped to the TPU.

    Returns:
        (``<stem>_edgetpu.tflite``, dict with compiler_version, total_ops, ops_on_tpu, ops_on_cpu,
        subgraphs, memory figures and the operator table when the compiler printed one).

    Raises:
        EdgesightError: the compiler is not installed (message says how to install it), or it
            refused the model (message carries the compiler's own reason).
    """
    tflite_path, out_dir = Path(tflite_path), Path(out_dir)
    if not tflite_path.is_file():
        raise EdgesightError(f"{tflite_path}: no such model to compile for the Edge TPU")
    compiler = find_compiler()
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [compiler, "--show_operations", "--out_dir", str(out_dir), str(tflite_path)]
    log.info("compiling for the Edge TPU: %s", " ".join(command))
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise EdgesightError(f"{tflite_path}: edgetpu_compiler did not finish in {TIMEOUT_S} s") from None
    except OSError as exc:
        raise EdgesightError(f"{compiler}: cannot run it ({exc}); {INSTALL_HINT}") from None
    output = proc.stdout + "\n" + proc.stderr
    compiled = out_dir / f"{tflite_path.stem}_edgetpu.tflite"
    if proc.returncode != 0 or not compiled.exists():
        reason = next(
            (line.strip() for line in reversed(output.splitlines()) if line.strip() and "child process" not in line),
            f"exit code {proc.returncode}",
        )
        raise EdgesightError(
            f"{tflite_path}: edgetpu_compiler failed ({reason}); it needs a full-integer "
            f"(int8/uint8) model with static shapes"
        )
    log_file = out_dir / f"{tflite_path.stem}_edgetpu.log"
    text = output + ("\n" + log_file.read_text(encoding="utf-8", errors="replace") if log_file.exists() else "")
    details = parse_compiler_log(text)
    details["log_file"] = log_file.name if log_file.exists() else None
    if details.get("ops_on_tpu", 0) == 0:
        log.warning("edgetpu_compiler mapped no operations to the Edge TPU: the model would run on the CPU")
    elif details.get("ops_on_cpu"):
        log.warning(
            "%d of %d operations stay on the CPU (see %s)",
            details["ops_on_cpu"],
            details.get("total_ops", 0),
            details["log_file"],
        )
    return compiled, details
