"""What this device can do and what blocks it: the checks behind ``edgesight doctor``.

Each check looks at one thing a device needs (a runtime, the camera stack, OpenCV's video
back-ends, an accelerator, the broker, the service) and says ok, warn or fail with a fix. A
check fails only when the config needs the missing thing (``runtime = "edgetpu"`` and no TPU;
a GStreamer source and an OpenCV without GStreamer; MQTT on and the broker unreachable); what
is missing but unused is a warning, so a Pi without a Coral is healthy.

The OpenCV back-end probe is here, not in the source module, because ``run --check`` asks it
too: a GStreamer pipeline that cannot open must say why (pip's OpenCV has no GStreamer) and
what to install, not "cannot open".
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import Config
from .machine import cpu_temperature_c

OK, WARN, FAIL = "ok", "warn", "fail"
JETSON_FIX = (
    "on a Jetson install with scripts/install-jetson.sh (JetPack's OpenCV); "
    "elsewhere use an OpenCV built with GStreamer (apt python3-opencv, venv with --system-site-packages)"
)


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table."""

    check: str
    status: str  # ok / warn / fail
    detail: str
    fix: str = ""


def needed(available: bool, need: bool) -> str:
    """ok when present; fail when missing and the config needs it; else warn."""
    return OK if available else FAIL if need else WARN


# --------------------------------------------------------------------------- what the config needs


def source_kind(spec: str) -> str:
    """picamera2 / gstreamer (pipelines, jetson-csi) / usb / url / folder / file, like the sources pick."""
    text = spec.strip()
    if text == "picamera2" or text.startswith("picamera2:"):
        return "picamera2"
    if text == "jetson-csi" or text.startswith("jetson-csi:") or " ! " in text:
        return "gstreamer"
    if text.isdigit():
        return "usb"
    if "://" in text:
        return "url"
    if Path(text).is_dir():
        return "folder"
    return "file"


def configured_source(config: Config) -> str | None:
    """The kind of source the config names, or None without a config file (the default "0" is a guess)."""
    return source_kind(config.source.spec) if config.path is not None else None


# --------------------------------------------------------------------------- OpenCV


@dataclass(frozen=True)
class OpenCVInfo:
    """Which OpenCV this interpreter imports and the video back-ends it was built with."""

    version: str
    path: str  # cv2's folder
    origin: str  # "pip's opencv-python-headless 4.10.0" or "the system's (not installed by pip)"
    backends: dict[str, bool]  # FFmpeg, GStreamer, V4L2 -> built in

    def describe(self) -> str:
        return f"{self.origin}, {self.path}"


_BACKENDS = {"FFmpeg": r"FFMPEG", "GStreamer": r"GStreamer", "V4L2": r"v4l/v4l2"}


def parse_video_backends(build_information: str) -> dict[str, bool]:
    """The ``Video I/O`` lines of ``cv2.getBuildInformation()``: back-end -> built with it."""
    found = {}
    for name, label in _BACKENDS.items():
        match = re.search(rf"^\s*{re.escape(label)}:\s*(\S+)", build_information, re.MULTILINE | re.IGNORECASE)
        found[name] = match is not None and match.group(1).upper() != "NO"
    return found


def _pip_distribution(module_file: Path) -> str | None:
    """The pip distribution (name and version) whose files include this ``cv2``, if any."""
    init = module_file.resolve()
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] or ""
        if not name.lower().startswith("opencv"):
            continue
        try:
            if Path(str(dist.locate_file("cv2/__init__.py"))).resolve() == init:
                return f"{name} {dist.version}"
        except OSError:
            continue
    return None


def opencv_info() -> OpenCVInfo:
    """Import cv2 and describe it. Raises ImportError (with the reason) when it cannot import."""
    import cv2

    module_file = Path(getattr(cv2, "__file__", "") or "cv2")
    pip = _pip_distribution(module_file)
    origin = f"pip's {pip}" if pip else "the system's (not installed by pip)"
    backends = parse_video_backends(cv2.getBuildInformation())
    return OpenCVInfo(cv2.__version__, str(module_file.parent), origin, backends)


def gstreamer_problem() -> str | None:
    """None when this OpenCV can open GStreamer pipelines, else one line with the cause and the fix."""
    try:
        info = opencv_info()
    except ImportError as exc:
        return f"OpenCV does not import ({_first_line(exc)}); {JETSON_FIX}"
    if info.backends.get("GStreamer"):
        return None
    return f"this OpenCV ({info.describe()}) has no GStreamer; {JETSON_FIX}"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# --------------------------------------------------------------------------- the checks


