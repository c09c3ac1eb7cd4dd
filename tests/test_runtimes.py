"""Runtime selection: names, auto order, file-to-runtime rules, the config key and the CLI flag."""

from __future__ import annotations

from pathlib import Path

import pytest
from accel_models import make_bundle, tiny_models
from conftest import assert_one_line_error, testdata_path

from edgesight.device.classify import Classifier
from edgesight.device.core.errors import UsageError
from edgesight.device.runtimes import AUTO_ORDER, RUNTIME_CHOICES, RUNTIMES, unavailable_reason
from edgesight.device.runtimes.choice import kind_for_file


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tiny_models(testdata_path("images")), tmp_path_factory.mktemp("rt") / "tiny")


def test_every_runtime_is_registered_and_ordered_for_auto():
    assert set(AUTO_ORDER) == set(RUNTIMES) == {"litert", "edgetpu", "onnx", "tensorrt"}
    assert AUTO_ORDER[0] == "tensorrt" and AUTO_ORDER[-1] == "onnx"
    assert RUNTIME_CHOICES[0] == "auto"


@pytest.mark.parametrize(
    "name, kind",
    [
        ("model.tflite", "litert"),
        ("model_fp16.tflite", "litert"),
        ("model_edgetpu.tflite", "edgetpu"),
        ("model.onnx", "onnx"),
        ("model.trt10.3.0.orin-sm87.fp16.engine", "tensorrt"),
        ("x.plan", "tensorrt"),
    ],
)
def test_a_model_file_names_its_runtime(name, kind):
    assert kind_for_file(Path(name)) == kind


def test_missing_accelerator_libraries_are_reported_not_raised():
    assert unavailable_reason("litert") is None
    assert unavailable_reason("onnx") is None
    assert "not installed" in unavailable_reason("tensorrt")  # no TensorRT on this machine
    assert "libedgetpu" in unavailable_reason("edgetpu")


def test_unknown_runtime_is_a_usage_error(bundle, cli, images_dir):
    with pytest.raises(UsageError, match="unknown runtime 'cuda'"):
        Classifier.open(bundle, runtime="cuda")
    result = cli("predict", bundle, images_dir / "cat.bmp", "--runtime", "cuda")
    assert result.returncode == 2 and "invalid choice: 'cuda'" in result.stderr


def test_tensorrt_named_on_a_machine_without_it_is_one_line(cli, bundle, images_dir):
    result = cli("predict", bundle, images_dir / "cat.bmp", "--runtime", "tensorrt")
    assert_one_line_error(result, "TensorRT is not installed", "python3-libnvinfer", code=1)


def test_daemon_config_selects_the_runtime(cli, bundle, tmp_path, images_dir):
    config = tmp_path / "edgesight.toml"

    def use(runtime: str) -> None:
        config.write_text(
            f'[model]\npath = "{bundle}"\nruntime = "{runtime}"\n'
            f'[source]\nspec = "{images_dir}"\n[mqtt]\nenabled = false\n'
        )

    use("onnx")
    checked = cli("run", "--config", config, "--check")
    assert checked.returncode == 0, checked.stderr
    assert "on onnxruntime" in checked.stdout
    use("edgetpu")
    fallback = cli("run", "--config", config, "--check")
    assert fallback.returncode == 0 and "on ai_edge_litert" in fallback.stdout
    assert "model_edgetpu.tflite" in fallback.stderr and "on the CPU" in fallback.stderr
    use("gpu")
    assert_one_line_error(cli("run", "--config", config, "--check"), "runtime", '"gpu"', code=2)


def test_daemon_workers_share_one_runtime_decision(cli, bundle, tmp_path, images_dir):
    """Two workers, runtime = edgetpu, no TPU: the fallback is decided (and warned about) once."""
    config = tmp_path / "edgesight.toml"
    config.write_text(
        f'[model]\npath = "{bundle}"\nruntime = "edgetpu"\nworkers = 2\n'
        f'[source]\nspec = "{images_dir}"\n[mqtt]\nenabled = false\n'
    )
    result = cli("run", "--config", config, "--max-frames", "6")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("running model.tflite on the CPU") == 1, result.stderr
