"""`edgesight bench`: JSON schema and plausible values on the shared models and on a bundle.

Real parts throughout: the shared LiteRT models, a 720p video written by cv2.VideoWriter, the
daemon's pipeline in a child process, a real mosquitto and paho subscriber for --mqtt, and
fresh `edgesight predict` processes for the cold start. No timing assertions: every check is
about structure and consistency (p50 <= p90 <= p99, fps > 0, ratios match their inputs).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, assert_one_line_error, run_cli

from edgesight.device.bench.footage import make_test_video
from edgesight.device.bench.measure import FRAME_SIZES
from edgesight.device.bench.report import SCHEMA
from edgesight.device.core.bundle import write_bundle
from edgesight.device.core.preprocess import InputContract

FRAMES = 12
QUICK = ("--runs", "5", "--warmup", "1", "--frames", str(FRAMES), "--cold-runs", "1", "--no-progress")


def check_latency(stats: dict, n: int | None = None) -> None:
    """A latency summary that is internally consistent."""
    assert set(stats) == {"n", "mean", "p50", "p90", "p99", "min", "max"}, stats
    assert 0 <= stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"], stats
    assert stats["min"] <= stats["mean"] <= stats["max"], stats
    if n is not None:
        assert stats["n"] == n, stats


def check_row(row: dict, threads: list[int], frames: int, *, mqtt: bool, runs: int = 5) -> None:
    """Every figure of one model row present and plausible."""
    assert "error" not in row, row
    assert row["runtime"]["name"] and row["runtime"]["version"]
    assert row["bytes"] > 0 and len(row["input"]["shape"]) == 4
    assert sorted(row["invoke"], key=int) == [str(t) for t in threads]
    for stats in row["invoke"].values():
        check_latency(stats, runs)
        assert stats["min"] > 0
    assert list(row["preprocess"]) == list(FRAME_SIZES)
    for stats in row["preprocess"].values():
        check_latency(stats)
    limit = row["limit"]
    assert limit["cores"] >= 1
    assert limit["per_frame_cpu_ms"] == pytest.approx(
        limit["decode_ms"] + limit["preprocess_ms"] + limit["invoke_1_thread_ms"], abs=0.01
    )
    assert limit["fps"] == pytest.approx(limit["cores"] * 1000 / limit["per_frame_cpu_ms"], rel=0.01)
    for run in ("sequential", "pipeline"):
        measured = row[run]
        assert measured["fps"] > 0 and measured["frames"] == frames, measured
        assert 20 < measured["peak_rss_mb"] < 4096, measured
        for stats in measured["stages"].values():
            check_latency(stats, frames)
    assert {"capture", "preprocess", "infer", "total"} <= set(row["sequential"]["stages"])
    pipeline = row["pipeline"]
    assert pipeline["workers"] >= 1 and pipeline["errors"] == 0
    check_latency(pipeline["latency"], frames)
    assert pipeline["ratio_to_limit"] == pytest.approx(pipeline["fps"] / limit["fps"], abs=0.002)
    assert pipeline["ratio_to_sequential"] == pytest.approx(pipeline["fps"] / row["sequential"]["fps"], abs=0.002)
    check_latency(row["cold_start"], 1)
    assert row["cold_start"]["min"] > 0
    if mqtt:
        measured = row["mqtt"]
        assert measured["broker"].startswith("mosquitto")
        assert measured["received"] == measured["published"] > 0 and measured["lost"] == 0, measured
        for key in ("e2e", "pipeline", "transit"):
            check_latency(measured[key], measured["received"])
        # e2e = (capture -> hand-off) + (hand-off -> subscriber), frame by frame
        assert measured["e2e"]["min"] >= measured["pipeline"]["min"]
    else:
        assert "mqtt" not in row


def test_both_shared_models_side_by_side_with_mqtt(tmp_path, v2_model, v1_model, imagenet_labels):
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    result = run_cli(
        "bench",
        v2_model,
        v1_model,
        "--labels",
        imagenet_labels,
        "--threads",
        "1,2",
        "--mqtt",
        *QUICK,
        "--json",
        out,
        "--markdown",
        md,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["schema"] == SCHEMA
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu_model"]
    assert set(report["machine"]["load_1m"]) == {"start", "end"}  # a busy machine shows in the file
    assert report["settings"]["threads"] == [1, 2] and report["settings"]["mqtt"] is True
    assert report["source"] == {**report["source"], "kind": "video", "width": 1280, "height": 720, "frames": FRAMES}
    assert [row["name"] for row in report["models"]] == [v2_model.stem, v1_model.stem]
    assert [row["input"]["shape"][1] for row in report["models"]] == [224, 128]
    for row in report["models"]:
        check_row(row, [1, 2], FRAMES, mqtt=True)
    # the same figures on stdout and in the Markdown file
    v2 = report["models"][0]
    assert "At a glance" in result.stdout and v2_model.stem in result.stdout and v1_model.stem in result.stdout
    assert f"{v2['pipeline']['fps']:.1f}" in result.stdout and f"{v2['limit']['fps']:.1f}" in result.stdout
    assert report["models"][0]["runtime"]["name"] in result.stdout
    markdown = md.read_text()
    assert "| model |" in markdown and f"{v2['pipeline']['fps']:.1f}" in markdown
    assert "MQTT end to end" in markdown


@pytest.fixture
def v2_bundle(tmp_path, v2_model, imagenet_labels) -> Path:
    """The shared V2 model wrapped as a bundle, plus a second variant file, as the trainer would write."""
    labels = imagenet_labels.read_text().splitlines()
    contract = InputContract(224, 224, "uint8", 0.0078125, 128, mean=128.0, std=128.0, fit="centre")
    return write_bundle(
        tmp_path / "bundle",
        {"model.tflite": v2_model, "model_copy.tflite": v2_model},
        labels,
        name="imagenet-v2",
        version="1.0.0",
        contract=contract,
        background_index=0,
        architecture={"name": "mobilenet_v2", "alpha": 1.0, "input_size": 224},
    )


def test_bundle_variants_on_an_image_folder(tmp_path, v2_bundle, images_dir):
    out = tmp_path / "r.json"
    images = len(list(images_dir.iterdir()))
    result = run_cli(
        "bench",
        v2_bundle,
        "--all-variants",
        "--runtime",
        "litert",
        "--threads",
        "1",
        "--source",
        images_dir,
        *QUICK,
        "--json",
        out,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["source"]["kind"] == "images" and report["source"]["path"] == str(images_dir)
    assert [row["target"]["model_file"] for row in report["models"]] == [None, "model_copy.tflite"]
    assert [Path(row["path"]).name for row in report["models"]] == ["model.tflite", "model_copy.tflite"]
    for row in report["models"]:
        assert row["name"] == "imagenet-v2" and row["version"] == "1.0.0"
        assert row["bundle"] == str(v2_bundle)
        check_row(row, [1], min(FRAMES, images), mqtt=False)
    assert "imagenet-v2:model_copy.tflite" in result.stdout


def test_skip_leaves_measurements_out(tmp_path, v1_model, imagenet_labels):
    video = make_test_video(tmp_path / "short.mp4", frames=4, width=320, height=240)
    out = tmp_path / "r.json"
    result = run_cli(
        "bench",
        v1_model,
        "--labels",
        imagenet_labels,
        "--source",
        video,
        "--threads",
        "1",
        "--skip",
        "sequential,pipeline,cold_start",
        *QUICK,
        "--json",
        out,
    )
    assert result.returncode == 0, result.stderr
    row = json.loads(out.read_text())["models"][0]
    assert "sequential" not in row and "pipeline" not in row and "cold_start" not in row
    assert row["limit"]["fps"] > 0 and row["decode"]["n"] == 4


@pytest.mark.parametrize(
    "args,fragments,code",
    [
        (("--threads", "1,x"), ("--threads", "1,x"), 2),
        (("--threads", "0"), ("--threads",), 2),
        (("--skip", "warp"), ("--skip", "warp"), 2),
        (("--runtime", "cuda"), ("--runtime", "cuda"), 2),
        (("--frames", "1"), ("--frames",), 2),
        (("--source", "/nonexistent/video.mp4"), ("/nonexistent/video.mp4",), 1),
        (("--json", "/"), ("--json", "directory"), 2),
        (("--runtime", "onnx"), (".onnx",), 1),  # a bare .tflite has no ONNX model to run
    ],
)
def test_bad_flags_are_one_line(args, fragments, code, v1_model, imagenet_labels):
    assert_one_line_error(run_cli("bench", v1_model, "--labels", imagenet_labels, *args), *fragments, code=code)


def test_bad_models_and_sources_are_one_line(tmp_path, v2_bundle, v1_model, imagenet_labels):
    assert_one_line_error(run_cli("bench", tmp_path / "missing.tflite"), "missing.tflite", code=1)
    with (v2_bundle / "model.tflite").open("ab") as handle:
        handle.write(b"tampered")
    assert_one_line_error(run_cli("bench", v2_bundle), "model.tflite", "sha256", code=1)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video")
    assert_one_line_error(
        run_cli("bench", v1_model, "--labels", imagenet_labels, "--source", not_video), "notes.mp4", code=1
    )


def test_compare_script_reports_ratios(tmp_path, v1_model, imagenet_labels):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    result = run_cli(
        "bench",
        v1_model,
        "--labels",
        imagenet_labels,
        "--threads",
        "1",
        "--skip",
        "sequential,pipeline,cold_start",
        *QUICK,
        "--json",
        a,
    )
    assert result.returncode == 0, result.stderr
    after = json.loads(a.read_text())
    after["models"][0]["limit"]["fps"] *= 2  # B twice as fast...
    after["models"][0]["invoke"]["1"]["p50"] *= 2  # ...and twice as slow
    b.write_text(json.dumps(after))
    script = [sys.executable, str(ROOT / "scripts" / "compare_bench.py")]
    proc = subprocess.run([*script, str(a), str(b), "--markdown"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = {
        cells[2]: cells[5:7]
        for cells in ([c.strip() for c in line.split("|")] for line in proc.stdout.splitlines() if "[litert]" in line)
    }
    assert rows["CPU-bound limit fps"] == ["2.00", "better"]
    assert rows["invoke p50 ms, 1 thread(s)"] == ["2.00", "worse"]
    assert rows["preprocess 1280x720 p50 ms"] == ["1.00", "same"]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    proc = subprocess.run([*script, str(a), str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "bad.json" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bench_script_writes_dated_results_and_never_overwrites(tmp_path, testdata):
    script = [
        sys.executable,
        str(ROOT / "scripts" / "bench.py"),
        "--out",
        str(tmp_path),
        "--testdata",
        str(testdata),
        "--",
        "--threads",
        "1",
        "--skip",
        "sequential,pipeline,cold_start,preprocess,limit",
        "--runs",
        "2",
        "--warmup",
        "0",
        "--frames",
        "5",
        "--no-progress",
    ]
    for _ in range(2):
        proc = subprocess.run([*script], capture_output=True, text=True, timeout=240, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in tmp_path.glob("results-*"))
    assert len(written) == 4 and all(n.endswith((".json", ".md")) for n in written), written
    assert any(n.endswith("-2.json") for n in written)
    report = json.loads(next(tmp_path.glob("results-*[0-9].json")).read_text())
    assert [row["name"] for row in report["models"]] == ["mobilenet_v2_1.0_224_quant", "mobilenet_v1_0.25_128_quant"]
    # the standard set asks for MQTT; a skipped stage is simply absent
    assert all(row["mqtt"]["received"] > 0 for row in report["models"])


def test_device_side_never_imports_tensorflow():
    modules = ", ".join(f"edgesight.device.bench.{name}" for name in BENCH_MODULES)
    code = f"import sys; import {modules}, edgesight.device.commands.bench; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_memory_figures_come_from_proc_without_importing_psutil():
    """The daemon's ``stats`` asks for its RSS every interval: on Linux that is a /proc read, not a
    psutil import (~2 MB and tens of ms on a Pi); the figures agree with psutil's."""
    code = (
        "import json, sys; from edgesight.device.machine import memory_rss_mb, memory_total_mb; "
        "rss, total = memory_rss_mb(), memory_total_mb(); loaded = 'psutil' in sys.modules; import psutil; "
        "print(json.dumps([rss, total, loaded, psutil.Process().memory_info().rss / 2**20, "
        "round(psutil.virtual_memory().total / 2**20)]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rss, total, loaded, psutil_rss, psutil_total = json.loads(proc.stdout)
    assert not loaded
    assert 0 < rss <= psutil_rss  # psutil's figure includes psutil itself
    assert total == psutil_total


BENCH_MODULES = sorted(p.stem for p in (ROOT / "device" / "bench").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", BENCH_MODULES)
def test_each_bench_module_imports_alone(name):
    """A fresh interpreter per module: an import cycle or a missing import shows as a failure."""
    proc = subprocess.run(
        [sys.executable, "-c", f"import edgesight.device.bench.{name}"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_a_child_runs_only_registered_functions(tmp_path):
    from edgesight.device.bench import children

    result = tmp_path / "result.json"
    assert children.child_entry(["run_bench", "{}", str(result)]) == 0
    assert "not a bench child run" in json.loads(result.read_text())["error"]
    with pytest.raises(ValueError, match="not registered"):
        children.run_in_child(make_test_video, out_path=str(tmp_path / "x.mp4"))


def test_busy_machine_is_warned_about_in_log_table_and_json(
    tmp_path, monkeypatch, caplog, capsys, v1_model, imagenet_labels
):
    """Load 6.8 on 2 cores: a WARNING before measuring, a footer under the table, both loads in the JSON."""
    from edgesight.device import machine
    from edgesight.device.bench import report as bench_report
    from edgesight.device.bench.tables import render
    from edgesight.device.cli import main

    monkeypatch.setattr(machine, "usable_cores", lambda: 2)
    monkeypatch.setattr(bench_report, "usable_cores", lambda: 2)
    monkeypatch.setattr(bench_report, "load_average", lambda: 6.8)
    video = make_test_video(tmp_path / "short.mp4", frames=3, width=320, height=240)
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    argv = ["bench", str(v1_model), "--labels", str(imagenet_labels), "--source", str(video), "--threads", "1"]
    argv += ["--skip", "preprocess,limit,sequential,pipeline,cold_start", *QUICK, "--json", str(out)]
    assert main([*argv, "--markdown", str(md)]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("load average 6.8 on 2 usable core(s)" in w for w in warnings), warnings
    report = json.loads(out.read_text())
    assert report["machine"]["load_1m"] == {"start": 6.8, "end": 6.8} and report["machine"]["cores"] == 2
    assert "warning: the machine was busy: load average 6.8 on 2 usable core(s)" in capsys.readouterr().out
    assert "**Warning:** the machine was busy" in md.read_text()
    quiet = {**report, "machine": {**report["machine"], "load_1m": {"start": 1.5, "end": 3.0}}}
    assert "warning" not in render(quiet)  # the end load includes the bench's own threads
    old = {**report, "machine": {**report["machine"], "load_1m": 6.8}}  # files from before load was recorded
    assert "warning" not in render(old)


def test_runtimes_side_by_side_on_a_bundle_with_onnx(tmp_path, images_dir):
    """A real Keras model converted to int8/float TFLite and ONNX: one row per runtime and file."""
    from accel_models import make_bundle, tiny_models

    bundle = make_bundle(tiny_models(images_dir), tmp_path / "tiny")
    out = tmp_path / "r.json"
    result = run_cli(
        "bench",
        bundle,
        "--all-variants",
        "--threads",
        "1",
        "--skip",
        "sequential,cold_start",
        *QUICK,
        "--json",
        out,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["models"]
    files = sorted((row["target"]["runtime"], Path(row["path"]).name) for row in rows)
    assert files == [("litert", "model.tflite"), ("litert", "model_float.tflite"), ("onnx", "model.onnx")]
    for row in rows:
        assert row["pipeline"]["fps"] > 0 and row["invoke"]["1"]["p50"] > 0
    onnx = next(row for row in rows if row["target"]["runtime"] == "onnx")
    assert onnx["runtime"]["name"] == "onnxruntime" and onnx["input"]["dtype"] == "float32"
    assert "onnxruntime" in result.stdout and "ai_edge_litert" in result.stdout  # a runtime column now


def test_latency_summary_and_limit_formula():
    from edgesight.device.bench.measure import Latency, cpu_limit, steady_fps

    stats = Latency.of([4.0, 1.0, 3.0, 2.0, 100.0])
    assert (stats.n, stats.min, stats.p50, stats.max, stats.mean) == (5, 1.0, 3.0, 100.0, 22.0)
    assert stats.p50 <= stats.p90 <= stats.p99 <= stats.max
    with pytest.raises(ValueError):
        Latency.of([])
    # 2 cores, 20 ms of CPU work per frame -> 100 fps (the figure for V2 at 720p)
    assert cpu_limit(2, 3.0, 2.2, 14.8)["fps"] == pytest.approx(100.0)
    assert steady_fps([10.0, 10.5, 11.0]) == pytest.approx(2.0)  # 2 intervals in 1 s
    assert steady_fps([10.0]) == 0.0


def test_tables_align_figures_and_render_markdown():
    from edgesight.device.bench.tables import table

    text = table(["model", "fps", "p50/p99"], [["a", "9.5", "1.0/2.0"], ["bb", "120.25", "-"]])
    lines = text.splitlines()
    assert lines[0].startswith("model") and set(lines[1]) <= {"-", " "}
    assert lines[2].endswith("1.0/2.0") and lines[3].split()[1] == "120.25"
    assert lines[2].index("9.5") + 3 == lines[3].index("120.25") + 6  # numbers right-aligned
    markdown = table(["model", "fps"], [["a", "9.5"]], markdown=True).splitlines()
    assert markdown == ["| model | fps |", "| --- | ---: |", "| a | 9.5 |"]


def test_a_child_reports_its_own_peak_memory_not_its_parents():
    """ru_maxrss survives exec; the peak a child reports must be its own (VmHWM)."""
    import subprocess
    import sys

    ballast = bytearray(300 * 2**20)  # the parent is 300 MB bigger than any child needs
    ballast[::4096] = b"x" * len(ballast[::4096])
    code = "from edgesight.device.machine import peak_rss_mb; print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert child < 250, child
    del ballast
