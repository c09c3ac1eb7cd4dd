"""The daemon config: one schema, the documented example in sync with it, one-line errors naming the key."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT, assert_one_line_error

from edgesight.device.config import SCHEMA, load_config, render_example, validate
from edgesight.device.core.errors import ConfigError
from edgesight.device.core.tomlfile import tomllib

EXAMPLE = ROOT / "systemd" / "edgesight.toml"


def test_example_file_documents_every_key_and_matches_the_schema():
    text = EXAMPLE.read_text()
    assert text == render_example(), "systemd/edgesight.toml is stale: regenerate it with render_example()"
    for section in SCHEMA:
        assert f"[{section.name}]" in text
        for key in section.keys:
            assert f"{key.name} = " in text, key.name
    config = load_config(EXAMPLE)  # the example itself is valid
    assert config.mqtt.port == 1883 and config.state.threshold == 0.5
    # uncommenting every example value must also validate
    uncommented = re.sub(r"^# ([a-z_]+ = )", r"\1", text, flags=re.M)
    validate(tomllib.loads(uncommented), "example")


@pytest.mark.parametrize(
    "body, fragments",
    [
        ('[mqtt]\nport = "abc"\n', ['[mqtt] port: expected an integer 1..65535, got "abc"']),
        ("[mqtt]\nport = 70000\n", ["[mqtt] port:", "1..65535", "70000"]),
        ("[mqtt]\nprot = 1883\n", ["[mqtt] prot: unknown key", "port"]),
        ("[mqt]\nport = 1883\n", ["[mqt]: unknown section"]),
        ("[state]\nthreshold = 1.5\n", ["[state] threshold:", "0..1"]),
        ("[source]\nloop = 1\n", ["[source] loop: expected true or false, got 1"]),
        ('[source]\nstream = "side"\n', ['[source] stream: expected one of "main", "lores"']),
        ('[mqtt]\ncommands = ["reboot"]\n', ["[mqtt] commands:", '"reload"']),
        ("[mqtt\nport = 1\n", ["not valid TOML"]),
    ],
)
def test_bad_values_name_the_file_and_key(tmp_path, body, fragments):
    path = tmp_path / "config.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_numbers_widen_and_defaults_fill_in(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[state]\nmin_dwell = 2\n[mqtt]\ndevice_id = "porch"\n')
    config = load_config(path)
    assert config.state.min_dwell == 2.0 and isinstance(config.state.min_dwell, float)
    assert config.topic_prefix == "edgesight/porch" and config.mqtt.host == "localhost"


def test_cli_bad_config_exits_2_with_one_line(cli, tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[mqtt]\nport = "abc"\n')
    assert_one_line_error(cli("run", "--config", path), "config.toml: [mqtt] port: expected an integer", code=2)


def test_cli_flags_are_validated_like_the_file(cli, tmp_path):
    assert_one_line_error(cli("run", "--broker", "localhost:99999", "--model", "x.tflite"), "--broker", code=2)
    assert_one_line_error(
        cli("run", "--config", tmp_path / "missing.toml"), "missing.toml: no such config file", code=2
    )
    assert_one_line_error(cli("run", "--source", "x"), "no model", code=2)


def test_cli_missing_video_is_one_line_exit_1(cli, tmp_path, v2_model, imagenet_labels):
    result = cli(
        "run", "--model", v2_model, "--labels", imagenet_labels, "--source", tmp_path / "nope.mp4", "--no-mqtt"
    )
    assert_one_line_error(result, "nope.mp4: no such video file or image folder", code=1)


def test_cli_flags_override_the_file_and_check_passes(cli, tmp_path, v2_model, imagenet_labels, images_dir):
    path = tmp_path / "c.toml"
    path.write_text('[source]\nspec = "/nowhere"\n[mqtt]\ndevice_id = "file-id"\n')
    result = cli(
        "run",
        "--config",
        path,
        "--model",
        v2_model,
        "--labels",
        imagenet_labels,
        "--source",
        images_dir,
        "--device-id",
        "flag-id",
        "--check",
    )
    assert result.returncode == 0, result.stderr
    assert "topics edgesight/flag-id/" in result.stdout and str(images_dir) in result.stdout


def test_print_config_is_the_example(cli):
    result = cli("run", "--print-config")
    assert result.returncode == 0 and result.stdout == EXAMPLE.read_text()


def test_check_does_not_wait_for_a_missing_camera(cli, v2_model, imagenet_labels):
    result = cli("run", "--model", v2_model, "--labels", imagenet_labels, "--source", "57", "--check")
    assert_one_line_error(result, "video:57: cannot open", code=1)
