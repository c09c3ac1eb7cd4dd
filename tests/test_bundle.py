"""Bundle round trip, tamper detection and the manifest contract."""

import json
import shutil

import pytest
from conftest import assert_one_line_error, testdata_path

from edgesight.device.classify import Classifier
from edgesight.device.core.bundle import SCHEMA_VERSION, load_bundle, read_labels, sha256_file, write_bundle
from edgesight.device.core.errors import BundleError
from edgesight.device.core.preprocess import InputContract, read_image


@pytest.fixture
def v2_bundle(tmp_path, v2_model, imagenet_labels):
    """The shared MobileNet V2 wrapped in a bundle, as a third-party model would be imported."""
    return write_bundle(
        tmp_path / "v2",
        {"model.tflite": v2_model},
        read_labels(imagenet_labels),
        name="imagenet-v2",
        version="1.0.0",
        architecture={"name": "mobilenet_v2", "alpha": 1.0, "input_size": 224},
        contract=InputContract(224, 224, "uint8", 0.0078125, 128, mean=128.0, std=128.0, fit="centre"),
        background_index=0,
        metrics={"int8": {"top1": 0.70}},
    )


def test_manifest_has_the_contract_fields(v2_bundle, v2_model):
    manifest = json.loads((v2_bundle / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["input"] == {
        "size": [224, 224],
        "color": "RGB",
        "fit": "centre",
        "mean": 128.0,
        "std": 128.0,
        "dtype": "uint8",
        "scale": 0.0078125,
        "zero_point": 128,
    }
    assert manifest["output"] == {"num_classes": 1001, "background_index": 0}
    assert manifest["files"]["model.tflite"]["sha256"] == sha256_file(v2_model)
    assert manifest["files"]["labels.txt"]["sha256"] == sha256_file(v2_bundle / "labels.txt")
    assert manifest["default_model"] == "model.tflite"
    assert manifest["created"].endswith("+00:00")


def test_round_trip_gives_the_same_results_as_the_bare_model(v2_bundle, v2_model, imagenet_labels):
    bare = Classifier.open(v2_model, imagenet_labels)
    bundled = Classifier.open(v2_bundle)  # no labels flag: the bundle carries them
    assert bundled.name == "imagenet-v2" and bundled.version == "1.0.0"
    for image in ("cat.bmp", "hot_dog.jpg", "sunflower.bmp"):
        frame = read_image(testdata_path("images", image))
        assert bundled.classify(frame).top == bare.classify(frame).top


@pytest.mark.parametrize("victim", ["model.tflite", "labels.txt"])
def test_tampered_file_is_refused_by_name(v2_bundle, victim, cli):
    with (v2_bundle / victim).open("ab") as handle:
        handle.write(b"x")
    with pytest.raises(BundleError, match=f"{victim}: size does not match"):  # caught before hashing
        load_bundle(v2_bundle)
    result = cli("predict", v2_bundle, testdata_path("images", "cat.bmp"))
    assert_one_line_error(result, victim, "does not match", code=1)


@pytest.mark.parametrize("victim", ["model.tflite", "labels.txt"])
def test_same_size_tampering_is_refused_by_its_hash(v2_bundle, victim):
    data = bytearray((v2_bundle / victim).read_bytes())
    data[-2] ^= 0xFF
    (v2_bundle / victim).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{victim}: sha256 does not match"):
        load_bundle(v2_bundle)


def test_tampered_manifest_is_refused(v2_bundle, cli):
    manifest = json.loads((v2_bundle / "manifest.json").read_text())
    manifest["output"]["num_classes"] = 1000
    (v2_bundle / "manifest.json").write_text(json.dumps(manifest))
    result = cli("info", v2_bundle)
    assert_one_line_error(result, "labels.txt", "1001 labels", "num_classes is 1000")
    (v2_bundle / "manifest.json").write_text("{not json")
    assert_one_line_error(cli("info", v2_bundle), "manifest.json", "not valid JSON")


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda m: m.pop("files"), "missing key(s) files"),
        (lambda m: m.pop("input"), "missing key(s) input"),
        (lambda m: m["input"].pop("fit"), "missing key(s) input.fit"),
        (lambda m: m.update(schema_version=99), "schema_version 99 is not supported"),
    ],
)
def test_malformed_manifest_is_refused(v2_bundle, cli, mutate, message):
    manifest = json.loads((v2_bundle / "manifest.json").read_text())
    mutate(manifest)
    (v2_bundle / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(cli("predict", v2_bundle, testdata_path("images", "cat.bmp")), "manifest.json", message)


def test_missing_listed_file_is_refused(v2_bundle):
    (v2_bundle / "labels.txt").unlink()
    with pytest.raises(BundleError, match="labels.txt: listed in manifest.json but missing"):
        load_bundle(v2_bundle)


def test_labels_count_must_match_model_outputs(tmp_path, v2_model, cli):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class{i}\n" for i in range(10)))
    result = cli("predict", v2_model, testdata_path("images", "cat.bmp"), "--labels", labels)
    assert_one_line_error(result, "10 labels", "1001 outputs", code=1)


def test_thousand_labels_for_1001_outputs_means_background_first(tmp_path, v2_model, imagenet_labels):
    labels = tmp_path / "labels1000.txt"
    labels.write_text("\n".join(read_labels(imagenet_labels)[1:]) + "\n")
    classifier = Classifier.open(v2_model, labels)
    assert classifier.background_index == 0
    assert classifier.classify(read_image(testdata_path("images", "cat.bmp"))).best.label == "Egyptian cat"


def test_bundle_copied_elsewhere_still_loads(v2_bundle, tmp_path):
    moved = shutil.copytree(v2_bundle, tmp_path / "on-the-pi")
    assert load_bundle(moved).model_path == moved / "model.tflite"


def test_info_prints_manifest_and_tensors(v2_bundle, cli):
    result = cli("info", v2_bundle)
    assert result.returncode == 0, result.stderr
    assert "imagenet-v2 1.0.0" in result.stdout
    assert "sha256 verified" in result.stdout
    assert "[1, 224, 224, 3] uint8" in result.stdout
    assert "background_index=0" in result.stdout
    as_json = json.loads(cli("info", v2_bundle, "--json").stdout)
    assert as_json["output"]["classes"] == 1001 and as_json["runtime"]["name"] == "ai_edge_litert"


def test_info_prints_the_agreement_figures_or_says_not_measured(tmp_path, v1_model, imagenet_labels, cli):
    """It printed ``agreement_with_float:`` with nothing after it and left out the ONNX agreement."""

    def bundle(name, metrics, extra=None):
        return write_bundle(
            tmp_path / name,
            {"model.tflite": v1_model},
            read_labels(imagenet_labels),
            name=name,
            version="1",
            architecture={},
            contract=InputContract(128, 128, "uint8", 0.0078125, 128, mean=128.0, std=128.0),
            background_index=0,
            metrics=metrics,
            extra=extra,
        )

    measured = bundle(
        "measured",
        {"int8": {"top1": 0.7}, "agreement_with_float": {"int8": {"top1_agreement": 0.99, "max_score_diff": 0.031}}},
        {"onnx": {"images": 50, "top1_agreement": 1.0, "max_score_diff": 0.00012}},
    )
    out = cli("info", measured).stdout
    assert "agreement_with_float:" not in out
    assert "int8 vs float: top-1 0.990, max score difference 0.0310" in out
    assert "model.onnx vs TFLite: top-1 1.000, max score difference 0.0001 on 50 images" in out
    unmeasured = bundle("unmeasured", {"int8": {"top1": 0.7}, "agreement_with_float": {"int8": {}}})
    out = cli("info", unmeasured).stdout
    assert "int8 vs float: not measured" in out
    assert "quantized vs float: not measured" in cli("info", bundle("bare", {})).stdout


def test_only_the_probes_folder_may_hold_manifest_files_and_it_must_not_be_a_symlink(tmp_path):
    """``probes/<name>`` is the one sub-folder name a manifest may list; a symlinked probes/ is refused."""
    from edgesight.device.core.manifest import check_file_name
    from edgesight.device.core.safefile import read_regular

    assert check_file_name("probes/probes.json", "m") == "probes/probes.json"
    for bad in ("other/x.json", "probes/../model.tflite", "probes/", "probes/a/b"):
        with pytest.raises(BundleError, match="not a plain file name"):
            check_file_name(bad, "m")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "probes.json").write_text("{}")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "probes").symlink_to(outside)
    with pytest.raises(BundleError, match="is a symlink"):
        read_regular(bundle / "probes" / "probes.json", follow_symlinks=False)
