"""ONNX path: tf2onnx export of a real Keras model, onnxruntime vs the float TFLite model, the CLI's onnx runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest
from accel_models import LABELS, fitted_images, make_bundle, tiny_models
from conftest import assert_one_line_error, testdata_path

from edgesight.device.classify import Classifier
from edgesight.device.core.bundle import load_bundle
from edgesight.device.runtimes import available_runtimes


@pytest.fixture(scope="module")
def models():
    return tiny_models(testdata_path("images"))


@pytest.fixture(scope="module")
def bundle(models, tmp_path_factory):
    return make_bundle(models, tmp_path_factory.mktemp("onnx") / "tiny")


def test_onnx_agrees_with_float_tflite_on_the_shared_photos(models, bundle, images_dir):
    from edgesight.trainer.onnx_export import compare_with_tflite

    images = fitted_images(images_dir)
    result = compare_with_tflite(models["onnx"], models["float"], images)
    assert result["images"] == len(images) == 6
    assert result["top1_agreement"] == 1.0
    assert result["max_score_diff"] < 1e-4
    # The comparison means something only if the model's answers depend on the photo.
    onnx = Classifier.open(bundle, runtime="onnx")
    assert onnx.runtime.name == "onnxruntime" and onnx.spec.model_path.name == "model.onnx"
    scores = np.stack([onnx.infer(onnx.preprocess(img, order="RGB")) for img in images])
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-4)
    assert np.ptp(scores, axis=0).max() > 0.2
    assert len(set(scores.argmax(axis=1))) >= 2


def test_compare_against_the_int8_model_reports_the_quantization_gap(models, images_dir):
    from edgesight.trainer.onnx_export import compare_with_tflite

    result = compare_with_tflite(models["onnx"], models["int8"], fitted_images(images_dir))
    assert 0.5 <= result["top1_agreement"] <= 1.0
    assert 0.0 < result["max_score_diff"] < 0.2  # int8 differs, but not wildly


def test_predict_on_the_onnx_runtime_matches_the_float_tflite(cli, bundle, images_dir):
    onnx = cli("predict", bundle, images_dir, "--runtime", "onnx", "--json")
    assert onnx.returncode == 0, onnx.stderr
    tflite = cli("predict", bundle, images_dir, "--model-file", "model_float.tflite", "--json")
    assert tflite.returncode == 0, tflite.stderr
    a = [json.loads(line) for line in onnx.stdout.splitlines()]
    b = [json.loads(line) for line in tflite.stdout.splitlines()]
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        assert x["top"][0]["label"] == y["top"][0]["label"] in LABELS
        assert abs(x["top"][0]["score"] - y["top"][0]["score"]) < 1e-3


def test_info_names_the_runtime_and_the_file_it_runs(cli, bundle):
    onnx = cli("info", bundle, "--runtime", "onnx")
    assert onnx.returncode == 0, onnx.stderr
    assert "runtime:  onnxruntime" in onnx.stdout and "model.onnx" in onnx.stdout
    assert "float32" in onnx.stdout
    auto = cli("info", bundle, "--json")
    described = json.loads(auto.stdout)
    # auto: no TPU or GPU here, and the int8 model on LiteRT beats float ONNX on a CPU.
    assert described["runtime"]["name"] == "ai_edge_litert"
    assert described["model"].endswith("model.tflite")


def test_available_runtimes_lists_what_the_bundle_and_machine_allow(bundle, models, tmp_path):
    assert available_runtimes(load_bundle(bundle)) == ["litert", "onnx"]
    without_onnx = make_bundle(models, tmp_path / "no-onnx", onnx=False)
    assert available_runtimes(load_bundle(without_onnx)) == ["litert"]
    assert "litert" in available_runtimes() and "onnx" in available_runtimes()


def test_bare_onnx_model_with_labels(cli, models, images_dir, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    result = cli("predict", models["onnx"], images_dir / "cat.bmp", "--labels", labels, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["top"][0]["label"] in LABELS


def test_onnx_runtime_errors_are_one_line(cli, models, bundle, images_dir, tmp_path):
    without_onnx = make_bundle(models, tmp_path / "no-onnx", onnx=False)
    assert_one_line_error(
        cli("predict", without_onnx, images_dir / "cat.bmp", "--runtime", "onnx"), "model.onnx", code=1
    )
    assert_one_line_error(
        cli("predict", models["onnx"], images_dir / "cat.bmp", "--runtime", "litert"),
        "model.onnx",
        "onnx runtime, not litert",
        code=2,
    )
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf at all")
    assert_one_line_error(cli("info", broken), "broken.onnx", "not a loadable ONNX model", code=1)


def test_nchw_onnx_models_get_the_same_rgb_pixels(tmp_path):
    """A channels-first model (the PyTorch layout) is fed by the one NHWC preprocessing, transposed."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["scores"])],
        "channel_means",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "means.onnx"
    onnx.save(model, str(path))
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    classifier = Classifier.open(path, tmp_path / "labels.txt")
    assert classifier.runtime.input.shape == (1, 8, 8, 3) and classifier.runtime.name == "onnxruntime"
    frame = np.zeros((16, 16, 3), np.uint8)
    frame[..., 2] = 255  # BGR: pure red
    assert classifier.classify(frame).best.label == "red"
    frame = frame[..., ::-1].copy()  # now pure blue in BGR
    assert classifier.classify(frame).best.label == "blue"


def test_onnx_of_a_quantized_tflite_model_keeps_the_oracle(tmp_path, v1_model, imagenet_labels, cli):
    """tf2onnx --tflite drops the quantization of input and output: pixels in, 0..1 scores out."""
    import subprocess
    import sys

    onnx_path = tmp_path / "v1.onnx"
    subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--tflite", str(v1_model), "--output", str(onnx_path)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    result = cli("predict", onnx_path, testdata_path("images", "cat.bmp"), "--labels", imagenet_labels, "--json")
    assert result.returncode == 0, result.stderr
    best = json.loads(result.stdout.splitlines()[0])["top"][0]
    assert best["index"] == 286 and 0.5 <= best["score"] <= 1.0
