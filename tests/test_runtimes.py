"""Runtime selection: names, auto order, file-to-runtime rules, the config key and the CLI flag."""

from __future__ import annotations

import dataclasses
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


def test_workers_of_a_bare_model_share_one_copy_of_its_bytes(tmp_path):
    """Each worker's interpreter is built from the same buffer, read once (not a copy per worker),
    and still runs it: both classify the cat photo alike."""
    from edgesight.device.core.bundle import resolve_model
    from edgesight.device.core.preprocess import read_image

    spec = resolve_model(
        testdata_path("models", "mobilenet_v2_1.0_224_quant.tflite"), testdata_path("models", "imagenet_labels.txt")
    )
    first = Classifier.open(spec, runtime="litert", num_threads=1)
    second = Classifier.open(dataclasses.replace(spec, name="copy"), runtime="litert", num_threads=1)
    assert first.runtime._content is second.runtime._content
    image = read_image(testdata_path("images", "cat.bmp"))
    tops = [c.classify(image).top[0] for c in (first, second)]
    assert tops[0].label == tops[1].label and "cat" in tops[0].label and tops[0].score == tops[1].score


def test_the_registry_is_the_one_list_of_runtimes():
    """Names, auto order and the config/CLI choices derive from REGISTRY; each backend matches its line."""
    from edgesight.device.core.bundle import BUNDLE_FILES, runtime_files
    from edgesight.device.runtimes import REGISTRY, RUNTIME_NAMES, RuntimeOptions, backend

    assert RUNTIME_NAMES == tuple(entry.name for entry in REGISTRY) == tuple(RUNTIMES)
    assert RUNTIME_CHOICES == ("auto", *RUNTIME_NAMES)
    assert AUTO_ORDER == tuple(e.name for e in sorted(REGISTRY, key=lambda e: e.auto_rank))
    table = {entry.name for entry in BUNDLE_FILES}
    for name in RUNTIME_NAMES:
        found = backend(name)
        assert found.name == name
        assert found.bundle_file in table  # from core/bundle's one table, not spelled again
        assert issubclass(found.options_type, RuntimeOptions)
        options = found.options_type()
        with pytest.raises(dataclasses.FrozenInstanceError):  # options are values, not a mutable bag
            options.__setattr__("x", 1)
    for name in ("litert", "edgetpu", "onnx"):
        assert backend(name).bundle_file in runtime_files(name)


def test_runtime_options_are_typed(bundle):
    from edgesight.device.runtimes import options_for

    assert options_for("onnx").providers == ("CPUExecutionProvider",)
    assert options_for("edgetpu", device="usb:0").device == "usb:0"
    with pytest.raises(TypeError):
        options_for("onnx", provider="cuda")  # a misspelt option is an error, not silently ignored


def test_the_runtime_names_import_without_numpy_or_a_runtime():
    """What the config reads to list its choices must be cheap on a Pi."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from edgesight.device.runtimes import RUNTIME_CHOICES\n"
        "heavy = [m for m in ('numpy', 'cv2', 'onnxruntime', 'ai_edge_litert', 'tensorrt') if m in sys.modules]\n"
        "print(','.join(RUNTIME_CHOICES), heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "auto,litert,edgetpu,onnx,tensorrt []"


def test_no_runtime_module_spells_a_bundle_file_name():
    """Bundle file names come from core/bundle's table (they were MODEL_FILE/ONNX_FILE in three modules)."""
    import edgesight.device.runtimes as package

    folder = Path(package.__file__).parent
    for module in folder.glob("*.py"):
        text = module.read_text()
        for name in ('"model.onnx"', '"model_edgetpu.tflite"', '"model.tflite"', "MODEL_FILE =", "ONNX_FILE ="):
            assert name not in text, f"{module.name} spells {name}"


def test_backend_modules_import_the_base_types_not_the_registry():
    """No cycle: the registry imports a backend on demand, so a backend must not import the registry."""
    import ast

    import edgesight.device.runtimes as package

    folder = Path(package.__file__).parent
    for module in ("base", "tensors", "litert", "edgetpu", "onnx", "tensorrt"):
        tree = ast.parse((folder / f"{module}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                assert node.module is not None, f"{module}.py imports from the runtimes package itself"
