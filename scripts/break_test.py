#!/usr/bin/env python3
"""Rerun the hardening break-test (issue 12's cases) and print the table the README quotes.

Every case is a test in the suite that drives the real thing: a real mosquitto, the real daemon
and HTTP server, real files (a FIFO, a symlink, a sparse file, a PNG header claiming 30000x30000,
non-UTF-8 names on disk). This script runs those tests by category through pytest, reads the
JUnit report and prints cases tried / handled cleanly per category, how many injected faults were
survived, and how many state changes were lost across real broker restarts (measured by the
outage test itself, which writes its counts to EDGESIGHT_BREAK_REPORT).

    scripts/break_test.py [--json FILE]

Exit 0 when every case is handled and no state change was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# category -> (pytest selections, whether its cases are injected faults rather than bad inputs)
CATEGORIES: dict[str, tuple[list[str], bool]] = {
    "remote control (MQTT commands)": (
        ["tests/test_remote_control.py", "tests/test_daemon_security.py", "-k", "not state_changes"],
        False,
    ),
    "bundles": (["tests/test_bundle_hardening.py", "tests/test_bundle.py"], False),
    "images": (["tests/test_image_limits.py", "tests/test_bad_inputs.py"], False),
    "dataset import": (["tests/test_data_import.py"], False),
    "config": (["tests/test_config.py"], False),
    "HTTP": (["tests/test_http_hardening.py"], False),
    "files (disk full, SIGKILL, quotas)": (["tests/test_daemon_files.py"], True),
    "time (clock steps)": (["tests/test_pipeline.py", "-k", "clock"], True),
    "broker outages": (["tests/test_remote_control.py", "-k", "state_changes"], True),
}


def run_category(selection: list[str], report_dir: Path, index: int) -> tuple[int, int, list[str]]:
    """Run one selection; return (tried, passed, names of failures)."""
    junit = report_dir / f"junit{index}.xml"
    python = ROOT / ".venv" / "bin" / "python"
    cmd = [str(python if python.exists() else sys.executable), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    subprocess.run([*cmd, *selection, f"--junitxml={junit}"], cwd=ROOT, capture_output=True, text=True)
    if not junit.exists():
        return 0, 0, ["pytest did not run"]
    tried = passed = 0
    failed = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            continue
        tried += 1
        if case.find("failure") is None and case.find("error") is None:
            passed += 1
        else:
            failed.append(case.get("name", "?"))
    return tried, passed, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        report_dir = Path(tmp)
        outage_report = report_dir / "outages.json"
        os.environ["EDGESIGHT_BREAK_REPORT"] = str(outage_report)
        os.environ.setdefault("EDGESIGHT_OUTAGES", "8")  # as many broker restarts as the break-test had
        for index, (category, (selection, fault)) in enumerate(CATEGORIES.items()):
            print(f"break-test: {category} ...", file=sys.stderr, flush=True)
            tried, passed, failed = run_category(selection, report_dir, index)
            rows.append({"category": category, "fault": fault, "tried": tried, "passed": passed, "failed": failed})
        outages = json.loads(outage_report.read_text()) if outage_report.exists() else None
    width = max(len(r["category"]) for r in rows)
    print(f"\n{'category':<{width}}  tried  handled")
    for r in rows:
        print(
            f"{r['category']:<{width}}  {r['tried']:>5}  {r['passed']:>7}"
            + ("" if not r["failed"] else "  FAILED: " + ", ".join(r["failed"]))
        )
    inputs = [r for r in rows if not r["fault"]]
    faults = [r for r in rows if r["fault"]]
    summary = {
        "cases_tried": sum(r["tried"] for r in rows),
        "handled_cleanly": sum(r["passed"] for r in rows),
        "bad_inputs": [sum(r["passed"] for r in inputs), sum(r["tried"] for r in inputs)],
        "faults_survived": [sum(r["passed"] for r in faults), sum(r["tried"] for r in faults)],
        "state_changes": outages,
    }
    print(
        f"\ncases tried {summary['cases_tried']}, handled cleanly {summary['handled_cleanly']}; "
        f"bad inputs {summary['bad_inputs'][0]}/{summary['bad_inputs'][1]}, "
        f"faults survived {summary['faults_survived'][0]}/{summary['faults_survived'][1]}"
    )
    lost = None
    if outages:
        lost = outages["changes"] - outages["arrived"]
        print(
            f"broker outages: {outages['outages']}, state changes {outages['changes']}, "
            f"arrived {outages['arrived']} ({outages['late']} marked late), lost {lost}"
        )
    else:
        print("broker outages: the outage test wrote no counts (did it run?)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, **summary}, indent=2) + "\n", encoding="utf-8")
    ok = summary["cases_tried"] == summary["handled_cleanly"] and lost == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
