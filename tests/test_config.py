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


FLOAT_KEYS = [(s.name, k.name) for s in SCHEMA for k in s.keys if k.type is float]
STRING_KEYS = [(s.name, k.name) for s in SCHEMA for k in s.keys if k.type is str]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan"])
@pytest.mark.parametrize("section, key", FLOAT_KEYS)
def test_non_finite_numbers_are_refused_in_every_numeric_key(tmp_path, section, key, value):
    """``stats_interval = nan`` meant no stats ever and ``min_dwell = nan`` a state that never changed."""
    path = tmp_path / "c.toml"
    path.write_text(f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: [{section}] {key}: expected a number") and "\n" not in message
    assert value.lstrip("+") in message


@pytest.mark.parametrize(
    "value", ["1979-05-27", "07:32:00", "1979-05-27T07:32:00", "1979-05-27T07:32:00Z", "{ a = 1 }", "[1, 2]"]
)
def test_toml_dates_and_tables_are_one_line_not_a_traceback(tmp_path, value):
    path = tmp_path / "c.toml"
    path.write_text(f"[state]\nmin_dwell = {value}\n[mqtt]\nhost = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: [state] min_dwell: expected a number") and "\n" not in message


@pytest.mark.parametrize("section, key", STRING_KEYS)
def test_blank_strings_are_refused_in_every_string_key(tmp_path, section, key):
    path = tmp_path / "c.toml"
    path.write_text(f'[{section}]\n{key} = "  "\n')
    with pytest.raises(ConfigError, match=rf"\[{section}\] {key}: expected .*got \"  \""):
        load_config(path)


def test_sections_are_frozen_typed_dataclasses():
    import dataclasses

    from edgesight.device.config import defaults
    from edgesight.device.runtimes import RUNTIMES

    config = defaults()
    assert dataclasses.is_dataclass(config.mqtt) and type(config.mqtt).__name__ == "MqttSection"
    types = {f.name: f.type for f in dataclasses.fields(config.http)}
    assert types["port"] is int and types["max_upload_mb"] is float and types["allowed_hosts"] == tuple[str, ...]
    assert types["token"] == str | None
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mqtt.port = 1  # type: ignore[misc]
    config.override({("mqtt", "port"): 1884})
    assert config.mqtt.port == 1884 and config.origin[("mqtt", "port")] == "command line"
    runtime = next(k for s in SCHEMA if s.name == "model" for k in s.keys if k.name == "runtime")
    assert runtime.choices == ("auto", *RUNTIMES)  # derived from the registry, not a second list


@pytest.mark.parametrize(
    "body, fragment",
    [
        ('[source]\nspec = ""\n', '[source] spec: expected a non-empty string, got ""'),
        ('[mqtt]\nhost = ""\n', '[mqtt] host: expected a non-empty string, got ""'),
        ('[http]\nhost = ""\n', '[http] host: expected a non-empty string, got ""'),
        ("[mqtt]\nstats_interval = nan\n", "[mqtt] stats_interval: expected a number 0.5..86400, got nan"),
        ("[state]\nmin_dwell = 2024-01-01\n", "[state] min_dwell: expected a number 0..3600, got 2024-01-01"),
    ],
)
def test_cli_check_refuses_blank_and_non_finite_values_with_exit_2(
    cli, tmp_path, v2_model, imagenet_labels, body, fragment
):
    path = tmp_path / "c.toml"
    path.write_text(body)
    result = cli("run", "--config", path, "--model", v2_model, "--labels", imagenet_labels, "--check")
    assert_one_line_error(result, fragment, code=2)


def test_cli_unresolvable_http_host_is_a_config_error(cli, tmp_path, v2_model, imagenet_labels, images_dir):
    path = tmp_path / "c.toml"
    path.write_text(
        f'[source]\nspec = "{images_dir}"\n[mqtt]\nenabled = false\n'
        '[http]\nenabled = true\nhost = "no-such-host.invalid"\ntoken = "t0k3n"\n'
    )
    result = cli("run", "--config", path, "--model", v2_model, "--labels", imagenet_labels, "--check")
    assert_one_line_error(result, "[http] host 'no-such-host.invalid': cannot be resolved", code=2)
