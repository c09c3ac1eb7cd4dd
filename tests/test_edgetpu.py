"""Edge TPU path: compile with (a fake) edgetpu_compiler; run via LiteRT's real load_delegate and a fake libedgetpu.

The delegate fake is a real shared library implementing the plugin ABI that ``load_delegate``
calls, so LiteRT's own loading code runs; it returns NULL unless told a TPU is attached, which
is what the real ``libedgetpu.so.1`` does with no stick plugged in.
"""

from __future__ import annotations

import json
import os

import pytest
from accel_models import build_fake_libedgetpu, install_fake_compiler, make_bundle, tiny_models
from conftest import assert_one_line_error, testdata_path

from edgesight.device.classify import Classifier
from edgesight.device.core.bundle import load_bundle
from edgesight.device.core.errors import EdgesightError
from edgesight.device.runtimes import available_runtimes, unavailable_reason
from edgesight.device.runtimes.edgetpu import INSTALL_HINT as RUNTIME_HINT


@pytest.fixture(scope="module")
def models():
    return tiny_models(testdata_path("images"))


@pytest.fixture(scope="module")
def fake_lib(tmp_path_factory):
    return build_fake_libedgetpu(tmp_path_factory.mktemp("libedgetpu"))


@pytest.fixture(scope="module")
def compiled(models, tmp_path_factory):
    """(model_edgetpu.tflite, details) from the fake compiler on the int8 model."""
    from edgesight.trainer.edgetpu import compile_edgetpu

    folder = tmp_path_factory.mktemp("compiler")
    install_fake_compiler(folder / "bin")
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{folder / 'bin'}{os.pathsep}{old}"
    try:
        return compile_edgetpu(models["int8"], folder / "out")
    finally:
        os.environ["PATH"] = old


@pytest.fixture(scope="module")
def tpu_bundle(models, compiled, tmp_path_factory):
    return make_bundle(models, tmp_path_factory.mktemp("tpu") / "tiny", edgetpu=compiled[0])


def tpu_env(fake_lib, trace, attached: bool) -> dict:
    """Environment for a CLI run that finds the fake libedgetpu.so.1 by its real name."""
    return {
        "LD_LIBRARY_PATH": str(fake_lib.parent),
        "FAKE_EDGETPU_ATTACHED": "1" if attached else "0",
        "FAKE_EDGETPU_TRACE": str(trace),
    }


def test_compiler_output_is_parsed_into_op_counts(compiled, models):
    path, details = compiled
    assert path.name == "model_edgetpu.tflite" and path.stat().st_size == models["int8"].stat().st_size
    assert details["compiler_version"] == "16.0.384591198"
    assert details["total_ops"] >= 5
    assert details["ops_on_tpu"] == details["total_ops"] - 1 and details["ops_on_cpu"] == 1
    assert details["subgraphs"] == 1
    assert details["log_file"] == "model_edgetpu.log"
    mapped = sum(o["count"] for o in details["operators"] if o["status"] == "Mapped to Edge TPU")
    assert mapped == details["ops_on_tpu"]


def test_parse_log_when_every_op_maps():
    from edgesight.trainer.edgetpu import parse_compiler_log

    text = (
        "Edge TPU Compiler version 16.0.384591198\nNumber of Edge TPU subgraphs: 1\n"
        "Total number of operations: 71\nOperation log: m_edgetpu.log\nCompilation succeeded!\n"
    )
    assert parse_compiler_log(text) == {
        "compiler_version": "16.0.384591198",
        "subgraphs": 1,
        "total_ops": 71,
        "ops_on_tpu": 71,
        "ops_on_cpu": 0,
    }


