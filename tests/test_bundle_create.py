"""``edgesight bundle create``: a third-party .tflite becomes a normal bundle that predict runs like the bare model."""

import json

import pytest
from conftest import assert_one_line_error, run_cli, testdata_path

from edgesight.device.classify import Classifier
from edgesight.device.core.bundle import load_bundle
from edgesight.device.core.preprocess import read_image

V2 = testdata_path("models", "mobilenet_v2_1.0_224_quant.tflite")
V1 = testdata_path("models", "mobilenet_v1_0.25_128_quant.tflite")
LABELS = testdata_path("models", "imagenet_labels.txt")


@pytest.fixture(scope="module")
def v2_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("create") / "v2"
    result = run_cli("bundle", "create", V2, "--labels", LABELS, "--out", out, "--name", "imagenet", "--version", "2")
    assert result.returncode == 0, result
    return out


def test_contract_and_background_come_from_the_model(v2_bundle):
    manifest = json.loads((v2_bundle / "manifest.json").read_text())
    assert manifest["name"] == "imagenet" and manifest["version"] == "2"
    assert manifest["input"]["size"] == [224, 224] and manifest["input"]["dtype"] == "uint8"
    assert manifest["input"]["scale"] == pytest.approx(0.0078125) and manifest["input"]["zero_point"] == 128
    assert manifest["output"] == {"num_classes": 1001, "background_index": 0}
    assert manifest["architecture"]["source"] == V2.name
    assert not (v2_bundle / "manifest.sig").exists() and not (v2_bundle / "probes").exists()  # both opt-in
    load_bundle(v2_bundle)  # hashes verify


def test_bundle_classifies_exactly_like_the_bare_model(v2_bundle):
    bare = Classifier.open(V2, LABELS, runtime="litert")
    bundled = Classifier.open(v2_bundle, runtime="litert")
    assert bundled.background_index == bare.background_index == 0
    for image in ("cat.bmp", "hot_dog.jpg", "sunflower.bmp"):
        frame = read_image(testdata_path("images", image))
        assert bundled.classify(frame).top == bare.classify(frame).top


def test_thousand_labels_for_1001_outputs_gets_the_background_added(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(line + "\n" for line in LABELS.read_text().splitlines()[1:]))
    out = tmp_path / "v1"
    result = run_cli("bundle", "create", V1, "--labels", labels, "--out", out, "--crop", "stretch")
    assert result.returncode == 0, result
    spec = load_bundle(out)
    assert spec.labels[0] == "background" and spec.background_index == 0 and len(spec.labels) == 1001
    assert spec.contract.fit == "stretch" and (spec.contract.height, spec.contract.width) == (128, 128)


def test_labels_that_do_not_match_the_outputs_are_one_line(tmp_path):
    labels = tmp_path / "five.txt"
    labels.write_text("a\nb\nc\nd\ne\n")
    result = run_cli("bundle", "create", V2, "--labels", labels, "--out", tmp_path / "out")
    assert_one_line_error(result, str(labels), "5 labels", "1001 outputs", code=1)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_existing_bundle_is_not_overwritten(v2_bundle):
    before = (v2_bundle / "manifest.json").read_bytes()
    result = run_cli("bundle", "create", V2, "--labels", LABELS, "--out", v2_bundle)
    assert_one_line_error(result, "already holds a bundle", code=1)
    assert (v2_bundle / "manifest.json").read_bytes() == before


def test_not_a_tflite_is_one_line(tmp_path):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"x")
    assert_one_line_error(
        run_cli("bundle", "create", junk, "--labels", LABELS, "--out", tmp_path / "o"), ".tflite", code=1
    )


def test_probes_and_signature_in_one_command(tmp_path):
    keys = run_cli("keys", "generate", tmp_path / "keys")
    assert keys.returncode == 0, keys
    out = tmp_path / "signed"
    result = run_cli(
        "bundle", "create", V2, "--labels", LABELS, "--out", out, "--probe", testdata_path("images"),
        "--max-probes", "3", "--sign", tmp_path / "keys" / "deploy.key",
    )  # fmt: skip
    assert result.returncode == 0, result
    probes = json.loads((out / "probes" / "probes.json").read_text())["probes"]
    assert len(probes) == 3 and all(p["file"].endswith(".png") for p in probes)
    manifest = json.loads((out / "manifest.json").read_text())
    assert "probes/probes.json" in manifest["files"]
    verify = run_cli("bundle", "verify", out, "--key", tmp_path / "keys" / "deploy.pub")
    assert verify.returncode == 0 and verify.stdout.startswith("ed25519:"), verify
    assert load_bundle(out).name == V2.stem
