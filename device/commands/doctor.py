"""``edgesight doctor``: one table of what this device can do and what blocks it.

Exit 1 when something the config needs is missing (the checks: ``device/doctor.py``), 0 when
only warnings remain, 2 for a config that does not load.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..config import defaults, load_config


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the daemon's TOML config: what it needs (runtime, source, broker) turns a missing part into a failure",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object: the checks and the exit code")


def run(args: argparse.Namespace) -> int:
    from ..doctor import as_json, exit_code, render_table, run_checks

    config = load_config(args.config) if args.config else defaults()
    rows = run_checks(config)
    code = exit_code(rows)
    if args.json:
        json.dump(
            {"config": str(config.path) if config.path else None, "checks": as_json(rows), "exit": code},
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_table(rows))
    failed = [row.check for row in rows if row.status == "fail"]
    if failed:  # one line on stderr either way, so a script sees why without parsing the table
        print(f"edgesight doctor: missing what the config needs: {', '.join(failed)}", file=sys.stderr)
    return code
