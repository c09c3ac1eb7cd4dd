"""The face a newcomer meets: top-level help, --version, examples per verb, missing-module errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import run_cli

from edgesight import __version__
from edgesight.device.cli import EXAMPLES, VERBS, missing_module_message


def test_top_level_help_is_clean_prose_with_examples():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "``" not in result.stdout  # the module docstring's RST no longer leaks into the help
    assert "Raspberry Pi" in result.stdout and "examples:" in result.stdout
    assert "--version" in result.stdout


def test_version_comes_from_the_package():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"edgesight {__version__}"


def test_every_verb_has_examples():
    assert set(EXAMPLES) == set(VERBS)
    for verb in ("predict", "info", "run", "bench", "build-engine"):
        result = run_cli(verb, "--help")
        assert result.returncode == 0, result
        assert "examples:" in result.stdout
        # Raw layout: each example keeps its own line, starting with the command.
        assert f"  edgesight {verb} " in result.stdout


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("tomllib", ("'tomllib'", "pip install tomli", "[device]")),
        ("tomli", ("'tomli'", "pip install tomli")),
        ("tensorflow", ("'tensorflow'", "edgesight[trainer]")),
        ("cv2", ("'cv2'", "edgesight[device]")),
        ("paho.mqtt.client", ("'paho.mqtt.client'", "edgesight[device]")),
        ("onnxruntime", ("edgesight[onnx]",)),
    ],
)
def test_missing_module_names_the_module_and_what_provides_it(name, fragments):
    message = missing_module_message("run", name)
    for fragment in fragments:
        assert fragment in message
    if name not in ("tensorflow",):
        assert "trainer" not in message


def test_missing_tomllib_at_run_is_one_line_with_the_right_fix():
    """Python 3.10 without tomli: the old message blamed the trainer extra."""
    code = (
        "import sys; sys.modules['tomllib'] = None; sys.modules['tomli'] = None\n"
        "from edgesight.device.cli import main\n"
        "sys.exit(main(['run', '--print-config']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    # 3.11+ imports tomllib, 3.10 the tomli backport: either way the module and the fix are named
    assert ("'tomllib'" in lines[0] or "'tomli'" in lines[0]) and "pip install tomli" in lines[0]
    assert "edgesight[trainer]" not in lines[0]
