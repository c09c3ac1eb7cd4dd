"""``edgesight deploy``: send a signed bundle over the broker to devices, canaries first."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.errors import UsageError
from .broker_args import add_broker_args, broker_from_args


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE", help="a signed bundle folder (edgesight bundle sign)")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--device", action="append", metavar="ID", help="a device id (repeat for several)")
    who.add_argument("--all", action="store_true", help="every device with a retained availability under the root")
    parser.add_argument(
        "--canary", type=int, default=0, metavar="N", help="first N devices get it first; any failure stops"
    )
    parser.add_argument(
        "--wait", type=float, default=300.0, metavar="S", help="seconds to wait for each phase (default 300)"
    )
    parser.add_argument("--key", metavar="KEY", help="sign the bundle with this deploy.key first")
    parser.add_argument(
        "--url",
        metavar="URL",
        help="devices pull the packed bundle from this http(s):// or file:// URL instead of over the broker",
    )
    parser.add_argument(
        "--pack-to", metavar="FILE", help="write the packed bundle (the bytes --url must serve) to FILE first"
    )
    add_broker_args(parser)


def run(args: argparse.Namespace) -> int:
    from ..core.signing import sign_bundle
    from ..deploy.sender import Sender, Watcher, package

    bundle = Path(args.bundle)
    if args.canary < 0 or args.wait <= 0:
        raise UsageError("--canary must be >= 0 and --wait > 0")
    if args.url and not args.url.startswith(("http://", "https://", "file://")):
        raise UsageError(f"--url {args.url[:100]!r}: must start with http://, https:// or file://")
    broker = broker_from_args(args)
    if args.key:
        sign_bundle(bundle, args.key)
    pkg = package(bundle)
    if args.pack_to:
        try:
            Path(args.pack_to).write_bytes(pkg.data)
        except OSError as exc:
            raise UsageError(f"--pack-to {args.pack_to}: cannot write ({exc.strerror})") from None
    watcher = Watcher(broker, args.prefix_root)
    try:
        watcher.settle(1.0)
        devices = list(dict.fromkeys(args.device or sorted(watcher.availability)))
        if not devices:
            raise UsageError(f"--all: no device has a retained {args.prefix_root}/+/availability on this broker")
        sender = Sender(watcher, pkg, wait_s=args.wait, url=args.url or "")
        outcomes = sender.deploy(devices, args.canary)
    finally:
        watcher.close()
    for outcome in outcomes:
        print(outcome.line())
    ok = all(o.ok for o in outcomes)
    print(
        f"deploy {pkg.name} {pkg.version}: {sum(o.ok for o in outcomes)} of {len(outcomes)} device(s) run it, "
        f"{sender.bytes_sent} bytes sent" + (f" ({sender.resends} chunk(s) resent)" if sender.resends else ""),
        file=sys.stderr,
    )
    return 0 if ok else 1
