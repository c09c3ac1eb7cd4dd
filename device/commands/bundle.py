"""``edgesight bundle``: wrap a third-party model into a bundle; sign, verify and self-test bundles."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime, timezone
from pathlib import Path

from ..classify import Classifier
from ..core.bundle import DEFAULT_MODEL, MANIFEST, resolve_model, sha256_file, write_bundle
from ..core.errors import BundleError, EdgesightError
from ..core.preprocess import FITS, list_images
from ..core.signing import key_fingerprint, load_private_key, sign_bundle, verify_bundle
from ..runtimes import RUNTIME_CHOICES
from ..runtimes.choice import open_model
from ..selftest import DEFAULT_MAX_PROBES, run_self_test, write_probes
from .predict import fit_argument


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    create = sub.add_parser("create", help="wrap a .tflite model and its labels into a bundle")
    create.add_argument("model", metavar="MODEL.tflite", help="the model file")
    create.add_argument("--labels", metavar="FILE", required=True, help="labels file, one a line in output order")
    create.add_argument("--out", metavar="DIR", required=True, help="bundle directory to write (must not be a bundle)")
    create.add_argument("--name", help="bundle name (default: the model file's stem)")
    create.add_argument("--version", help="bundle version (default: the creation time, YYYY.MM.DD-HHMM)")
    create.add_argument("--sign", metavar="KEY", help="sign the bundle with this deploy.key")
    create.add_argument("--probe", metavar="DIR", help="folder of images stored as self-test probes")
    create.add_argument(
        "--max-probes", type=int, default=DEFAULT_MAX_PROBES, metavar="N", help="probes kept (default 8)"
    )
    create.add_argument(
        "--crop", type=fit_argument, choices=FITS, default="centre", help="how frames are fitted (default centre)"
    )
    create.set_defaults(_action=_create)

    sign = sub.add_parser("sign", help="write BUNDLE/manifest.sig with a private deploy key")
    sign.add_argument("bundle", metavar="BUNDLE")
    sign.add_argument("--key", metavar="KEY", required=True, help="the deploy.key file (mode 600)")
    sign.set_defaults(_action=_sign)

    verify = sub.add_parser("verify", help="check the signature and every file's hash; print the signer")
    verify.add_argument("bundle", metavar="BUNDLE")
    verify.add_argument("--key", metavar="PUB", nargs="+", required=True, help="trusted public key file(s)")
    verify.set_defaults(_action=_verify)

    test = sub.add_parser("self-test", help="reproduce the bundle's probes on this machine's runtime")
    test.add_argument("bundle", metavar="BUNDLE")
    test.add_argument("--runtime", choices=RUNTIME_CHOICES, default="auto", help="runtime to test (default auto)")
    test.add_argument("--tolerance", type=float, default=0.02, help="allowed score difference (default 0.02)")
    test.set_defaults(_action=_self_test)


def _create(args: argparse.Namespace) -> int:
    model = Path(args.model)
    out = Path(args.out)
    if model.suffix != ".tflite":
        raise BundleError(f"{model}: bundle create takes a .tflite model")
    if (out / MANIFEST).exists():
        raise EdgesightError(f"{out}: already holds a bundle; choose another --out or remove it first")
    if args.max_probes < 1:
        raise EdgesightError("--max-probes must be at least 1")
    key = load_private_key(args.sign) if args.sign else None  # a loose key fails before any work
    probes = list_images([args.probe]) if args.probe else []
    classifier = open_bare(model, Path(args.labels), args.crop)
    created = datetime.now(timezone.utc)
    write_bundle(
        out,
        {DEFAULT_MODEL: model},
        list(classifier.labels),
        name=args.name or model.stem,
        version=args.version or created.strftime("%Y.%m.%d-%H%M"),
        architecture={"family": "imported", "source": model.name, "source_sha256": sha256_file(model)},
        contract=classifier.contract,
        background_index=classifier.background_index,
    )
    print(
        f"wrote bundle {out} ({len(classifier.labels)} classes, {classifier.contract.height}x"
        f"{classifier.contract.width} {classifier.contract.dtype}, background {classifier.background_index})"
    )
    if probes:
        entries = write_probes(out, probes, max_probes=args.max_probes)
        print(f"stored {len(entries)} self-test probes in {out / 'probes'}")
    if key is not None:
        sign_bundle(out, args.sign)
        print(f"signed with {key_fingerprint(key)}")
    return 0


def open_bare(model: Path, labels: Path, fit: str) -> Classifier:
    """The model as predict sees it with --labels: contract from its tensors, background detected."""
    spec = resolve_model(model, labels)
    runtime, path = open_model(spec, "litert")
    spec = dataclasses.replace(spec, model_path=path)
    try:
        return Classifier(spec, runtime, fit=fit)
    except BundleError as exc:  # labels vs outputs: name the labels file the user gave
        raise BundleError(str(exc).replace("the labels file", str(labels))) from None


def _sign(args: argparse.Namespace) -> int:
    path = sign_bundle(args.bundle, args.key)
    print(f"{path}: signed with {key_fingerprint(load_private_key(args.key))}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    print(verify_bundle(args.bundle, args.key))
    return 0


def _self_test(args: argparse.Namespace) -> int:
    result = run_self_test(args.bundle, runtime=args.runtime, score_tolerance=args.tolerance)
    if not result.passed:
        raise BundleError(result.reason)
    print(result.reason)
    return 0


def run(args: argparse.Namespace) -> int:
    return int(args._action(args))
