#!/usr/bin/env python3
"""Compare two `edgesight bench --json` result files figure by figure: B/A ratios, better or worse.

    scripts/compare_bench.py bench/results-pi4-2026-11-20.json bench/results-pi5-2026-11-25.json
    scripts/compare_bench.py before.json after.json --markdown > change.md

Rows are matched by model (and bundle variant) and runtime; a figure missing from either file
is left out. "same" means within 3 %: run-to-run noise on a quiet machine is about that.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"


def reexec_in_venv() -> None:
    try:
        import edgesight.device  # noqa: F401
    except ImportError:
        if VENV_PYTHON.exists() and Path(sys.executable).resolve() != VENV_PYTHON.resolve():
            os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), *sys.argv])
        sys.exit("scripts/compare_bench.py: edgesight is not installed; run scripts/setup.sh first")


def load(path: Path) -> dict:
    """A result file, or SystemExit with one line naming the file and what is wrong with it."""
    from edgesight.device.bench.report import SCHEMA

    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"compare_bench: error: {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SystemExit(f"compare_bench: error: {path}: not a JSON result file ({exc})") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise SystemExit(f"compare_bench: error: {path}: not an edgesight bench result (schema {SCHEMA} expected)")
    return report


def main() -> int:
    reexec_in_venv()
    from edgesight.device.bench.tables import compare, render_comparison

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, metavar="A.json")
    parser.add_argument("after", type=Path, metavar="B.json")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table instead of plain text")
    args = parser.parse_args()
    before, after = load(args.before), load(args.after)
    if not compare(before, after):
        print(
            f"compare_bench: error: {args.before} and {args.after} have no model and runtime in common", file=sys.stderr
        )
        return 1
    print(render_comparison(before, after, markdown=args.markdown), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
