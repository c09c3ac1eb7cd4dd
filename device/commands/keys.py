"""``edgesight keys``: make the Ed25519 key pair that signs bundles for a fleet."""

from __future__ import annotations

import argparse

from ..core.signing import generate_keys, key_fingerprint


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    gen = sub.add_parser(
        "generate", help="write DIR/deploy.key (private, mode 600) and DIR/deploy.pub; never overwrites"
    )
    gen.add_argument("dir", metavar="DIR", help="folder for the key pair (created if missing)")
    gen.set_defaults(_action=_generate)
    show = sub.add_parser("fingerprint", help="print the fingerprint of a public key")
    show.add_argument("pub", metavar="PUB", help="a deploy.pub file")
    show.set_defaults(_action=_fingerprint)


def _generate(args: argparse.Namespace) -> int:
    key_path, pub_path = generate_keys(args.dir)
    print(f"private key {key_path} (mode 600: keep it on the workstation, never copy it to a device)")
    print(f"public key  {pub_path} (copy to each device, list it in [deploy] trusted_keys)")
    print(f"fingerprint {key_fingerprint(pub_path)}")
    return 0


def _fingerprint(args: argparse.Namespace) -> int:
    print(key_fingerprint(args.pub))
    return 0


def run(args: argparse.Namespace) -> int:
    return int(args._action(args))
