"""The daemon's own files (captures, snapshots) under faults: a full disk, SIGKILL mid-write, a flood.

Real files and real OS faults: a child process whose file-size limit (RLIMIT_FSIZE, no privileges
needed) makes every large write fail part-way as a full disk does, a real SIGKILL of a child that
is writing, and a monkeypatched fsync answering ENOSPC as a full disk does at flush time.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgesight.device.capture import MARKER, CaptureSettings, CaptureWriter, own_captures
from edgesight.device.classify import Classification, Prediction
from edgesight.device.config import validate
from edgesight.device.core.errors import EdgesightError
from edgesight.device.files import is_temp
from edgesight.device.results import FrameResult
from edgesight.device.snapshot import own_snapshots, save_snapshot
from edgesight.device.sources import Frame

HELPERS = """
import time, numpy as np
from edgesight.device.classify import Classification, Prediction
from edgesight.device.results import FrameResult
from edgesight.device.sources import Frame

def result(number, size=256, score=0.1):
    rng = np.random.default_rng(number)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)  # noise: a JPEG as big as they come
    top = (Prediction(1, "cat", score), Prediction(2, "dog", 0.05))
    frame = Frame(number, image, time.time(), 1.0)
    return FrameResult(frame, Classification(top), {"total": 5.0}, {"name": "m", "version": "1"})
"""


def result(number: int, size: int = 64, score: float = 0.1) -> FrameResult:
    image = np.random.default_rng(number).integers(0, 256, (size, size, 3), dtype=np.uint8)
    top = (Prediction(1, "cat", score), Prediction(2, "dog", 0.05))
    return FrameResult(
        Frame(number, image, time.time() + number * 0.01, 1.0),
        Classification(top),
        {"total": 5.0},
        {"name": "m", "version": "1"},
    )


def snapshot_section(folder: Path, **keys):
    return validate({"snapshot": {"dir": str(folder), "min_free_mb": 0, **keys}}, "test").snapshot


def run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", HELPERS + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def assert_complete(path: Path) -> None:
    """A file at a final name is whole: the JSON parses, the JPEG has its end marker and decodes."""
    data = path.read_bytes()
    if path.suffix == ".json":
        json.loads(data)
    elif path.suffix == ".jpg":
        assert data.endswith(b"\xff\xd9"), f"{path} is cut off ({len(data)} bytes)"
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None, path


def test_full_disk_leaves_no_broken_capture_and_logs_once(tmp_path):
    """Every JPEG write fails part-way (the file-size limit): no truncated file stays, one log line."""
    root = tmp_path / "capture"
    proc = run_child(
        f"""
        import json, logging, resource, signal, sys
        from pathlib import Path
        from edgesight.device.capture import CaptureSettings, CaptureWriter
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        capture = CaptureWriter(CaptureSettings(Path({str(root)!r}), min_interval_s=0, min_free_mb=0))
        capture.flush()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        for n in range(40):
            capture(result(n))
            capture.flush()
        capture.close()
        print(json.dumps(capture.stats()))
        """
    )
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout.splitlines()[-1])
    assert stats["saved"] == 0 and stats["write_failures"] == 40, stats
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if "cannot write" in line]
    assert len(warnings) == 1 and "only counted" in warnings[0], proc.stderr[-3000:]
    assert all_files(root) == [], f"a failed write left files: {all_files(root)}"


def test_full_disk_at_fsync_refuses_the_snapshot_in_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "snap"

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(EdgesightError, match=r"\[snapshot\] dir: cannot write .*No space left on device"):
        save_snapshot(result(1), snapshot_section(folder), "dev")
    assert all_files(folder) == []


def test_a_full_disk_mid_write_leaves_no_half_snapshot(tmp_path):
    folder = tmp_path / "snap"
    proc = run_child(
        f"""
        import resource, signal
        from edgesight.device.config import validate
        from edgesight.device.core.errors import EdgesightError
        from edgesight.device.snapshot import save_snapshot
        section = validate({{"snapshot": {{"dir": {str(folder)!r}, "min_free_mb": 0}}}}, "t").snapshot
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        try:
            save_snapshot(result(1), section, "dev")
        except EdgesightError as exc:
            print("refused:", exc)
        """
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "refused: [snapshot] dir: cannot write dev-" in proc.stdout, proc.stdout
    assert all_files(folder) == []


@pytest.mark.parametrize("attempt", range(4))
def test_sigkill_mid_write_never_leaves_a_broken_file(tmp_path, attempt):
    """Kill a child that writes big snapshots and captures as fast as it can, at varying moments."""
    snaps, captures = tmp_path / "snap", tmp_path / "capture"
    code = f"""
        import sys
        from pathlib import Path
        from edgesight.device.capture import CaptureSettings, CaptureWriter
        from edgesight.device.config import validate
        from edgesight.device.snapshot import save_snapshot
        section = validate({{"snapshot": {{"dir": {str(snaps)!r}, "min_free_mb": 0}}}}, "t").snapshot
        capture = CaptureWriter(CaptureSettings(Path({str(captures)!r}), min_interval_s=0, min_free_mb=0))
        big = result(0, size=1500)
        print("ready", flush=True)
        n = 0
        while True:
            n += 1
            save_snapshot(result(n, size=1500), section, "dev")
            capture(big)
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", HELPERS + textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(0.4 + 0.37 * attempt)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    finals = [p for p in all_files(tmp_path) if not is_temp(p.name)]
    assert finals, "the child wrote nothing before it was killed"
    for path in finals:
        assert_complete(path)
    # the next start clears what the kill left: temporary files and half pairs
    save_snapshot(result(10_000), snapshot_section(snaps), "dev")
    writer = CaptureWriter(CaptureSettings(captures, min_interval_s=0, min_free_mb=0))
    writer.close()
    leftovers = [p for p in all_files(tmp_path) if is_temp(p.name)]
    assert leftovers == [], leftovers
    assert all(len(files) == 2 for _, files in own_snapshots(snaps, "dev"))
    for capture in own_captures(captures):
        assert capture.image.exists() and capture.sidecar.exists()
    images = {p.with_suffix("") for p in captures.rglob("*.jpg")}
    assert images == {p.with_suffix("") for p in captures.rglob("*.json")}


