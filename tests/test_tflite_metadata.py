"""Exported models carry standard TFLite metadata that MediaPipe Tasks' ImageClassifier reads.

A real one-epoch run is exported to int8, fp16 and float; each file must load in the real
``mediapipe`` ImageClassifier (which refuses a float model without NormalizationOptions and
gives no label names without a labels file), answer the same top-1 as ``edgesight predict``
on the shared photos, and still match the manifest's sha256 (metadata is written before hashing).
"""

from __future__ import annotations

import json

import pytest
from disc_runs import disc_run

from edgesight.device.core.bundle import sha256_file
from edgesight.device.core.preprocess import InputContract
from edgesight.trainer import metadata

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # a real train + export of three variants
vision = pytest.importorskip("mediapipe.tasks.python.vision", reason="mediapipe is not installed")

VARIANTS = ("model.tflite", "model_fp16.tflite", "model_float.tflite")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from conftest import run_cli

    root = tmp_path_factory.mktemp("metadata")
    exported = run_cli(
        "export", disc_run(tmp_path_factory), "--out", root / "bundle", "--name", "discs", "--version", "7.1",
        "--quant", "int8", "--quant", "fp16", "--quant", "float", "--no-probes", timeout=300,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    return root / "bundle"


def _mediapipe_top1(model, image_path):
    import mediapipe as mp
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(model)), max_results=1)
    classifier = vision.ImageClassifier.create_from_options(options)
    try:
        result = classifier.classify(mp.Image.create_from_file(str(image_path)))
    finally:
        classifier.close()
    best = result.classifications[0].categories[0]
    return best.category_name, best.score


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_classifies_in_mediapipe_with_label_names_like_predict(cli, bundle, images_dir, variant):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["files"][variant]["sha256"] == sha256_file(bundle / variant)  # hashed with its metadata
    photos = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in (".jpg", ".bmp"))[:4]
    predicted = cli("predict", bundle, *photos, "--model-file", variant, "--json", "--top-k", "1")
    assert predicted.returncode == 0, predicted.stderr
    ours = [json.loads(line)["top"][0] for line in predicted.stdout.splitlines()]
    for photo, answer in zip(photos, ours):
        name, score = _mediapipe_top1(bundle / variant, photo)
        assert name == answer["label"], f"{photo.name}: mediapipe says {name}, predict says {answer['label']}"
        assert name in ("blue", "green", "red")  # a label name, not an index
        assert abs(score - answer["score"]) < 0.05


def test_metadata_has_name_version_normalisation_and_labels_file(bundle):
    metadata._install_stand_in()  # mediapipe's metadata module needs it to import (see trainer/metadata.py)
    from mediapipe.tasks.python.metadata import metadata as mp_metadata

    displayer = mp_metadata.MetadataDisplayer.with_model_file(str(bundle / "model_float.tflite"))
    info = json.loads(displayer.get_metadata_json())
    assert info["name"] == "discs" and info["version"] == "7.1" and "3 classes" in info["description"]
    tensor = info["subgraph_metadata"][0]["input_tensor_metadata"][0]
    options = tensor["process_units"][0]["options"]
    assert options["mean"] == [0.0] and options["std"] == [1.0]  # the bundle's contract: raw pixels
    files = info["subgraph_metadata"][0]["output_tensor_metadata"][0]["associated_files"]
    assert files[0]["type"] == "TENSOR_AXIS_LABELS"
    labels = displayer.get_associated_file_buffer(files[0]["name"]).decode().split()
    assert labels == ["blue", "green", "red"]


def test_a_file_that_is_not_a_model_is_one_clear_error():
    contract = InputContract(8, 8)
    with pytest.raises(metadata.MetadataError, match="refused the model"):
        metadata.with_metadata(b"not a flatbuffer", ["a"], contract, name="n", version="1", description="d")


def test_missing_writer_names_the_extra_to_install(monkeypatch):
    monkeypatch.setattr(metadata.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(metadata.MetadataError) as caught:
        metadata.with_metadata(b"", ["a"], InputContract(8, 8), name="n", version="1", description="d")
    assert "mediapipe" in str(caught.value) and "\n" not in str(caught.value)


def test_shared_model_rewritten_twice_in_one_process_still_classifies(tmp_path, v2_model, imagenet_labels, images_dir):
    """Export writes three variants in one process: the writer must load again after the first."""
    labels = imagenet_labels.read_text().splitlines()
    contract = InputContract(224, 224, mean=127.5, std=127.5)
    paths = [tmp_path / "a.tflite", tmp_path / "b.tflite"]
    for path in paths:
        path.write_bytes(v2_model.read_bytes())
    metadata.add_metadata(paths, labels, contract, name="mnv2", version="2")
    for path in paths:
        assert _mediapipe_top1(path, images_dir / "cat.bmp")[0] == "Egyptian cat"
