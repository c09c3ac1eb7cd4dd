"""TensorRT path: build-engine and the tensorrt runtime against fakes of the TensorRT and cuda-python APIs.

The fakes (tests/fakes/) take the real calls (Builder, OnnxParser, BuilderConfig, Runtime,
ICudaEngine, IExecutionContext.execute_async_v3, cudaMalloc/cudaMemcpyAsync/streams); the fake
engine runs the bundle's ONNX model, so the scores checked here are the model's real ones.
"""

from __future__ import annotations

import json
import os

import pytest
from accel_models import FAKES, make_bundle, tiny_models
from conftest import assert_one_line_error, testdata_path


@pytest.fixture(scope="module")
def models():
    return tiny_models(testdata_path("images"))


@pytest.fixture
def bundle(models, tmp_path):
    return make_bundle(models, tmp_path / "tiny")


def jetson(version: str = "10.3.0", device: str = "Orin") -> dict:
    """Environment of a CLI run on a 'Jetson': the fakes importable as tensorrt and cuda."""
    path = os.pathsep.join(filter(None, [str(FAKES), os.environ.get("PYTHONPATH", "")]))
    return {"PYTHONPATH": path, "FAKE_TENSORRT_VERSION": version, "FAKE_CUDA_DEVICE_NAME": device}


def top1(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["top"][0]["label"] for line in result.stdout.splitlines()]


def test_build_engine_then_run_it_on_the_tensorrt_runtime(cli, bundle, images_dir):
    built = cli("build-engine", bundle, "--fp16", env=jetson())
    assert built.returncode == 0, built.stderr
    engine = bundle / "engines" / "model.trt10.3.0.orin-sm87.fp16.engine"
    assert engine.exists() and f"engine: {engine}" in built.stdout and "verified" in built.stdout
    meta = json.loads(engine.with_suffix(".json").read_text())
    assert meta["tensorrt_version"] == "10.3.0" and meta["device"] == "orin-sm87" and meta["precision"] == "fp16"
    assert meta["onnx_sha256"] == json.loads((bundle / "manifest.json").read_text())["files"]["model.onnx"]["sha256"]
    trt = cli("predict", bundle, images_dir, "--runtime", "tensorrt", "--json", env=jetson())
    float_tflite = cli("predict", bundle, images_dir, "--model-file", "model_float.tflite", "--json")
    assert top1(trt) == top1(float_tflite)
    info = cli("info", bundle, env=jetson())  # auto: the engine is the fastest thing here
    assert "runtime:  tensorrt 10.3.0" in info.stdout and "model.trt10.3.0.orin-sm87.fp16.engine" in info.stdout
    again = cli("build-engine", bundle, "--fp16", env=jetson())
    assert again.returncode == 0 and again.stdout.startswith("up to date:")


def test_engine_for_another_tensorrt_version_is_refused_then_rebuilt(cli, bundle, images_dir):
    assert cli("build-engine", bundle, env=jetson("8.6.2")).returncode == 0
    refused = cli("predict", bundle, images_dir / "cat.bmp", "--runtime", "tensorrt", env=jetson("10.3.0"))
    assert_one_line_error(
        refused, "built for TensorRT 8.6.2, this is TensorRT 10.3.0", f"edgesight build-engine {bundle}", code=1
    )
    auto = cli("predict", bundle, images_dir / "cat.bmp", "--json", env=jetson("10.3.0"))
    assert auto.returncode == 0 and "built for TensorRT 8.6.2" in auto.stderr  # warned, ran on LiteRT
    rebuilt = cli("build-engine", bundle, env=jetson("10.3.0"))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "built for TensorRT 8.6.2, this is TensorRT 10.3.0" in rebuilt.stdout and "left in place" in rebuilt.stdout
    assert (bundle / "engines" / "model.trt8.6.2.orin-sm87.fp32.engine").exists()  # another device's cache stays
    ok = cli("info", bundle, "--runtime", "tensorrt", env=jetson("10.3.0"))
    assert ok.returncode == 0 and "model.trt10.3.0.orin-sm87.fp32.engine" in ok.stdout