def test_compiler_refuses_a_float_model(models, tmp_path, monkeypatch):
    from edgesight.trainer.edgetpu import compile_edgetpu

    install_fake_compiler(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(EdgesightError, match="Model not quantized"):
        compile_edgetpu(models["float"], tmp_path / "out")


def test_compiler_missing_says_how_to_install_it(models, tmp_path, monkeypatch):
    from edgesight.trainer.edgetpu import compile_edgetpu

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    monkeypatch.delenv("EDGETPU_COMPILER", raising=False)
    with pytest.raises(EdgesightError) as caught:
        compile_edgetpu(models["int8"], tmp_path / "out")
    message = str(caught.value)
    assert "\n" not in message
    for fragment in (
        "edgetpu_compiler not found",
        "coral-edgetpu-stable",
        "apt-get install edgetpu-compiler",
        "x86_64",
    ):
        assert fragment in message
    assert not (tmp_path / "out").exists()


def test_delegate_loads_when_a_tpu_is_attached(tpu_bundle, fake_lib, images_dir, tmp_path, monkeypatch):
    trace = tmp_path / "trace.txt"
    monkeypatch.setenv("EDGESIGHT_EDGETPU_LIB", str(fake_lib))
    monkeypatch.setenv("FAKE_EDGETPU_ATTACHED", "1")
    monkeypatch.setenv("FAKE_EDGETPU_TRACE", str(trace))
    tpu = Classifier.open(tpu_bundle, runtime="edgetpu")
    assert tpu.runtime.name == "ai_edge_litert+edgetpu"
    assert tpu.spec.model_path.name == "model_edgetpu.tflite"
    cpu = Classifier.open(tpu_bundle, runtime="litert")
    from edgesight.device.core.preprocess import read_image

    frame = read_image(images_dir / "cat_720p.jpg")
    assert tpu.classify(frame).best == cpu.classify(frame).best
    lines = trace.read_text().splitlines()
    assert lines[0].startswith("create") and "prepare" in lines  # LiteRT applied the delegate to the graph
    assert unavailable_reason("edgetpu") is None
    assert available_runtimes(load_bundle(tpu_bundle)) == ["edgetpu", "litert", "onnx"]


def test_no_tpu_attached_falls_back_to_the_cpu_model_with_a_warning(cli, tpu_bundle, fake_lib, images_dir, tmp_path):
    trace = tmp_path / "trace.txt"
    result = cli(
        "predict",
        tpu_bundle,
        images_dir / "cat.bmp",
        "--runtime",
        "edgetpu",
        "--json",
        env=tpu_env(fake_lib, trace, attached=False),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["top"][0]["label"]
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "WARNING" in warnings[0]
    assert "no Edge TPU attached" in warnings[0] and "model.tflite on the CPU" in warnings[0]
    assert trace.read_text().startswith("create-failed")
    info = cli("info", tpu_bundle, "--runtime", "edgetpu", env=tpu_env(fake_lib, trace, attached=False))
    assert "runtime:  ai_edge_litert " in info.stdout and "model.tflite" in info.stdout


def test_runtime_library_not_installed_falls_back_and_says_how_to_install(cli, tpu_bundle, images_dir):
    # The real loader with no libedgetpu.so.1 on this machine: OSError inside LiteRT's Delegate.
    result = cli(
        "predict",
        tpu_bundle,
        images_dir / "cat.bmp",
        "--runtime",
        "edgetpu",
        env={"LD_LIBRARY_PATH": "", "EDGESIGHT_EDGETPU_LIB": ""},
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "libedgetpu.so.1 not installed" in lines[0] and RUNTIME_HINT in lines[0]
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


def test_auto_picks_the_tpu_when_attached_and_the_cpu_when_not(cli, tpu_bundle, fake_lib, tmp_path):
    trace = tmp_path / "trace.txt"
    attached = json.loads(cli("info", tpu_bundle, "--json", env=tpu_env(fake_lib, trace, True)).stdout)
    assert attached["runtime"]["name"] == "ai_edge_litert+edgetpu"
    assert attached["model"].endswith("model_edgetpu.tflite")
    unplugged = cli("info", tpu_bundle, "--json", env=tpu_env(fake_lib, trace, False))
    assert json.loads(unplugged.stdout)["runtime"]["name"] == "ai_edge_litert"
    assert "model_edgetpu.tflite" in unplugged.stderr and "no Edge TPU attached" in unplugged.stderr


def test_bare_edgetpu_model_without_a_tpu_is_a_one_line_error(cli, compiled, fake_lib, images_dir, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\nd\ne\n")
    result = cli(
        "predict",
        compiled[0],
        images_dir / "cat.bmp",
        "--labels",
        labels,
        env=tpu_env(fake_lib, tmp_path / "t", attached=False),
    )
    assert_one_line_error(result, "no Edge TPU attached", code=1)


def test_bundle_without_compiled_model_and_edgetpu_runtime_warns_and_runs_on_cpu(cli, models, images_dir, tmp_path):
    plain = make_bundle(models, tmp_path / "plain")
    result = cli("predict", plain, images_dir / "cat.bmp", "--runtime", "edgetpu")
    assert result.returncode == 0, result.stderr
    assert "model_edgetpu.tflite" in result.stderr and "on the CPU" in result.stderr
