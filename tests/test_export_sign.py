"""``edgesight export --sign/--probe``: a real tiny run exported into a signed bundle with self-test probes.

The bundle the trainer writes must pass the device's own checks as is: ``bundle verify`` with the
public key, and ``bundle self-test`` reproducing the probes the export stored from the test split.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, run_cli, testdata_path
from disc_runs import COLOURS, write_photos

from edgesight.trainer.export import probe_candidates

# a real training from the shared weights, then exports with probes and signing:
# minutes on 2 cores, so scripts/long_tests.sh runs these, not scripts/test.sh.
pytestmark = pytest.mark.long

# ImageNet features (the shared weights file) make the head sure of itself after a few epochs: a
# random-init backbone leaves every test image ambiguous, and then no probe can be stored.
TRAIN_FLAGS = (
    "--alpha", "1.0", "--size", "160", "--epochs-head", "3", "--epochs-finetune", "0",
    "--batch-size", "16", "--lr-head", "0.01",
)  # fmt: skip


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("keys") / "keys"
    result = run_cli("keys", "generate", root)
    assert result.returncode == 0, result
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real few-epoch training run on coloured discs; its dataset has 2 test images per class."""
    root = tmp_path_factory.mktemp("export-sign")
    dataset, run = root / "dataset", root / "run"
    weights = testdata_path("weights", "mobilenet_v2_1.0_160_no_top.weights.h5")
    write_photos(root / "photos", per_class=20)
    for args in (
        ("data", "import", root / "photos", dataset),
        ("train", dataset, "--out", run, "--weights", weights, *TRAIN_FLAGS),
    ):
        result = run_cli(*args, timeout=600)
        assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout}\n{result.stderr}"
    return run


@pytest.fixture(scope="module")
def signed(run_dir: Path, keys: Path, tmp_path_factory) -> tuple[Path, str]:
    bundle = tmp_path_factory.mktemp("bundles") / "signed"
    result = run_cli("export", run_dir, "--out", bundle, "--sign", keys / "deploy.key", timeout=600)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return bundle, result.stdout


def test_probe_candidates_take_a_few_per_class_in_a_fixed_order() -> None:
    paths = [Path(f"d/{name}.png") for name in ("c2", "a1", "b1", "a2", "c1", "a3")]
    targets = np.array([2, 0, 1, 0, 2, 0])
    picked = probe_candidates(paths, targets)
    assert [p.stem for p in picked] == ["a1", "b1", "c1", "a2", "c2", "a3"]
    assert probe_candidates(list(reversed(paths)), targets[::-1]) == picked
    assert probe_candidates([], np.zeros(0)) == []


def test_signed_export_verifies_and_self_tests_on_the_device(signed, keys: Path) -> None:
    bundle, stdout = signed
    probes = json.loads((bundle / "probes" / "probes.json").read_text())
    assert 1 <= len(probes["probes"]) <= 6 and "litert" in probes["runtime"]
    assert all(p["source"] and p["source"].startswith(p["label"]) for p in probes["probes"])
    assert {p["label"] for p in probes["probes"]} == set(COLOURS)  # a few per class, not one class only
    assert "probes/probes.json" in json.loads((bundle / "manifest.json").read_text())["files"]

    verify = run_cli("bundle", "verify", bundle, "--key", keys / "deploy.pub")
    assert verify.returncode == 0, verify
    fingerprint = verify.stdout.strip()
    assert fingerprint.startswith("ed25519:")
    summary = re.search(r"self-test: (\d+) probes from test split; signed by (\S+)", stdout)
    assert summary, stdout
    assert int(summary.group(1)) == len(probes["probes"]) and summary.group(2) == fingerprint

    test = run_cli("bundle", "self-test", bundle, "--runtime", "litert")
    assert test.returncode == 0, test
    checked = int(test.stdout.split()[0])
    assert checked == len(probes["probes"]) >= 1 and "reproduced" in test.stdout


def test_loose_key_leaves_a_valid_unsigned_bundle_and_clears_stale_probes(
    signed, run_dir: Path, keys: Path, tmp_path: Path
) -> None:
    """Re-export over a signed bundle with a key others can read: one line, exit 2, bundle valid but unsigned."""
    bundle = tmp_path / "again"
    shutil.copytree(signed[0], bundle)
    loose = tmp_path / "loose.key"
    shutil.copyfile(keys / "deploy.key", loose)
    loose.chmod(0o644)
    result = run_cli("export", run_dir, "--out", bundle, "--quant", "int8", "--no-probes", "--sign", loose, timeout=600)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgesight: error:")]  # TF's converter
    assert len(errors) == 1, result.stderr  # also writes its own C++ log lines to stderr
    for fragment in (str(loose), "mode 0644", "valid but unsigned", "edgesight bundle sign"):
        assert fragment in errors[0], errors[0]
    assert not (bundle / "manifest.sig").exists()  # the old signature no longer matched the new manifest
    assert not (bundle / "probes" / "probes.json").exists() and not list((bundle / "probes").glob("probe_*.png"))
    assert_one_line_error(run_cli("bundle", "verify", bundle, "--key", keys / "deploy.pub"), "unsigned", code=1)
    test = run_cli("bundle", "self-test", bundle)
    assert test.returncode == 0 and "no self-test probes" in test.stdout, test
    sign = run_cli("bundle", "sign", bundle, "--key", keys / "deploy.key")
    assert sign.returncode == 0, sign


def test_bad_probe_and_key_options_fail_before_any_work(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "never"
    cases = [
        (("--max-probes", "0"), ("--max-probes must be at least 1",), 2),
        (("--probe", tmp_path / "nope"), ("no such file or directory",), 1),
        (("--sign", tmp_path / "missing.key"), ("missing.key", "no such private key file"), 2),
    ]
    for flags, fragments, code in cases:
        assert_one_line_error(run_cli("export", run_dir, "--out", out, *flags), *fragments, code=code)
    both = run_cli("export", run_dir, "--out", out, "--probe", tmp_path, "--no-probes")  # argparse: usage + 1 line
    assert both.returncode == 2 and "--no-probes: not allowed with argument --probe" in both.stderr, both
    assert not out.exists()