def check_runtime(config: Config) -> list[Check]:
    """LiteRT flavour on the CPU (and tflite_runtime's NumPy 1 ABI); ONNX Runtime when configured."""
    runtime = config.model.runtime
    rows = []
    import numpy

    numpy_major = int(numpy.__version__.split(".")[0])
    found = ""
    problems = []
    for module_name, dist in (("ai_edge_litert.interpreter", "ai-edge-litert"), ("tflite_runtime.interpreter", None)):
        try:
            importlib.import_module(module_name)
        except Exception as exc:  # tflite_runtime under NumPy 2 fails with AttributeError/ImportError
            if importlib.util.find_spec(module_name.split(".")[0]) is not None:
                problems.append(f"{module_name.split('.')[0]} is installed but does not import ({_first_line(exc)})")
            continue
        version = _version(dist or "tflite-runtime")
        found = f"{module_name.split('.')[0]} {version}"
        break
    if not found and importlib.util.find_spec("tensorflow") is not None:
        found = f"tensorflow.lite {_version('tensorflow')} (a workstation install)"
    need_cpu = runtime in ("auto", "litert", "edgetpu")
    if found.startswith("tflite_runtime") and numpy_major >= 2:
        rows.append(
            Check(
                "runtime",
                FAIL if need_cpu else WARN,
                f"{found} with NumPy {numpy.__version__}: tflite_runtime is built for NumPy 1",
                "pip install 'numpy<2', or better pip install ai-edge-litert (works with NumPy 2)",
            )
        )
    elif found:
        rows.append(Check("runtime", OK, f"{found}, NumPy {numpy.__version__}; config runtime = {runtime}"))
    else:
        rows.append(
            Check(
                "runtime",
                needed(False, need_cpu),
                "; ".join(problems) or "no LiteRT interpreter (ai_edge_litert, tflite_runtime, tensorflow.lite)",
                "pip install 'edgesight[device]' (ai-edge-litert)",
            )
        )
    if runtime == "onnx" or importlib.util.find_spec("onnxruntime") is not None:
        have = importlib.util.find_spec("onnxruntime") is not None
        rows.append(
            Check(
                "onnxruntime",
                needed(have, runtime == "onnx"),
                f"onnxruntime {_version('onnxruntime')}" if have else "not installed",
                "" if have else "pip install 'edgesight[onnx]'",
            )
        )
    return rows


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def venv_system_site_packages() -> bool | None:
    """Whether this venv sees the system's packages (None: not running in a venv)."""
    if sys.prefix == sys.base_prefix:
        return None
    try:
        text = (Path(sys.prefix) / "pyvenv.cfg").read_text()
    except OSError:
        return None
    match = re.search(r"^include-system-site-packages\s*=\s*(\w+)", text, re.MULTILINE)
    return match is not None and match.group(1).lower() == "true"


def check_picamera2(config: Config) -> Check:
    need = configured_source(config) == "picamera2"
    system = venv_system_site_packages()
    venv = (
        "not in a venv"
        if system is None
        else f"venv {sys.prefix} {'sees' if system else 'does not see'} the system's packages"
    )
    try:
        module = importlib.import_module("picamera2")
    except Exception as exc:
        fix = "apt install python3-picamera2"
        if system is False:
            fix += f", and recreate the venv with: python3 -m venv --system-site-packages {sys.prefix}"
        status = FAIL if need else WARN
        return Check("picamera2", status, f"not importable ({_first_line(exc)}); {venv}", fix)
    where = Path(getattr(module, "__file__", "") or "picamera2").parent
    return Check("picamera2", OK, f"{where}; {venv}")


def check_opencv(config: Config) -> list[Check]:
    kind = configured_source(config)
    try:
        info = opencv_info()
    except ImportError as exc:
        status = WARN if kind == "picamera2" else FAIL
        return [Check("opencv", status, f"cv2 does not import ({_first_line(exc)})", "pip install 'edgesight[device]'")]
    rows = [Check("opencv", OK, f"OpenCV {info.version}: {info.describe()}")]
    b = info.backends
    shown = ", ".join(f"{name} {'YES' if on else 'NO'}" for name, on in b.items())
    if kind == "gstreamer" and not b["GStreamer"]:
        rows.append(Check("video back-ends", FAIL, f"{shown}; the source is a GStreamer pipeline", JETSON_FIX))
    elif kind in ("url", "file") and not (b["FFmpeg"] or b["GStreamer"]):
        rows.append(
            Check(
                "video back-ends",
                FAIL,
                f"{shown}; the source needs FFmpeg or GStreamer",
                "pip install opencv-python-headless",
            )
        )
    elif kind == "usb" and sys.platform.startswith("linux") and not b["V4L2"]:
        rows.append(Check("video back-ends", FAIL, f"{shown}; a USB camera needs V4L2", "an OpenCV built with V4L2"))
    else:
        missing = [name for name, on in b.items() if not on]
        hint = "GStreamer: only needed for pipelines and jetson-csi" if "GStreamer" in missing else ""
        rows.append(Check("video back-ends", OK if not missing else WARN, shown, hint))
    return rows


