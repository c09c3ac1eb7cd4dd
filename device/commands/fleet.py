"""``edgesight fleet``: one row per device from the retained topics: model, deploy state, fps, drift."""

from __future__ import annotations

import argparse
import json

from .broker_args import add_broker_args, broker_from_args


def configure(parser: argparse.ArgumentParser) -> None:
    add_broker_args(parser)
    parser.add_argument("--json", action="store_true", help="one JSON list instead of the table")
    parser.add_argument("--listen", type=float, default=1.5, metavar="S", help="seconds to collect retained messages")


def run(args: argparse.Namespace) -> int:
    from ..deploy.fleet import survey, table

    found = survey(broker_from_args(args), args.prefix_root, args.listen)
    if args.json:
        print(json.dumps([r.as_dict() for r in found], indent=2))
    elif found:
        print(table(found))
    else:
        print(f"no device under {args.prefix_root}/ on this broker")
    return 0