def test_leftovers_of_failed_writes_are_removed_and_nothing_else(tmp_path):
    """What older versions left on a full disk (zero-byte JPEGs, a cut-off sidecar) goes at start."""
    root = tmp_path / "capture"
    day = root / "20240101"
    day.mkdir(parents=True)
    doomed = {
        day / "20240101T000000.000Z_cat_0.100.jpg": b"",  # zero bytes, no sidecar
        day / "20240101T000001.000Z_cat_0.100.jpg": b"\xff\xd8 partial",
        day / "20240101T000001.000Z_cat_0.100.json": f'{{\n "{MARKER}": 1,\n "reason": "low'.encode(),
        day / "20240101T000002.000Z_cat_0.100.json": json.dumps({MARKER: 1}).encode(),  # image never came
        day / ".edgesight-20240101T000003.000Z_cat_0.100.jpg.123.tmp": b"half",
        root / ".edgesight-x.json.9.tmp": b"half",
    }
    kept = {
        day / "20240101T000004.000Z_lookalike_0.100.jpg": b"a person's file: not empty, no sidecar",
        day / "holiday.jpg": b"",
        day / "notes.json": b"{not ours",
        root / "SORTED" / "cat" / "keep.jpg": b"sorted by hand",
    }
    for path, data in {**doomed, **kept}.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    writer = CaptureWriter(CaptureSettings(root, min_interval_s=0, min_free_mb=0))
    writer.close()
    assert writer.stats()["leftovers_removed"] == len(doomed)
    for path in doomed:
        assert not path.exists(), f"{path} should have been removed"
    for path, data in kept.items():
        assert path.read_bytes() == data, f"{path} was touched"


def test_snapshot_flood_stays_within_the_quota(tmp_path):
    """3,000 cmd/snapshot once wrote 1,016 files: now the oldest own snapshots rotate out."""
    folder = tmp_path / "snap"
    folder.mkdir()
    (folder / "readme.txt").write_text("a person's file")
    (folder / "other-20200101T000000-00000001.jpg").write_bytes(b"another device's snapshot")
    section = snapshot_section(folder, max_files=5)
    saved = [save_snapshot(result(n), section, "dev") for n in range(1, 301)]
    pairs = own_snapshots(folder, "dev")
    assert len(pairs) == 5 and all(len(files) == 2 for _, files in pairs)
    assert saved[-1].image.exists() and saved[-1].result.exists()
    assert (folder / "readme.txt").read_text() == "a person's file"
    assert (folder / "other-20200101T000000-00000001.jpg").exists()
    # by size too: a quota smaller than two snapshots keeps only the newest
    small = snapshot_section(folder, max_files=1000, max_mb=0.01)
    last = save_snapshot(result(400), small, "dev")
    assert [base for base, _ in own_snapshots(folder, "dev")] == [last.image.stem]


def test_snapshot_is_refused_below_the_free_space_floor(tmp_path):
    folder = tmp_path / "snap"
    with pytest.raises(EdgesightError, match=r"less than .* MB free .*\[snapshot\] min_free_mb"):
        save_snapshot(result(1), snapshot_section(folder, min_free_mb=9_000_000), "dev")
    assert all_files(folder) == []


def test_capture_settings_come_from_the_section():
    section = validate({"capture": {"dir": "/tmp/x", "low_score": 0.3, "max_mb": 7.0}}, "t").capture
    settings = CaptureSettings.from_section(section)
    assert settings.dir == Path("/tmp/x") and settings.low_score == 0.3 and settings.max_mb == 7.0
    assert settings.jpeg_quality == section.jpeg_quality and settings.min_free_mb == section.min_free_mb
