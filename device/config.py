"""The daemon's TOML config: one declarative schema, validated at start with messages naming the key.

Every key is one :class:`Key` entry in :data:`SCHEMA` (type, default, range or choices, doc). The
example file ``systemd/edgesight.toml`` is rendered from the same table (``render_example``), and a
test checks the two agree, so a key cannot exist undocumented. To add a section (``[http]``,
``[capture]``, ``[drift]``...) append one ``Section(...)`` to :data:`SCHEMA`; nothing else changes.

Each section's values are a frozen dataclass generated from its :class:`Section` (``config.mqtt``
is a ``MqttSection`` with typed fields ``host: str``, ``port: int``...), so a consumer cannot
change a value behind the daemon's back and ``dataclasses.fields`` lists what a section holds.

The value rules are one class, in :meth:`Key.check`: numbers must be finite (``nan``/``inf``
would silently disable a timer or a dwell), strings non-blank, and anything TOML can hold that
the key does not expect (a date, a table) is refused by type. A wrong file is one line and
exit 2, e.g. ``config.toml: [mqtt] port: expected an integer 1..65535, got "abc"``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.errors import ConfigError
from .core.tomlfile import read_toml
from .mqtt.commands import VERBS as COMMAND_VERBS
from .roi import check_roi
from .runtimes import AUTO_ORDER, RUNTIME_CHOICES  # names only: each runtime's heavy import waits for its use
from .smoothing import NO_LABEL

DEFAULT_PATH = Path("/etc/edgesight/edgesight.toml")


@dataclass(frozen=True)
class Key:
    """One config key: its type, default, allowed values and the doc line shown in the example."""

    name: str
    type: type  # str, int, float, bool or list (of str)
    default: Any
    doc: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None  # for str, or the allowed items of a list
    example: Any = None  # shown (commented out) in the example file when the default is None
    # a key whose value is not one plain type (``[source] roi``): returns the value or raises ValueError
    validator: Callable[[Any], Any] | None = None
    shape: str | None = None  # how describe() spells what the validator accepts

    def describe(self) -> str:
        if self.shape:
            return self.shape
        if self.type is bool and self.choices:  # true, false or a word ("auto")
            return "true, false or " + " or ".join(f'"{c}"' for c in self.choices)
        kind = {
            str: "a non-empty string",
            int: "an integer",
            float: "a number",
            bool: "true or false",
            list: "a list of non-empty strings",
        }[self.type]
        if self.choices:
            kind = ("a list of " if self.type is list else "one of ") + ", ".join(f'"{c}"' for c in self.choices)
        if self.min is not None or self.max is not None:
            low = "" if self.min is None else f"{self.min:g}"
            high = "" if self.max is None else f"{self.max:g}"
            kind += f" {low}..{high}"
        return kind

    def check(self, value: Any) -> Any:
        """Return the value (ints widened to float, lists as tuples) or raise ValueError.

        One rule per type for every key: a number is finite, a string is not blank, a list holds
        non-blank strings; a TOML date/time or table is simply the wrong type.
        """
        if self.validator is not None:
            return self.validator(value)
        if self.type is bool:
            ok = isinstance(value, bool) or (self.choices is not None and value in self.choices)
            if ok:
                return value
        elif self.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            value = float(value) if ok else value
        elif self.type is list:
            ok = isinstance(value, list) and all(_text(v) for v in value)
        else:
            ok = _text(value)
        if ok and self.min is not None and value < self.min:
            ok = False
        if ok and self.max is not None and value > self.max:
            ok = False
        if ok and self.choices:
            items = value if self.type is list else [value]
            ok = all(item in self.choices for item in items)
        if not ok:
            raise ValueError(f"expected {self.describe()}, got {shown(value)}")
        return tuple(value) if self.type is list else value

    @property
    def python_type(self) -> Any:
        """The field type of this key in its section's dataclass (``str | None`` when no default)."""
        if self.validator is not None:
            return Any
        if self.type is bool and self.choices:
            return bool | str
        base = tuple[str, ...] if self.type is list else self.type
        return base if self.default is not None else base | None


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def shown(value: Any) -> str:
    """A value as the error line shows it: JSON where it can be, TOML's spelling for dates and non-finite numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # nan, inf, -inf as written in TOML
    if isinstance(value, (datetime.date, datetime.time)):
        return f"{value.isoformat()} (a TOML date/time)"
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True)
class Section:
    """A ``[section]`` of the file: its doc and its keys, in the order the example shows them."""

    name: str
    doc: str
    keys: tuple[Key, ...]

    def key(self, name: str) -> Key | None:
        return next((k for k in self.keys if k.name == name), None)


SCHEMA: list[Section] = [
    Section(
        "model",
        "Which model to run and how many interpreters run it.",
        (
            Key(
                "path",
                str,
                None,
                "bundle directory (or a bare .tflite with labels)",
                example="/opt/edgesight/models/current",
            ),
            Key(
                "labels", str, None, "labels file, only for a bare .tflite", example="/opt/edgesight/models/labels.txt"
            ),
            Key("file", str, None, "bundle variant to run instead of the default model", example="model_fp16.tflite"),
            Key(
                "runtime",
                str,
                "auto",
                "inference runtime: auto = the fastest this device and bundle allow "
                f"({' > '.join(AUTO_ORDER)}); edgetpu falls back to the CPU model when no TPU is attached",
                choices=RUNTIME_CHOICES,
            ),
            Key(
                "crop",
                str,
                None,
                "override the bundle's fit: centre-crop or stretch",
                choices=("centre", "center", "stretch"),
                example="centre",
            ),
            Key("top_k", int, 3, "classes reported per frame", min=1, max=100),
            Key(
                "workers",
                int,
                0,
                "interpreters in parallel; 0 = one per CPU core (at most 2 below 1 GB of memory)",
                min=0,
                max=64,
            ),
            Key(
                "threads",
                int,
                0,
                "threads per interpreter; 0 = the cores shared out between the workers",
                min=0,
                max=64,
            ),
            Key(
                "models_dir",
                str,
                "/var/lib/edgesight/models",
                "the only folder cmd/reload may load bundles from; a reload names a bundle folder in it",
            ),
            Key(
                "trial_memory_mb",
                int,
                1024,
                "address-space cap (MB) of the child process that tries a reloaded bundle before it replaces "
                "the running one; 0 = no cap (GPU runtimes reserve large address spaces)",
                min=0,
                max=1_000_000,
            ),
            Key(
                "trial_timeout_s",
                float,
                60.0,
                "seconds the trial may take to load the bundle and classify one frame",
                min=0.1,
                max=3600,
            ),
        ),
    ),
    Section(
        "source",
        "Where frames come from.",
        (
            Key(
                "spec",
                str,
                "0",
                'camera index, "picamera2[:N]", "jetson-csi[:N]", an rtsp/http URL, '
                'a video file, a folder of images, or a GStreamer pipeline (contains " ! ")',
            ),
            Key(
                "realtime",
                bool,
                False,
                "pace a video file or folder to its frame rate and drop late frames, like a camera",
            ),
            Key("loop", bool, False, "start a video file or folder again at its end instead of stopping"),
            Key("width", int, 0, "capture width for cameras; 0 = the camera's default", min=0, max=7680),
            Key("height", int, 0, "capture height for cameras; 0 = the camera's default", min=0, max=4320),
            Key(
                "fps", float, 0.0, "camera frame rate (or image-folder rate with realtime); 0 = default", min=0, max=240
            ),
            Key(
                "stream",
                str,
                "main",
                "picamera2 stream to classify: main (RGB888) or lores (ISP-scaled YUV420)",
                choices=("main", "lores"),
            ),
            Key(
                "roi",
                list,
                None,
                "region of interest [x, y, w, h] cropped before the fit (and seen by [gate]): 4 integers "
                "are pixels, 4 numbers with a decimal point fractions of the frame; checked against the "
                "frame size on the first frame",
                example=[0.25, 0.0, 0.5, 1.0],
                validator=check_roi,
                shape="[x, y, w, h]: 4 integers (pixels) or 4 fractions 0..1",
            ),
            Key(
                "reopen_initial",
                float,
                0.5,
                "seconds before the first reopen attempt after a failure",
                min=0.05,
                max=60,
            ),
            Key(
                "reopen_max",
                float,
                30.0,
                "longest wait between reopen attempts (exponential backoff)",
                min=0.1,
                max=3600,
            ),
        ),
    ),
    Section(
        "gate",
        "Change gating: classify a frame only when the scene changed (see docs/device-cost.md).",
        (
            Key(
                "enabled",
                bool,
                "auto",
                "gate frames; auto = on for cameras, streams and realtime files, off for a file read as fast "
                "as possible (every frame of a benchmark is classified)",
                choices=("auto",),
            ),
            Key(
                "threshold",
                float,
                3.0,
                "classify when the mean absolute grey-level change (0..255) of a 64x36 grey copy of the frame "
                "(inside the roi) from the last classified frame exceeds this; 3 = the whole scene 3 levels "
                "brighter, or a tenth of it changed by 30",
                min=0,
                max=255,
            ),
            Key(
                "max_interval_s",
                float,
                4.0,
                "classify at least this often even when nothing changed (slow light drift must not freeze the "
                "state; below [http] stale_after_s so /healthz stays up)",
                min=0,
                max=86400,
            ),
            Key(
                "settle_s",
                float,
                None,
                "after a change, classify every frame for this long so the smoother confirms the new state "
                "as without gating; default [state] min_dwell + 0.5",
                min=0,
                max=3600,
                example=1.5,
            ),
        ),
    ),
    Section(
        "mqtt",
        "Broker connection and what is published (topics: see README).",
        (
            Key("enabled", bool, True, "publish over MQTT; false = classify and log only"),
            Key("host", str, "localhost", "broker host name or address"),
            Key("port", int, 1883, "broker port (8883 is usual with TLS)", min=1, max=65535),
            Key(
                "device_id",
                str,
                None,
                "this device's id in topics and Home Assistant; default: the host name",
                example="porch-pi",
            ),
            Key("prefix", str, None, "topic prefix; default edgesight/<device_id>", example="edgesight/porch-pi"),
            Key("client_id", str, None, "MQTT client id; default edgesight-<device_id>", example="edgesight-porch-pi"),
            Key("username", str, None, "broker user name", example="edgesight"),
            Key("password", str, None, "broker password (prefer password_file)", example="secret"),
            Key(
                "password_file",
                str,
                None,
                "file holding the broker password (first line)",
                example="/etc/edgesight/mqtt-password",
            ),
            Key(
                "keepalive",
                int,
                30,
                "seconds between keep-alive pings; the Last Will fires after 1.5x this",
                min=5,
                max=3600,
            ),
            Key("tls", bool, False, "connect with TLS (system CA store unless ca_file is set)"),
            Key(
                "ca_file",
                str,
                None,
                "CA certificate (PEM) that signed the broker's certificate",
                example="/etc/edgesight/ca.crt",
            ),
            Key("cert_file", str, None, "client certificate (PEM) for mutual TLS", example="/etc/edgesight/client.crt"),
            Key("key_file", str, None, "client private key (PEM) for mutual TLS", example="/etc/edgesight/client.key"),
            Key("tls_insecure", bool, False, "skip the broker host name check (testing only)"),
            Key("reconnect_min", int, 1, "seconds before the first reconnect attempt", min=1, max=600),
            Key("reconnect_max", int, 30, "longest wait between reconnect attempts", min=1, max=3600),
            Key(
                "result_every",
                int,
                1,
                "publish every Nth classified frame on <prefix>/result; 0 = never",
                min=0,
                max=1_000_000,
            ),
            Key("result_retain", bool, False, "retain the latest result message"),
            Key("stats_interval", float, 10.0, "seconds between <prefix>/stats messages", min=0.5, max=86400),
            Key("discovery", bool, True, "publish Home Assistant MQTT discovery"),
            Key("discovery_prefix", str, "homeassistant", "Home Assistant discovery prefix"),
            Key(
                "commands",
                list,
                [],
                "commands accepted on <prefix>/cmd/<verb> (see docs/remote-control.md)",
                choices=COMMAND_VERBS,
            ),
            Key("command_burst", int, 5, "commands accepted at once before the rate limit drops them", min=1, max=1000),
            Key(
                "command_refill_s",
                float,
                2.0,
                "seconds per command the rate limit lets through after a burst",
                min=0,
                max=3600,
            ),
            Key(
                "offline_states",
                int,
                100,
                "state changes kept while the broker is unreachable, sent late on reconnect (oldest dropped)",
                min=1,
                max=100_000,
            ),
        ),
    ),
    Section(
        "state",
        "How per-frame results become the retained <prefix>/state.",
        (
            Key("window", int, 5, "frames in the moving average of scores", min=1, max=1000),
            Key(
                "threshold",
                float,
                0.5,
                "smoothed score a label needs; below it the state is unknown_label",
                min=0,
                max=1,
            ),
            Key("min_dwell", float, 1.0, "seconds a new label must persist before the state changes", min=0, max=3600),
            Key(
                "unknown_label",
                str,
                NO_LABEL,
                "state label when nothing reaches the threshold (not 'unknown': Home Assistant's own state)",
            ),
        ),
    ),
    Section(
        "snapshot",
        "Where cmd/snapshot saves the current frame (JPEG) and its result (JSON).",
        (
            Key("dir", str, "/var/lib/edgesight/snapshots", "folder for snapshots (created if missing)"),
            Key("quality", int, 90, "JPEG quality", min=1, max=100),
            Key(
                "max_files",
                int,
                100,
                "quota: keep at most this many snapshots; the oldest of the daemon's own go first",
                min=1,
                max=1_000_000,
            ),
            Key(
                "max_mb", float, 200.0, "quota: the oldest snapshots are deleted beyond this", min=0.01, max=10_000_000
            ),
            Key(
                "min_free_mb",
                float,
                200.0,
                "refuse cmd/snapshot when the disk has less free space than this",
                min=0,
                max=10_000_000,
            ),
        ),
    ),
    Section(
        "http",
        "Status page and HTTP API (see README). Off by default; a non-loopback host needs a token.",
        (
            Key("enabled", bool, False, "serve the status page, /api/*, /metrics, /snapshot.jpg, /stream.mjpg"),
            Key("host", str, "127.0.0.1", "address to bind; anything but loopback (e.g. 0.0.0.0) requires token"),
            Key("port", int, 8080, "TCP port; 0 = any free port (logged)", min=0, max=65535),
            Key(
                "token",
                str,
                None,
                "token for everything but /healthz and the page shell: an 'Authorization: Bearer TOKEN' header, "
                "or the page's login (open http://HOST:PORT/#token=TOKEN once); never accepted in the URL query",
                example="change-me",
            ),
            Key(
                "token_file",
                str,
                None,
                "file holding the token (first line), instead of token",
                example="/etc/edgesight/http-token",
            ),
            Key(
                "max_upload_mb", float, 8.0, "largest image POST /api/classify accepts (bigger: 413)", min=0.01, max=512
            ),
            Key(
                "mjpeg_fps",
                float,
                5.0,
                "frame-rate cap of /stream.mjpg (encoded in the HTTP thread, never the pipeline)",
                min=0.1,
                max=60,
            ),
            Key("max_streams", int, 4, "concurrent /stream.mjpg viewers", min=1, max=64),
            Key(
                "allowed_hosts",
                list,
                [],
                "extra names a browser may use in the Host header (DNS-rebinding guard); IP addresses, "
                "localhost, this machine's name and the bind address are always allowed",
            ),
            Key("max_connections", int, 32, "concurrent connections; beyond it new ones get 503", min=2, max=1024),
            Key(
                "read_timeout_s",
                float,
                10.0,
                "a client must send its request headers (and each part of a body) within this, or is dropped",
                min=0.5,
                max=600,
            ),
            Key(
                "write_timeout_s",
                float,
                10.0,
                "a /stream.mjpg viewer (or any client) that reads nothing for this long is dropped",
                min=0.5,
                max=600,
            ),
            Key("jpeg_quality", int, 80, "JPEG quality of the snapshot and stream", min=1, max=100),
            Key(
                "stale_after_s",
                float,
                5.0,
                "/healthz says 503 when no frame was classified for this long",
                min=0.1,
                max=3600,
            ),
        ),
    ),
    Section(
        "capture",
        "Save frames worth relabelling (low score, state change) for retraining.",
        (
            Key("enabled", bool, False, "write captures: <dir>/<YYYYmmdd>/<time>_<label>_<score>.jpg + .json"),
            Key("dir", str, "/var/lib/edgesight/capture", "capture folder (created if missing)"),
            Key("low_score", float, 0.5, "capture frames whose top-1 score is below this", min=0, max=1),
            Key("on_state_change", bool, True, "also capture the frame where the smoothed state changes"),
            Key(
                "min_interval_s",
                float,
                2.0,
                "at most one capture per this many seconds (low-score and state-change "
                "captures are limited separately)",
                min=0,
                max=86400,
            ),
            Key(
                "max_mb",
                float,
                500.0,
                "quota: the oldest of the daemon's own captures are deleted beyond it",
                min=0.01,
                max=10_000_000,
            ),
            Key(
                "min_free_mb",
                float,
                200.0,
                "skip captures when the disk has less free space than this",
                min=0,
                max=10_000_000,
            ),
            Key("jpeg_quality", int, 90, "JPEG quality of captures", min=1, max=100),
        ),
    ),
    Section(
        "drift",
        "Compare live top-1 scores/classes with the bundle's test_distribution; <prefix>/alert.",
        (
            Key("enabled", bool, True, "monitor drift when the bundle manifest has a test_distribution"),
            Key("window", int, 300, "frames in the sliding window", min=10, max=1_000_000),
            Key("min_samples", int, 100, "frames needed before the alert can be raised", min=1, max=1_000_000),
            Key(
                "bound",
                float,
                0.35,
                "alert when the drift score (Jensen-Shannon distance 0..1) exceeds this",
                min=0.01,
                max=1,
            ),
            Key(
                "clear_below",
                float,
                None,
                "clear the alert below this; default 0.8 x bound",
                min=0,
                max=1,
                example=0.28,
            ),
            Key("check_every", int, 10, "evaluate the window every N frames", min=1, max=100_000),
        ),
    ),
    Section(
        "deploy",
        "Signed bundles sent over the broker by `edgesight deploy` (see docs/fleet.md). Off by default.",
        (
            Key("enabled", bool, False, "accept bundles on <prefix>/deploy/offer; requires trusted_keys"),
            Key(
                "trusted_keys",
                list,
                [],
                "public keys (paths of deploy.pub files) a bundle must be signed by; empty = every deploy is refused",
            ),
            Key("dir", str, "/var/lib/edgesight/bundles", "where received bundles and the active record live"),
            Key(
                "keep",
                int,
                3,
                "bundles kept in dir (the active and the previous one are never deleted)",
                min=2,
                max=100,
            ),
            Key("max_bundle_mb", float, 200.0, "largest bundle (packed) an offer may announce", min=0.01, max=100_000),
            Key(
                "shadow_frames",
                int,
                30,
                "live frames the new model classifies beside the running one before it may take over",
                min=1,
                max=100_000,
            ),
            Key(
                "shadow_timeout_s",
                float,
                120.0,
                "refuse the bundle when the shadow phase has not seen shadow_frames frames within this",
                min=1,
                max=86400,
            ),
            Key(
                "min_agreement",
                float,
                0.9,
                "share of shadow frames whose top-1 label must match the running model",
                min=0,
                max=1,
            ),
            Key(
                "min_fps_ratio",
                float,
                0.5,
                "the new model's frame rate (shadow latency, then after the switch) must stay above this share "
                "of the old; "
                "0 = no floor",
                min=0,
                max=10,
            ),
            Key(
                "watch_s",
                float,
                10.0,
                "seconds watched after the switch; a failure rolls back to the previous bundle",
                min=0,
                max=86400,
            ),
            Key(
                "pull_dir",
                str,
                None,
                "the only folder a file:// deploy offer (--url) may be read from; default <dir>/drop",
                example="/var/lib/edgesight/bundles/drop",
            ),
            Key(
                "pull_timeout_s",
                float,
                30.0,
                "connect/read timeout of an http(s):// deploy download (--url)",
                min=1,
                max=3600,
            ),
        ),
    ),
]


def find_section(name: str) -> Section | None:
    return next((s for s in SCHEMA if s.name == name), None)


def section_class(section: Section) -> type:
    """The frozen dataclass holding one section's values, generated from its keys.

    ``MqttSection(host: str = "localhost", port: int = 1883, ...)``: the field types come from
    :attr:`Key.python_type`, the defaults from the schema, so adding a ``Key`` adds the field.
    """
    fields = [(key.name, key.python_type, dataclasses.field(default=_frozen(key.default))) for key in section.keys]
    cls = dataclasses.make_dataclass(
        f"{section.name.title()}Section",
        fields,
        frozen=True,
        namespace={"__doc__": f"[{section.name}]: {section.doc}", "__getitem__": _item},
    )
    cls.__module__ = __name__
    return cls


def _item(self: Any, name: str) -> Any:
    """``section["port"]``, for code written when sections were dicts; prefer ``section.port``."""
    try:
        return getattr(self, name)
    except AttributeError:
        raise KeyError(name) from None


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# One dataclass per section, e.g. SECTION_TYPES["http"](port=0) -> HttpSection(enabled=False, ..., port=0, ...)
SECTION_TYPES: dict[str, type] = {section.name: section_class(section) for section in SCHEMA}


@dataclass
class Config:
    """Validated values of every section (defaults filled in) and where they came from.

    ``config.mqtt`` is that section's frozen dataclass; :meth:`override` swaps in a new one.
    """

    sections: dict[str, Any]
    path: Path | None = None
    origin: dict[tuple[str, str], str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(name)

    def __getitem__(self, name: str) -> Any:
        return self.sections[name]

    def override(self, values: Mapping[tuple[str, str], Any], where: str = "command line") -> None:
        """Apply values (e.g. CLI flags) over the file, validated like the file."""
        for (section_name, key_name), value in values.items():
            if value is None:
                continue
            self._set(section_name, key_name, value, where)

    def _set(self, section_name: str, key_name: str, value: Any, where: str) -> None:
        section = find_section(section_name)
        key = section.key(key_name) if section is not None else None
        if key is None:
            raise ConfigError(f"{where}: [{section_name}] {key_name}: unknown key")
        try:
            checked = key.check(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: [{section_name}] {key_name}: {exc}") from None
        self.sections[section_name] = dataclasses.replace(self.sections[section_name], **{key_name: checked})
        self.origin[(section_name, key_name)] = where

    # derived values the daemon needs in several places
    @property
    def device_id(self) -> str:
        return self.mqtt.device_id or default_device_id()

    @property
    def topic_prefix(self) -> str:
        return (self.mqtt.prefix or f"edgesight/{self.device_id}").rstrip("/")


def default_device_id() -> str:
    """The host name, reduced to characters that are safe in topics and HA unique ids."""
    name = socket.gethostname().split(".")[0].lower()
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name) or "edgesight"


def defaults() -> Config:
    return Config({name: cls() for name, cls in SECTION_TYPES.items()})


def validate(data: Mapping[str, Any], where: str) -> Config:
    """Check parsed TOML against :data:`SCHEMA`; the first problem is one ConfigError line."""
    config = defaults()
    for section_name, table in data.items():
        section = find_section(section_name)
        if section is None:
            known = ", ".join(s.name for s in SCHEMA)
            raise ConfigError(f"{where}: [{section_name}]: unknown section (known: {known})")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: {section_name}: expected a [{section_name}] table")
        for key_name, value in table.items():
            if section.key(key_name) is None:
                known = ", ".join(k.name for k in section.keys)
                raise ConfigError(f"{where}: [{section_name}] {key_name}: unknown key (known: {known})")
            config._set(section_name, key_name, value, where)
    return config


def load_config(path: str | Path | None) -> Config:
    """Read and validate a TOML file; ``None`` gives the defaults."""
    if path is None:
        return defaults()
    path = Path(path)
    where = str(path)
    data = read_toml(path)
    config = validate(data, where)
    config.path = path
    return config


def _toml_value(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, list) and value and not isinstance(value[0], str):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value)


def render_example(sections: Iterable[Section] = SCHEMA) -> str:
    """The documented example config: every key with its doc, allowed values and default."""
    lines = [
        "# edgesight daemon config (TOML). Every key is optional; shown values are the defaults.",
        "# Commented-out keys have no default; the value shown is an example.",
        "# Rendered from edgesight.device.config.SCHEMA: edit the schema, then the file.",
        "",
    ]
    for section in sections:
        lines += [f"# {section.doc}", f"[{section.name}]"]
        for key in section.keys:
            lines.append(f"# {key.doc} ({key.describe()})")
            if key.default is None:
                lines.append(f"# {key.name} = {_toml_value(key.example)}")
            else:
                lines.append(f"{key.name} = {_toml_value(key.default)}")
        lines.append("")
    return "\n".join(lines)
