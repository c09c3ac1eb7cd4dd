"""A hostile or broken bundle: names reaching outside, links, FIFOs, devices, sparse giants, wrong types, swaps.

Every case uses real files (a symlink, a FIFO from ``os.mkfifo``, a sparse file from
``truncate``, ``/dev/zero``) and checks that the device refuses it with one line naming the
file or key, quickly, through the library and the CLI (exit 1, no traceback).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import assert_one_line_error, testdata_path

from edgesight.device.classify import Classifier
from edgesight.device.core.bundle import load_bundle, read_labels, resolve_model, write_bundle
from edgesight.device.core.errors import BundleError
from edgesight.device.core.preprocess import InputContract, read_image
from edgesight.device.runtimes.choice import kind_for_file

CAT = testdata_path("images", "cat.bmp")


@pytest.fixture
def bundle(tmp_path, v1_model, imagenet_labels) -> Path:
    """The small shared MobileNet V1 (128x128, int8) as a bundle."""
    return write_bundle(
        tmp_path / "v1",
        {"model.tflite": v1_model},
        read_labels(imagenet_labels),
        name="imagenet-v1",
        version="1.0.0",
        architecture={"name": "mobilenet_v1", "alpha": 0.25, "input_size": 128},
        contract=InputContract(128, 128, "uint8", 0.0078125, 128, mean=128.0, std=128.0, fit="centre"),
        background_index=0,
    )


def edit(bundle: Path, change) -> None:
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def listed(bundle: Path, name: str, data: bytes | None = None, size: int | None = None) -> None:
    """List ``name`` in the manifest with the sha256 (and size) of ``data``."""
    data = b"" if data is None else data
    entry: dict = {"sha256": hashlib.sha256(data).hexdigest()}
    if size is not None:
        entry["bytes"] = size
    edit(bundle, lambda m: m["files"].__setitem__(name, entry))


def refused(bundle: Path, *fragments: str, cli, seconds: float = 20.0) -> None:
    """The library raises one BundleError naming ``fragments``; predict and info exit 1 with one line."""
    t0 = time.monotonic()
    with pytest.raises(BundleError) as caught:
        load_bundle(bundle)
    assert time.monotonic() - t0 < seconds
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)
    assert_one_line_error(cli("predict", bundle, CAT, timeout=60), *fragments, code=1)
    assert_one_line_error(cli("info", bundle, timeout=60), *fragments, code=1)


# --------------------------------------------------------------------------- names and links


@pytest.mark.parametrize("name", ["../outside.tflite", "sub/../../outside.tflite", "/etc/hostname", "..", "a\\b"])
def test_listed_names_must_be_plain_file_names_inside_the_bundle(bundle, tmp_path, cli, name):
    outside = tmp_path / "outside.tflite"
    outside.write_bytes(b"secret")
    listed(bundle, name, b"secret", 6)
    refused(bundle, "manifest.json", "not a plain file name", cli=cli)


def test_default_model_outside_the_bundle_is_refused(bundle, tmp_path, v1_model, cli):
    shutil.copy(v1_model, tmp_path / "elsewhere.tflite")
    data = (tmp_path / "elsewhere.tflite").read_bytes()
    edit(
        bundle,
        lambda m: (
            m["files"].__setitem__("../elsewhere.tflite", {"sha256": hashlib.sha256(data).hexdigest()}),
            m.__setitem__("default_model", "../elsewhere.tflite"),
        ),
    )
    refused(bundle, "not a plain file name", cli=cli)


def test_model_file_flag_cannot_name_a_path(bundle, cli):
    with pytest.raises(BundleError, match="not a plain file name"):
        load_bundle(bundle, "../../etc/passwd")
    result = cli("predict", bundle, CAT, "--model-file", "/etc/passwd")
    assert_one_line_error(result, "not a plain file name", code=1)


def test_symlinked_model_pointing_outside_is_refused(bundle, tmp_path, v1_model, cli):
    """Same bytes, same hash, same size: still refused, because the bundle does not hold the file."""
    outside = tmp_path / "outside.tflite"
    shutil.copy(v1_model, outside)
    (bundle / "model.tflite").unlink()
    (bundle / "model.tflite").symlink_to(outside)
    refused(bundle, "model.tflite", "symlink", cli=cli)


def test_a_symlinked_bundle_directory_still_loads(bundle, tmp_path):
    """``models/current -> models/v3`` is how a device switches bundles; only the files may not be links."""
    current = tmp_path / "current"
    current.symlink_to(bundle, target_is_directory=True)
    assert load_bundle(current).model_path == current / "model.tflite"


# --------------------------------------------------------------------------- not regular files


def test_fifo_in_the_manifest_is_refused_without_hanging(bundle, cli):
    os.mkfifo(bundle / "model_fp16.tflite")
    listed(bundle, "model_fp16.tflite", b"", 0)
    refused(bundle, "model_fp16.tflite", "FIFO", cli=cli, seconds=5)


def test_dev_zero_in_the_manifest_is_refused_without_hanging(bundle, cli):
    listed(bundle, "/dev/zero", b"")
    refused(bundle, "/dev/zero", "not a plain file name", cli=cli, seconds=5)
    edit(bundle, lambda m: m["files"].pop("/dev/zero"))
    (bundle / "zero.bin").symlink_to("/dev/zero")
    listed(bundle, "zero.bin", b"")
    refused(bundle, "zero.bin", "symlink", cli=cli, seconds=5)


def test_dev_zero_as_a_labels_file_is_refused(v1_model, cli):
    result = cli("predict", v1_model, CAT, "--labels", "/dev/zero", timeout=30)
    assert_one_line_error(result, "/dev/zero", "not a regular file", code=1)


def test_a_directory_as_the_model_is_refused(bundle, cli):
    (bundle / "model_dir.tflite").mkdir()
    listed(bundle, "model_dir.tflite", b"")
    edit(bundle, lambda m: m.__setitem__("default_model", "model_dir.tflite"))
    refused(bundle, "model_dir.tflite", "directory", cli=cli)


def test_sparse_giant_declared_small_is_refused_before_hashing(bundle, cli):
    giant = bundle / "model_float.tflite"
    with giant.open("wb") as handle:
        handle.truncate(4 << 30)  # 4 GiB, no blocks on disk
    listed(bundle, "model_float.tflite", b"0123456789", 10)
    refused(bundle, "model_float.tflite", "size does not match", cli=cli, seconds=2)


def test_sparse_giant_without_a_declared_size_is_bounded(bundle):
    """Old manifests list only the hash: the largest model a device loads still bounds the read."""
    giant = bundle / "model_float.tflite"
    with giant.open("wb") as handle:
        handle.truncate(4 << 30)
    edit(bundle, lambda m: m["files"].__setitem__("model_float.tflite", "0" * 64))
    t0 = time.monotonic()
    with pytest.raises(BundleError, match="model_float.tflite: is 4294967296 bytes, more than"):
        load_bundle(bundle)
    assert time.monotonic() - t0 < 2


def test_the_writer_declares_every_size(bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        assert entry["bytes"] == (bundle / name).stat().st_size


# --------------------------------------------------------------------------- one schema check


@pytest.mark.parametrize(
    "change, fragments",
    [
        (lambda m: m.__setitem__("input", 5), ("input: expected an object, got 5",)),
        (lambda m: m.__setitem__("output", "x"), ("output: expected an object, got 'x'",)),
        (lambda m: m.__setitem__("default_model", ["model.tflite"]), ("default_model: expected a file name",)),
        (lambda m: m["input"].__setitem__("std", 0), ("input.std: expected a finite number > 0, got 0",)),
        (lambda m: m["input"].__setitem__("mean", "128"), ("input.mean: expected a finite number",)),
        (lambda m: m["input"].__setitem__("size", [128]), ("input.size: expected [height, width]",)),
        (lambda m: m["input"].__setitem__("fit", 3), ("input.fit",)),
        (lambda m: m["output"].__setitem__("num_classes", "1001"), ("output.num_classes",)),
        (lambda m: m["output"].__setitem__("background_index", 5000), ("output.background_index",)),
        (lambda m: m.__setitem__("files", ["model.tflite"]), ("'files' must map file names",)),
        (lambda m: m["files"]["model.tflite"].__setitem__("bytes", "big"), ("files.model.tflite.bytes",)),
        (lambda m: m["files"]["model.tflite"].__setitem__("sha256", 12), ("files.model.tflite.sha256",)),
        (lambda m: m.__setitem__("name", {"x": 1}), ("name: expected a string",)),
        (lambda m: m.__setitem__("schema_version", True), ("schema_version True is not supported",)),
        (lambda m: m.__setitem__("metrics", []), ("metrics: expected an object",)),
    ],
)
def test_wrong_types_in_the_manifest_are_one_line_naming_the_key(bundle, cli, change, fragments):
    edit(bundle, change)
    refused(bundle, "manifest.json", *fragments, cli=cli)


def test_manifest_that_is_a_fifo_is_refused(bundle, cli):
    (bundle / "manifest.json").unlink()
    os.mkfifo(bundle / "manifest.json")
    t0 = time.monotonic()
    assert_one_line_error(cli("info", bundle, timeout=30), "manifest.json", "FIFO", code=1)
    assert time.monotonic() - t0 < 20


# --------------------------------------------------------------------------- time of check, time of use


def test_a_model_swapped_after_verification_is_never_served(bundle, v2_model):
    """Verified, then replaced on disk: every later classifier (workers, upload) runs the verified bytes."""
    spec = resolve_model(bundle)
    first = Classifier.open(spec, num_threads=1)
    expected = first.classify(read_image(CAT)).top
    # another valid model with the same output count: served, it would answer with 224x224 input
    os.replace(shutil.copy(v2_model, bundle / "swap.tmp"), bundle / "model.tflite")
    for _ in range(2):  # the daemon's extra workers
        worker = Classifier.open(spec, runtime=kind_for_file(spec.model_path), num_threads=1)
        assert worker.runtime.input.shape == (1, 128, 128, 3)
        assert worker.classify(read_image(CAT)).top == expected
    upload = Classifier.open(  # what the status page's upload classifier does
        dataclasses.replace(first.spec), runtime=kind_for_file(first.spec.model_path), num_threads=1
    )
    assert upload.runtime.input.shape == (1, 128, 128, 3)


def test_a_variant_swapped_after_verification_is_refused_not_served(tmp_path):
    """A file read later (model.onnx for runtime = "onnx") is hashed from the very bytes it loads."""
    pytest.importorskip("onnxruntime")
    from accel_models import make_bundle, tiny_models

    made = make_bundle(tiny_models(testdata_path("images")), tmp_path / "tiny")
    spec = resolve_model(made)
    data = bytearray((made / "model.onnx").read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    (made / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.onnx: sha256 does not match"):
        Classifier.open(spec, runtime="onnx", num_threads=1)


def test_verification_is_bounded_in_time(bundle, monkeypatch):
    """A disk that delivers too slowly ends in a refusal, not a daemon stuck in verification."""
    import edgesight.device.core.bundle as bundle_module

    monkeypatch.setattr(bundle_module, "VERIFY_TIMEOUT_S", -1.0)
    with pytest.raises(BundleError, match="verification took longer than it may"):
        load_bundle(bundle)
