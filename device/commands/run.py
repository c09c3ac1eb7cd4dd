"""``edgesight run``: the real-time classifier daemon (camera -> model -> MQTT), systemd-aware.

Flags override the config file; both are validated against one schema (``device/config.py``).
"""

from __future__ import annotations

import argparse
import sys

from ..config import Config, defaults, load_config, render_example


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML config (see systemd/edgesight.toml for every key)")
    parser.add_argument("--model", metavar="MODEL_OR_BUNDLE", help="bundle directory or .tflite ([model] path)")
    parser.add_argument("--labels", metavar="FILE", help="labels for a bare .tflite ([model] labels)")
    parser.add_argument(
        "--source",
        metavar="SPEC",
        help="camera index, picamera2[:N], URL, video file, folder or GStreamer pipeline ([source] spec)",
    )
    parser.add_argument("--broker", metavar="HOST[:PORT]", help="MQTT broker ([mqtt] host/port)")
    parser.add_argument("--device-id", metavar="ID", help="device id in topics ([mqtt] device_id)")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop cleanly after N classified frames")
    parser.add_argument("--loop", action="store_true", default=None, help="restart a video file at its end")
    parser.add_argument(
        "--realtime",
        action="store_true",
        default=None,
        help="pace a video file to its frame rate, dropping late frames like a camera",
    )
    parser.add_argument("--workers", type=int, metavar="N", help="interpreters in parallel ([model] workers)")
    parser.add_argument("--no-mqtt", action="store_true", help="classify and log only ([mqtt] enabled = false)")
    parser.add_argument("--check", action="store_true", help="validate the config and load the model, then exit")
    parser.add_argument("--print-config", action="store_true", help="print the documented example config and exit")


def build_config(args: argparse.Namespace) -> Config:
    """The file's values with the flags applied on top (each validated, naming the key)."""
    from ..core.errors import UsageError
    from ..mqtt.link import parse_broker

    config = load_config(args.config) if args.config else defaults()
    host = port = None
    if args.broker:
        host, port = parse_broker(args.broker)
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError("--max-frames: expected an integer >= 1")
    config.override(
        {
            ("model", "path"): args.model,
            ("model", "labels"): args.labels,
            ("model", "workers"): args.workers,
            ("source", "spec"): args.source,
            ("source", "loop"): args.loop,
            ("source", "realtime"): args.realtime,
            ("mqtt", "host"): host,
            ("mqtt", "port"): port,
            ("mqtt", "device_id"): args.device_id,
            ("mqtt", "enabled"): False if args.no_mqtt else None,
        }
    )
    return config


def run(args: argparse.Namespace) -> int:
    if args.print_config:
        sys.stdout.write(render_example())
        return 0
    config = build_config(args)
    if args.check:
        _check_gstreamer(config.source.spec)
    from ..daemon import Daemon
    from ..service import on_stop_signals

    # a camera that is not up yet is waited for, except by --check, which must answer now
    daemon = Daemon(config, max_frames=args.max_frames, wait_for_device=not args.check)
    if args.check:
        c = daemon.pipeline.classifier
        print(
            f"ok: {config.path or 'defaults'}; model {c.name} {c.version} on {c.runtime.name}; "
            f"source {daemon.source.name}; {daemon.pipeline.workers} worker(s); topics {config.topic_prefix}/..."
        )
        daemon.source.close()
        return 0
    on_stop_signals(daemon.request_stop)
    # A person at a terminal sees one line at start and one at the end (the logs, at -v, are for
    # journald); -q keeps only warnings and errors.
    say = None if getattr(args, "quiet", False) else _to_stderr
    code = daemon.run(announce=say)
    if say is not None:
        say(daemon.summary())
    return code


def _check_gstreamer(spec: str) -> None:
    """A GStreamer source (a pipeline, jetson-csi) on an OpenCV without GStreamer: say why and what to install.

    Without this the camera just "cannot open"; on a Jetson the cause is nearly always pip's
    OpenCV (no GStreamer) shadowing JetPack's.
    """
    from ..doctor import gstreamer_problem, source_kind

    if source_kind(spec) != "gstreamer":
        return
    problem = gstreamer_problem()
    if problem is not None:
        from ..core.errors import UsageError

        raise UsageError(f"source {spec.strip()!r}: {problem}")


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
