"""The broker flags ``deploy`` and ``fleet`` share: --broker, --config, auth and TLS, --prefix-root."""

from __future__ import annotations

import argparse

from ..core.errors import UsageError
from ..core.tomlfile import read_secret
from ..deploy.sender import Broker


def add_broker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker", metavar="HOST[:PORT]", help="the broker the devices use (default: [mqtt] of --config)"
    )
    parser.add_argument(
        "--config", metavar="FILE", help="a device config whose [mqtt] host, port, auth and TLS to reuse"
    )
    parser.add_argument("--prefix-root", default="edgesight", help="topics are ROOT/<device>/... (default: edgesight)")
    parser.add_argument("--username", help="broker user name")
    parser.add_argument("--password-file", metavar="FILE", help="file holding the broker password (first line)")
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument("--ca-file", metavar="PEM", help="CA certificate of the broker")


def broker_from_args(args: argparse.Namespace) -> Broker:
    from ..mqtt.link import parse_broker

    broker = Broker("localhost")
    if args.config:
        from ..config import load_config

        m = load_config(args.config).mqtt
        password = read_secret(m.password_file, "[mqtt] password_file") if m.password_file else m.password
        broker = Broker(m.host, m.port, m.username, password, m.tls, m.ca_file, m.cert_file, m.key_file)
    elif not args.broker:
        raise UsageError("say which broker: --broker HOST[:PORT] or --config FILE")
    if args.broker:
        host, port = parse_broker(args.broker)
        broker.host, broker.port = host, port or broker.port
    if args.username:
        broker.username = args.username
    if args.password_file:
        broker.password = read_secret(args.password_file, "--password-file")
    if args.tls:
        broker.tls = True
    if args.ca_file:
        broker.ca_file, broker.tls = args.ca_file, True
    if any(c in args.prefix_root for c in "+#") or not args.prefix_root.strip("/"):
        raise UsageError(f"--prefix-root {args.prefix_root!r}: must be a plain topic level (no '+' or '#')")
    return broker
