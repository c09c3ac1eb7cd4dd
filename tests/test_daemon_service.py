"""Service life: the systemd unit's contract and the sd_notify protocol against real AF_UNIX sockets."""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess

import pytest
from conftest import ROOT

from edgesight.device.config import load_config
from edgesight.device.service import Notifier

UNIT = ROOT / "systemd" / "edgesight.service"
TEMPLATE = ROOT / "systemd" / "edgesight@.service"  # one camera of several: edgesight@NAME
# What differs per unit: the config it runs and the one folder it may write.
INSTANCE = {
    UNIT: {"config": "/etc/edgesight/edgesight.toml", "state": "edgesight"},
    TEMPLATE: {"config": "/etc/edgesight/%i.toml", "state": "edgesight/%i"},
}
INSTANCE_KEYS = {"Description", "ExecStart", "StateDirectory", "WorkingDirectory", "ReadWritePaths"}


def unit(path=UNIT) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(path)
    return parser


@pytest.mark.parametrize("path", [UNIT, TEMPLATE], ids=["single", "template"])
def test_unit_is_a_hardened_notify_service_with_a_watchdog(path):
    service = unit(path)["Service"]
    want = INSTANCE[path]
    assert service["Type"] == "notify" and int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure" and service["User"] == "edgesight"
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "true"
    assert "video" in service["SupplementaryGroups"].split()
    # the paths the install script writes are the ones the unit runs
    install = (ROOT / "scripts" / "install-pi.sh").read_text()
    assert service["ExecStart"] == f"/opt/edgesight/.venv/bin/edgesight run --config {want['config']}"
    assert 'PREFIX="${PREFIX:-/opt/edgesight}"' in install and 'ETC="${ETC:-/etc/edgesight}"' in install
    assert "$SRC/systemd/$UNIT_FILE" in install and f"UNIT_FILE={path.name}" in install
    # the snapshot default lies in the only writable place
    assert service["StateDirectory"] == want["state"]
    assert service["ReadWritePaths"] == service["WorkingDirectory"] == f"/var/lib/{want['state']}"


def test_the_template_is_the_single_service_but_for_its_instance_lines():
    single, template = unit(UNIT), unit(TEMPLATE)
    assert single.sections() == template.sections()
    for section in single.sections():
        a = {k: v for k, v in single[section].items() if k not in INSTANCE_KEYS}
        b = {k: v for k, v in template[section].items() if k not in INSTANCE_KEYS}
        assert a == b, section
    assert "%i" in template["Unit"]["Description"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("path", [UNIT, TEMPLATE], ids=["single", "template"])
def test_systemd_accepts_the_unit(path, tmp_path):
    if path == TEMPLATE:  # a template is verified as one of its instances
        path = tmp_path / "edgesight@porch.service"
        path.write_text(TEMPLATE.read_text())
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    problems = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and "is not executable" not in line and "No such file" not in line
    ]
    assert problems == [], result.stderr  # only the not-yet-installed ExecStart may be missing here


def test_a_bad_instance_name_is_refused_before_anything_is_installed(tmp_path):
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-pi.sh")],
        env={**os.environ, "NAME": "Porch Cam", "DESTDIR": str(tmp_path / "stage")},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "NAME=Porch Cam" in result.stderr, result.stderr
    assert not (tmp_path / "stage").exists()


def test_an_instance_config_gets_its_own_device_id_and_folders(tmp_path):
    """The install script's NAME= rendering of the example, run as the script runs it."""
    script = (ROOT / "scripts" / "install-pi.sh").read_text()
    line = next(x for x in script.splitlines() if "s|^# device_id" in x).strip().rstrip("\\").strip()
    out = tmp_path / "porch.toml"
    subprocess.run(["bash", "-c", f'NAME=porch; SRC={ROOT}; {line} "$SRC/systemd/edgesight.toml" > {out}'], check=True)
    config = load_config(out)
    assert config.device_id == "porch"
    assert config.snapshot.dir == "/var/lib/edgesight/porch/snapshots"
    assert config.capture.dir == "/var/lib/edgesight/porch/capture"
    assert config.model.models_dir == "/var/lib/edgesight/porch/models"


def receive_all(sock: socket.socket) -> list[str]:
    sock.settimeout(0.2)
    got = []
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            return got


def test_notify_reaches_a_path_socket(tmp_path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "4000000"})
        assert notifier.enabled and notifier.watchdog_interval == 2.0
        assert notifier.ready("loaded") and notifier.watchdog() and notifier.stopping()
        assert receive_all(sock) == ["READY=1\nSTATUS=loaded", "WATCHDOG=1", "STOPPING=1"]


def test_notify_reaches_an_abstract_socket():
    name = f"edgesight-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).status("12 fps")
        assert receive_all(sock) == ["STATUS=12 fps"]


def test_outside_systemd_everything_is_a_no_op(tmp_path):
    quiet = Notifier({})
    assert not quiet.enabled and quiet.watchdog_interval is None and quiet.ready() is False
    # a watchdog meant for another process (WATCHDOG_PID) is not ours to feed
    other = Notifier({"NOTIFY_SOCKET": str(tmp_path / "x"), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None
    assert other.watchdog() is False  # the socket does not exist: reported, not raised


def test_run_never_imports_tensorflow(tmp_path, v2_model, imagenet_labels, images_dir):
    """The daemon on a Pi must start without TensorFlow: check sys.modules after a real run."""
    import sys

    code = (
        "import sys\n"
        "from edgesight.device.cli import main\n"
        f"rc = main(['run', '--model', {str(v2_model)!r}, '--labels', {str(imagenet_labels)!r},"
        f" '--source', {str(images_dir)!r}, '--no-mqtt', '--max-frames', '3'])\n"
        "assert rc == 0, rc\n"
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
        "print('LEAKED', leaked)\n"
        "sys.exit(1 if leaked else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "LEAKED []" in proc.stdout, proc.stdout + proc.stderr
