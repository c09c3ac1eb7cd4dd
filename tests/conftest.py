"""Shared fixtures: the external oracle data, a real mosquitto broker, a CLI runner."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = Path(os.environ.get("EDGESIGHT_TESTDATA", ROOT.parent / "shared" / "testdata")).resolve()
MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)


def testdata_path(*parts: str) -> Path:
    """A file under the shared test data; skip (with the reason) only when it is genuinely absent."""
    path = TESTDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not found: {path} (set EDGESIGHT_TESTDATA)")
    return path


testdata_path.__test__ = False  # a helper, not a test, though its name starts with "test"


@pytest.fixture(scope="session")
def testdata() -> Path:
    return testdata_path()


@pytest.fixture(scope="session")
def v2_model() -> Path:
    return testdata_path("models", "mobilenet_v2_1.0_224_quant.tflite")


@pytest.fixture(scope="session")
def v1_model() -> Path:
    return testdata_path("models", "mobilenet_v1_0.25_128_quant.tflite")


@pytest.fixture(scope="session")
def imagenet_labels() -> Path:
    return testdata_path("models", "imagenet_labels.txt")


@pytest.fixture(scope="session")
def images_dir() -> Path:
    return testdata_path("images")


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str | Path, timeout: float = 120, env: dict | None = None, cwd: Path | None = None) -> CliResult:
    """Run ``edgesight`` in a fresh interpreter, exactly as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "edgesight.device.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: CliResult, *fragments: str, code: int | None = None) -> None:
    """A user error: non-zero exit, exactly one line on stderr, no traceback, naming the fragments."""
    assert result.returncode != 0, result
    if code is not None:
        assert result.returncode == code, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got: {result.stderr!r}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


@pytest.fixture
def cli():
    return run_cli


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _user_name() -> str:
    """This process's account (POSIX), for mosquitto's ``user``: it must write our temporary folder."""
    import pwd  # POSIX only, like mosquitto's privilege drop

    return pwd.getpwuid(os.geteuid()).pw_name


@dataclass
class Broker:
    """A real mosquitto on a free loopback port; ``stop()``/``start()`` (or ``restart()``) simulate an outage.

    ``persistent`` keeps sessions, queued QoS 1 messages and retained messages across a restart
    (mosquitto's ``persistence true``), as a production broker does: a subscriber with a
    persistent session then misses nothing published while it was away. mosquitto started as
    root drops to the ``mosquitto`` account, which cannot write pytest's 0700 temporary folder:
    the database then is never saved, every restart forgets the sessions, and a subscriber that
    reconnects after the publisher misses what was published in between. So the broker runs as
    the test's own user (``user`` only matters when started as root), and a failed save fails
    the test instead of passing for an outage-survival proof.
    """

    port: int
    workdir: Path
    process: subprocess.Popen | None = None
    host: str = "127.0.0.1"
    persistent: bool = False
    _log_offset: int = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        conf = self.workdir / "mosquitto.conf"
        persistence = (
            f"persistence true\npersistence_location {self.workdir}/\n" if self.persistent else "persistence false\n"
        )
        user = f"user {_user_name()}\n" if hasattr(os, "geteuid") else ""
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{user}{persistence}")
        log_file = self.workdir / "mosquitto.log"
        self._log_offset = log_file.stat().st_size if log_file.exists() else 0
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=(self.workdir / "mosquitto.log").open("ab")
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError((self.workdir / "mosquitto.log").read_text()) from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.persistent:
            with (self.workdir / "mosquitto.log").open("rb") as log_file:
                log_file.seek(self._log_offset)
                text = log_file.read().decode(errors="replace")
            if "Error saving" in text:
                raise RuntimeError(f"persistent mosquitto could not save its database:\n{text}")

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()


@pytest.fixture
def broker(tmp_path_factory) -> Broker:
    """A fresh mosquitto per test (retained messages must not leak between tests)."""
    if MOSQUITTO is None:
        pytest.fail("mosquitto is not installed: run scripts/setup.sh (apt-get install mosquitto)")
    instance = Broker(port=free_port(), workdir=tmp_path_factory.mktemp("mosquitto"))
    instance.start()
    yield instance
    instance.stop()


# --- Device-only interpreters --------------------------------------------------------------------
# scripts/test.sh also runs the suite under Python 3.10 and 3.13 in venvs with only the device,dev
# extras (no TensorFlow: the device side must work there). There the trainer's tests are left out,
# and a device test that builds its model with TensorFlow is skipped naming the module. Where the
# trainer is installed nothing is left out and a missing module stays a failure.
TRAINER_ONLY_MODULES = frozenset(
    {"tensorflow", "keras", "tf_keras", "tf2onnx", "onnx", "sklearn", "matplotlib", "imagehash", "PIL", "tensorboard"}
)
# Test modules that exercise the trainer (its verbs through the CLI, or its modules directly).
TRAINER_TEST_FILES = frozenset({"test_data_import.py", "test_export_accel.py"})
HAVE_TRAINER = importlib.util.find_spec("tensorflow") is not None
_TRAINER_IMPORT = re.compile(r"^(from|import) (edgesight\.trainer|tensorflow)\b", re.MULTILINE)


def is_trainer_test_file(path: Path) -> bool:
    """A test module of the trainer: by name, or importing the trainer or TensorFlow at its top."""
    if path.name.startswith("test_trainer") or path.name in TRAINER_TEST_FILES:
        return True
    try:
        return bool(_TRAINER_IMPORT.search(path.read_text(encoding="utf-8")))
    except OSError:
        return False


def pytest_configure(config):
    config.addinivalue_line("markers", "trainer: needs the trainer extra (TensorFlow); left out in device-only venvs")


def pytest_ignore_collect(collection_path, config):
    if HAVE_TRAINER or collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    return True if is_trainer_test_file(collection_path) else None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if is_trainer_test_file(item.path):
            item.add_marker(pytest.mark.trainer)


def pytest_report_header(config):
    if not HAVE_TRAINER:
        return "device-only interpreter (no TensorFlow): the trainer's test modules are left out"
    return None


_NEEDS_MODULE = re.compile(r"(?:No module named |needs the Python module )'?([A-Za-z_][\w.]*)")


def missing_trainer_module(exc: BaseException) -> str | None:
    """The trainer-only module a test failed for: imported here, or missing in a child process.

    A child is an ``edgesight`` verb (its one-line "needs the Python module 'X'" error) or a
    Python tool run with ``capture_output`` (its "No module named 'X'").
    """
    if isinstance(exc, ModuleNotFoundError):
        names = [exc.name or ""]
    else:
        text = str(exc)
        if isinstance(exc, subprocess.CalledProcessError) and exc.stderr:
            stderr = exc.stderr
            text += stderr.decode(errors="replace") if isinstance(stderr, bytes) else str(stderr)
        names = _NEEDS_MODULE.findall(text)
    return next((name for name in names if name.split(".")[0] in TRAINER_ONLY_MODULES), None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if HAVE_TRAINER or call.excinfo is None or not report.failed:
        return
    name = missing_trainer_module(call.excinfo.value)
    if name:
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: needs the trainer's {name}")


@pytest.fixture
def persistent_broker(tmp_path_factory) -> Broker:
    """A fresh mosquitto with ``persistence true``: sessions and queued messages survive ``restart()``."""
    if MOSQUITTO is None:
        pytest.fail("mosquitto is not installed: run scripts/setup.sh (apt-get install mosquitto)")
    instance = Broker(port=free_port(), workdir=tmp_path_factory.mktemp("mosquitto"), persistent=True)
    instance.start()
    yield instance
    instance.stop()
