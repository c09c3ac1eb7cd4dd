"""``edgesight export --onnx --edgetpu`` end to end: a real (tiny) training run, real tf2onnx, the fake compiler."""

from __future__ import annotations

import json
import os

import pytest
from accel_models import install_fake_compiler
from conftest import assert_one_line_error
from disc_runs import disc_run

from edgesight.device.core.bundle import sha256_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return disc_run(tmp_path_factory)


def test_export_writes_onnx_and_edgetpu_models_with_hashes_and_results(cli, run_dir, tmp_path):
    install_fake_compiler(tmp_path / "bin")
    bundle = tmp_path / "bundle"
    result = cli(
        "export",
        run_dir,
        "--out",
        bundle,
        "--onnx",
        "--edgetpu",
        "--quant",
        "int8",
        "--quant",
        "float",
        env={"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "ops on the Edge TPU" in result.stdout and "top-1 agreement" in result.stdout
    manifest = json.loads((bundle / "manifest.json").read_text())
    for name in ("model.onnx", "model_edgetpu.tflite"):
        assert manifest["files"][name]["sha256"] == sha256_file(bundle / name)
    assert manifest["onnx"]["top1_agreement"] == 1.0 and manifest["onnx"]["max_score_diff"] < 1e-3
    assert manifest["onnx"]["images"] >= 1
    tpu = manifest["edgetpu"]
    assert tpu["ops_on_tpu"] + tpu["ops_on_cpu"] == tpu["total_ops"] > 20 and tpu["ops_on_tpu"] > 0
    info = cli("info", bundle, "--runtime", "onnx")
    assert info.returncode == 0 and "runtime:  onnxruntime" in info.stdout and "sha256 verified" in info.stdout


def test_export_without_the_compiler_stops_before_converting(cli, run_dir, tmp_path):
    bundle = tmp_path / "bundle"
    path = os.pathsep.join(
        p
        for p in os.environ["PATH"].split(os.pathsep)
        if not (p and os.path.exists(os.path.join(p, "edgetpu_compiler")))
    )
    result = cli("export", run_dir, "--out", bundle, "--edgetpu", env={"PATH": path, "EDGETPU_COMPILER": ""})
    assert_one_line_error(result, "edgetpu_compiler not found", "apt-get install edgetpu-compiler", code=1)
    assert not bundle.exists()