def check_video_devices(config: Config, root: Path = Path("/dev")) -> Check:
    spec = config.source.spec.strip()
    wanted = root / f"video{spec}" if configured_source(config) == "usb" else None
    devices = sorted(root.glob("video*"), key=lambda p: (len(p.name), p.name))
    fix_group = "sudo usermod -aG video $USER (then log in again); the service user is in 'video' already"
    if wanted is not None:
        if not wanted.exists():
            shown = ", ".join(p.name for p in devices) or "none"
            return Check(
                "cameras", FAIL, f"source {spec}: {wanted} does not exist (present: {shown})", "plug in the camera"
            )
        if not os.access(wanted, os.R_OK | os.W_OK):
            return Check("cameras", FAIL, f"{wanted}: not readable and writable by this user", fix_group)
    if not devices:
        return Check("cameras", WARN, f"no {root}/video* (no V4L2 camera)", "")
    blocked = [p.name for p in devices if not os.access(p, os.R_OK | os.W_OK)]
    names = ", ".join(p.name for p in devices)
    if blocked:
        return Check("cameras", WARN, f"{names}; not read/write for this user: {', '.join(blocked)}", fix_group)
    return Check("cameras", OK, f"{names} (read/write)")


def check_edgetpu(config: Config) -> Check:
    from .runtimes import edgetpu

    need = config.model.runtime == "edgetpu"
    library = edgetpu.library_name()
    try:
        ctypes.CDLL(library)
    except OSError as exc:
        return Check(
            "edge tpu", needed(False, need), f"{library} not loadable ({_first_line(exc)})", edgetpu.INSTALL_HINT
        )
    reason = edgetpu.BACKEND.unavailable_reason()
    if reason is None:
        return Check("edge tpu", OK, f"{library} loaded; a TPU is attached")
    return Check("edge tpu", needed(False, need), f"{library} loads, but: {reason}", "plug the Coral in (USB 3 port)")


def check_tensorrt(config: Config) -> Check:
    from .runtimes import tensorrt

    need = config.model.runtime == "tensorrt"
    reason = tensorrt.BACKEND.unavailable_reason()
    if reason is None:
        trt = tensorrt.import_tensorrt()
        return Check("tensorrt", OK, f"TensorRT {getattr(trt, '__version__', '?')}, GPU {tensorrt.device_key()}")
    return Check("tensorrt", needed(False, need), reason, "" if need else "only on a Jetson / NVIDIA GPU")


# vcgencmd get_throttled bits (Raspberry Pi firmware): now (0-3), since boot (16-19).
THROTTLE_BITS = {
    0: "under-voltage now",
    1: "ARM frequency capped now",
    2: "throttled now",
    3: "soft temperature limit now",
    16: "under-voltage since boot",
    17: "frequency capping since boot",
    18: "throttling since boot",
    19: "soft temperature limit since boot",
}


def decode_throttled(value: int) -> list[str]:
    return [text for bit, text in THROTTLE_BITS.items() if value & (1 << bit)]