def test_a_bare_engine_from_another_version_is_refused_by_tensorrt_itself(cli, bundle, tmp_path, images_dir):
    assert cli("build-engine", bundle, env=jetson("8.6.2")).returncode == 0
    engine = tmp_path / "copied.engine"  # no sidecar: only TensorRT's own check is left
    engine.write_bytes((bundle / "engines" / "model.trt8.6.2.orin-sm87.fp32.engine").read_bytes())
    labels = bundle / "labels.txt"
    result = cli("predict", engine, images_dir / "cat.bmp", "--labels", labels, env=jetson("10.3.0"))
    assert_one_line_error(result, "copied.engine", "expecting library version 10.3.0 got 8.6.2", code=1)


def test_engine_built_on_another_gpu_is_not_used(cli, bundle, images_dir):
    assert cli("build-engine", bundle, "--fp16", env=jetson(device="Xavier")).returncode == 0
    result = cli("predict", bundle, images_dir / "cat.bmp", "--runtime", "tensorrt", env=jetson(device="Orin"))
    assert_one_line_error(result, "built on xavier-sm87, this GPU is orin-sm87", code=1)


def test_int8_engine_is_calibrated_on_the_given_photos(cli, bundle, images_dir):
    built = cli("build-engine", bundle, "--int8", "--calibration", images_dir, env=jetson())
    assert built.returncode == 0, built.stderr
    engine = bundle / "engines" / "model.trt10.3.0.orin-sm87.int8.engine"
    cache = engine.with_suffix(".calib").read_text()
    assert "(6 batches)" in cache  # TensorRT pulled every photo through the calibrator
    trt = cli("predict", bundle, images_dir, "--runtime", "tensorrt", "--json", env=jetson())
    assert len(top1(trt)) == 6


def test_build_engine_errors_are_one_line(cli, bundle, models, tmp_path, images_dir):
    no_trt = cli("build-engine", bundle)  # this machine has no TensorRT
    assert_one_line_error(no_trt, "TensorRT is not installed", "python3-libnvinfer", code=1)
    no_onnx = make_bundle(models, tmp_path / "no-onnx", onnx=False)
    assert_one_line_error(cli("build-engine", no_onnx, env=jetson()), "no model.onnx", "--onnx", code=1)
    assert_one_line_error(cli("build-engine", bundle, "--int8", env=jetson()), "--calibration", code=2)
    no_gpu = cli("build-engine", bundle, env={**jetson(), "FAKE_CUDA_DEVICES": "0"})
    assert_one_line_error(no_gpu, "CUDA", code=1)
    assert_one_line_error(
        cli("predict", bundle, images_dir, "--runtime", "tensorrt", env=jetson()),
        "no TensorRT engine for TensorRT 10.3.0 on orin-sm87",
        "build-engine",
    )


def test_auto_without_tensorrt_installed_is_silent(cli, bundle, images_dir):
    result = cli("predict", bundle, images_dir / "cat.bmp")
    assert result.returncode == 0 and result.stderr.strip() == ""
    assert "ai_edge_litert" in result.stdout.splitlines()[0]


def test_bench_compares_every_runtime_of_the_machine_in_one_table(cli, bundle, tmp_path):
    assert cli("build-engine", bundle, "--fp16", env=jetson()).returncode == 0
    out = tmp_path / "bench.json"
    result = cli(
        "bench",
        bundle,
        "--runtime",
        "all",
        "--runs",
        "5",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--skip",
        "preprocess,limit,sequential,pipeline,cold_start",
        "--no-progress",
        "--json",
        out,
        env=jetson(),
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["models"]
    assert [row["runtime"]["name"] for row in rows] == ["tensorrt", "ai_edge_litert", "onnxruntime"]
    assert rows[0]["path"].endswith("model.trt10.3.0.orin-sm87.fp16.engine")
    assert all(row["invoke"]["1"]["n"] == 5 for row in rows)
    table = result.stdout[result.stdout.index("Invoke latency") :]
    assert "tensorrt 10.3.0" in table and "onnxruntime" in table and "ai_edge_litert" in table