def check_cpu(config: Config, run: Callable[..., Any] = subprocess.run) -> Check:
    temperature = cpu_temperature_c()
    parts = [f"{temperature:.1f} °C" if temperature is not None else "temperature not readable"]
    status, fix = OK, ""
    if temperature is not None and temperature >= 80:
        status, fix = WARN, "cool the board (heatsink, fan); past ~80 °C a Pi throttles"
    vcgencmd = shutil.which("vcgencmd")
    if vcgencmd:
        try:
            out = run([vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=5).stdout
            match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", out)
            if not match:
                raise ValueError(out.strip() or "no output")
            value = int(match.group(1), 0)
            flags = decode_throttled(value)
            parts.append(f"throttled={hex(value)}" + (f" ({', '.join(flags)})" if flags else " (never)"))
            if flags:
                status = WARN
                if value & 0x10001:
                    fix = "use the official power supply (5 V, 3 A+ for a Pi 4, 5 A for a Pi 5); " + fix
                elif not fix:
                    fix = "cool the board (heatsink, fan)"
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            parts.append(f"vcgencmd get_throttled failed ({_first_line(exc)})")
    return Check("cpu", status, "; ".join(parts), fix.strip("; "))


def check_broker(config: Config, timeout: float = 3.0) -> Check:
    """A real connect with the config's host, port, credentials and TLS (another client id, no Will)."""
    m = config.mqtt
    if not m.enabled:
        return Check("broker", OK, "MQTT off ([mqtt] enabled = false)")
    import dataclasses

    from .mqtt.link import MqttLink

    # Not the daemon's client id: the broker would disconnect a running daemon to let this in.
    probe = Config(dict(config.sections), config.path, dict(config.origin))
    probe.sections["mqtt"] = dataclasses.replace(m, client_id=f"edgesight-doctor-{os.getpid()}")
    link = MqttLink(probe)  # auth and TLS exactly as the daemon sets them up; ConfigError = bad config
    client = link.client
    client.will_clear()  # the device's availability topic is the daemon's, not ours
    outcome: dict[str, Any] = {}

    def on_connect(_client, _userdata, _flags, reason_code, _properties=None) -> None:
        outcome["code"] = reason_code

    client.on_connect = on_connect
    client.on_disconnect = client.on_message = client.on_connect_fail = client.on_publish = None
    client.connect_timeout = timeout
    where = f"{m.host}:{m.port}{' (TLS)' if m.tls else ''}"
    who = f" as {m.username}" if m.username else " anonymously"
    need = config.path is not None  # the defaults' localhost is a guess, not something a config asked for
    try:
        client.connect(m.host, m.port, keepalive=max(5, m.keepalive))
        deadline = time.monotonic() + timeout
        while "code" not in outcome and time.monotonic() < deadline:
            client.loop(timeout=0.1)
    except (OSError, ValueError) as exc:
        return Check(
            "broker",
            needed(False, need),
            f"cannot reach {where} ({_first_line(exc)})",
            "start the broker or fix [mqtt] host/port",
        )
    finally:
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001 - already gone
            pass
    code = outcome.get("code")
    if code is None:
        return Check(
            "broker",
            needed(False, need),
            f"{where}: no answer to CONNECT within {timeout:g} s",
            "is it an MQTT broker?",
        )
    if getattr(code, "is_failure", False):
        return Check(
            "broker",
            needed(False, need),
            f"{where} refused the connection{who}: {code}",
            "fix [mqtt] username/password",
        )
    return Check("broker", OK, f"connected to {where}{who}")


def check_service(run: Callable[..., Any] = subprocess.run) -> Check:
    systemctl = shutil.which("systemctl")
    if not systemctl:
        return Check("service", OK, "no systemctl here")
    try:
        proc = run([systemctl, "is-active", "edgesight"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("service", WARN, f"systemctl is-active edgesight failed ({_first_line(exc)})")
    state = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    if not state:  # a container or chroot: systemctl is there, systemd is not running
        why = (proc.stderr.strip() or "no answer").splitlines()[0]
        return Check("service", OK, f"systemd is not running here ({why})")
    if state == "active":
        return Check("service", OK, "edgesight.service is active")
    fix = "sudo systemctl start edgesight; journalctl -u edgesight -n 50" if state in ("inactive", "failed") else ""
    return Check("service", WARN, f"edgesight.service: {state}", fix)


def run_checks(config: Config) -> list[Check]:
    """Every check, in table order. A ConfigError (bad TLS files, password_file) propagates: exit 2."""
    rows: list[Check] = []
    rows += check_runtime(config)
    rows.append(check_picamera2(config))
    rows += check_opencv(config)
    rows.append(check_video_devices(config))
    rows.append(check_edgetpu(config))
    rows.append(check_tensorrt(config))
    rows.append(check_cpu(config))
    rows.append(check_broker(config))
    rows.append(check_service())
    return rows


def exit_code(rows: list[Check]) -> int:
    return 1 if any(row.status == FAIL for row in rows) else 0


def render_table(rows: list[Check]) -> str:
    """Fixed-width table: check, status, detail (and the fix on the next line, indented)."""
    width = max(len(row.check) for row in rows)
    lines = [f"{'check':<{width}}  status  detail"]
    for row in rows:
        lines.append(f"{row.check:<{width}}  {row.status:<6}  {row.detail}")
        if row.fix and row.status != OK:
            lines.append(f"{'':<{width}}  {'':<6}  fix: {row.fix}")
    return "\n".join(lines) + "\n"


def as_json(rows: list[Check]) -> list[dict[str, str]]:
    return [asdict(row) for row in rows]
