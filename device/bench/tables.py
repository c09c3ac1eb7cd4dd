"""Benchmark results as tables a person reads at a glance (plain text or Markdown), and comparisons.

The JSON report (:mod:`.report`) is the source of truth; everything here only formats it, so
the table on stdout, the Markdown file and the JSON always show the same figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .report import report_warning

Row = list[str]

# (metric key, title, higher is better) for the comparison of two runs
COMPARED: tuple[tuple[str, str, bool], ...] = (
    ("preprocess_720p_p50", "preprocess 1280x720 p50 ms", False),
    ("limit_fps", "CPU-bound limit fps", True),
    ("sequential_fps", "sequential loop fps", True),
    ("pipeline_fps", "pipeline fps", True),
    ("pipeline_latency_p50", "pipeline per-frame latency p50 ms", False),
    ("mqtt_p50", "end-to-end MQTT p50 ms", False),
    ("mqtt_p99", "end-to-end MQTT p99 ms", False),
    ("cold_start_p50", "cold start p50 ms", False),
    ("peak_rss_mb", "pipeline peak RSS MB", False),
)


def table(headers: Row, cells: Iterable[Iterable[Any]], markdown: bool = False) -> str:
    """Columns padded to their widest cell; numbers right-aligned; ``markdown`` gives a pipe table."""
    rows = [[str(cell) for cell in row] for row in cells]
    numeric = [all(_looks_numeric(row[i]) for row in rows if row[i] not in ("", "-")) for i in range(len(headers))]
    if markdown:
        lines = [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join(" ---: " if numeric[i] else " --- " for i in range(len(headers))) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [
        max(len(headers[i]), *(len(row[i]) for row in rows)) if rows else len(headers[i]) for i in range(len(headers))
    ]

    def line(cells: Row) -> str:
        return "  ".join(
            cell.rjust(widths[i]) if numeric[i] else cell.ljust(widths[i]) for i, cell in enumerate(cells)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def _looks_numeric(text: str) -> bool:
    """A figure, or figures joined by '/' (e.g. p50/p99)."""
    try:
        return all(part == "-" or float(part) == float(part) for part in text.split("/"))
    except ValueError:
        return False


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}"
    return str(value)


def model_label(row: dict[str, Any]) -> str:
    name = row.get("name") or row["target"]["model"]
    variant = row["target"].get("model_file")
    return f"{name}:{variant}" if variant else name


def runtime_label(row: dict[str, Any]) -> str:
    runtime = row.get("runtime")
    return f"{runtime['name']} {runtime['version']}" if runtime else row["target"]["runtime"]


def input_label(row: dict[str, Any]) -> str:
    spec = row.get("input")
    if not spec:
        return "-"
    _, height, width, _ = spec["shape"]
    return f"{height}x{width} {spec['dtype']}"


def headline(report: dict[str, Any]) -> str:
    machine, source, settings = report["machine"], report["source"], report["settings"]
    board = f", {machine['board']}" if machine.get("board") else ""
    temps = machine.get("cpu_temp_c") or {}
    if temps.get("start") is not None:
        board += f", {fmt(temps['start'], 0)}->{fmt(temps.get('end'), 0)} °C"
    return (
        f"edgesight bench {report['edgesight']} on {machine['host']} ({machine['cpu_model']}, "
        f"{machine['cores']} cores, {machine['arch']}{board}), {report['created']}\n"
        f"source: {source['width']}x{source['height']} {source['kind']} {source['path']} "
        f"({source['frames']} frames); invoke: {settings['runs']} runs after {settings['warmup']} warm-up"
    )


def invoke_rows(report: dict[str, Any]) -> list[Row]:
    rows = []
    for row in report["models"]:
        for threads, stats in (row.get("invoke") or {}).items():
            rows.append(
                [
                    model_label(row),
                    runtime_label(row),
                    input_label(row),
                    threads,
                    *(fmt(stats[k], 2) for k in ("mean", "p50", "p90", "p99", "min", "max")),
                ]
            )
    return rows


def preprocess_rows(report: dict[str, Any]) -> list[Row]:
    rows = []
    for row in report["models"]:
        if row.get("preprocess"):
            rows.append(
                [
                    model_label(row),
                    input_label(row),
                    *(fmt(row["preprocess"][size]["p50"], 2) for size in row["preprocess"]),
                ]
            )
    return rows


def summary(row: dict[str, Any]) -> dict[str, Any]:
    """The handful of figures that size hardware, flat, for the glance table and comparisons."""
    pipeline = row.get("pipeline") or {}
    mqtt = (row.get("mqtt") or {}).get("e2e") or {}
    figures = {
        "preprocess_720p_p50": ((row.get("preprocess") or {}).get("1280x720") or {}).get("p50"),
        "limit_fps": (row.get("limit") or {}).get("fps"),
        "sequential_fps": (row.get("sequential") or {}).get("fps"),
        "pipeline_fps": pipeline.get("fps"),
        "ratio_to_limit": pipeline.get("ratio_to_limit"),
        "ratio_to_sequential": pipeline.get("ratio_to_sequential"),
        "pipeline_latency_p50": (pipeline.get("latency") or {}).get("p50"),
        "mqtt_p50": mqtt.get("p50"),
        "mqtt_p99": mqtt.get("p99"),
        "cold_start_p50": (row.get("cold_start") or {}).get("p50"),
        "peak_rss_mb": pipeline.get("peak_rss_mb"),
        "sequential_rss_mb": (row.get("sequential") or {}).get("peak_rss_mb"),
    }
    for threads, stats in (row.get("invoke") or {}).items():
        figures[f"invoke_{threads}_p50"] = stats["p50"]
    return figures


def glance_rows(report: dict[str, Any]) -> list[Row]:
    rows = []
    for row in report["models"]:
        if "error" in row:
            rows.append([model_label(row), row["target"]["runtime"], "error: " + row["error"]] + ["-"] * 8)
            continue
        s = summary(row)
        mqtt = f"{fmt(s['mqtt_p50'])}/{fmt(s['mqtt_p99'])}" if s["mqtt_p50"] is not None else "-"
        rss = f"{fmt(s['sequential_rss_mb'], 0)}/{fmt(s['peak_rss_mb'], 0)}"
        invoke = "/".join(fmt(s[f"invoke_{t}_p50"], 2) for t in (row.get("invoke") or {}))
        rows.append(
            [
                model_label(row),
                runtime_label(row),
                invoke or "-",
                fmt(s["limit_fps"]),
                fmt(s["sequential_fps"]),
                fmt(s["pipeline_fps"]),
                fmt(s["ratio_to_limit"], 2),
                fmt(s["ratio_to_sequential"], 2),
                mqtt,
                fmt(s["cold_start_p50"], 0),
                rss,
            ]
        )
    return rows


def stage_rows(report: dict[str, Any]) -> list[Row]:
    rows = []
    for row in report["models"]:
        for run in ("sequential", "pipeline"):
            stages = (row.get(run) or {}).get("stages") or {}
            for stage, stats in stages.items():
                rows.append(
                    [model_label(row), run, stage, *(fmt(stats[k], 2) for k in ("mean", "p50", "p90", "p99", "max"))]
                )
    return rows


def _drop_column(headers: Row, rows: list[Row], index: int) -> tuple[Row, list[Row]]:
    return headers[:index] + headers[index + 1 :], [row[:index] + row[index + 1 :] for row in rows]


def render(report: dict[str, Any], markdown: bool = False) -> str:
    """The whole report: headline, the glance table, then the detail tables.

    When every row ran on the same runtime it is named once in the headline, not in a column.
    """
    threads = "/".join(str(t) for t in report["settings"]["threads"])
    runtimes = {runtime_label(row) for row in report["models"] if row.get("runtime")}
    one_runtime = len(runtimes) == 1
    heading = (lambda text: f"\n### {text}\n") if markdown else (lambda text: f"\n{text}")
    head = headline(report) + (f"; runtime: {next(iter(runtimes))}" if one_runtime else "")
    parts = ["```\n" + head + "\n```" if markdown else head]
    headers = [
        "model",
        "runtime",
        f"invoke p50 ms ({threads} thr)",
        "limit fps",
        "seq fps",
        "pipeline fps",
        "pipe/limit",
        "pipe/seq",
        "MQTT e2e p50/p99 ms",
        "cold start ms",
        "peak RSS MB seq/pipe",
    ]
    rows = glance_rows(report)
    if one_runtime:
        headers, rows = _drop_column(headers, rows, 1)
    parts += [
        heading("At a glance (fps: frames per second; ms: milliseconds; limit = cores / CPU ms per frame)"),
        table(headers, rows, markdown),
    ]
    if any(row.get("invoke") for row in report["models"]):
        headers = ["model", "runtime", "input", "threads", "mean", "p50", "p90", "p99", "min", "max"]
        rows = invoke_rows(report)
        if one_runtime:
            headers, rows = _drop_column(headers, rows, 1)
        parts += [
            heading("Invoke latency (ms): the interpreter call alone, after warm-up"),
            table(headers, rows, markdown),
        ]
    prep = preprocess_rows(report)
    if prep:
        sizes = next(list(row["preprocess"]) for row in report["models"] if row.get("preprocess"))
        parts += [
            heading("Preprocessing p50 (ms): BGR frame -> model tensor (colour, crop, resize)"),
            table(["model", "input", *sizes], prep, markdown),
        ]
    stages = stage_rows(report)
    if stages:
        parts += [
            heading("Per-stage latency (ms) on the file source"),
            table(["model", "run", "stage", "mean", "p50", "p90", "p99", "max"], stages, markdown),
        ]
    mqtt = mqtt_rows(report)
    if mqtt:
        parts += [
            heading("MQTT end to end (ms), source paced to its frame rate like a camera"),
            table(
                ["model", "broker", "received", "e2e p50", "e2e p99", "pipeline p50", "pub->sub p50", "pub->sub p99"],
                mqtt,
                markdown,
            ),
        ]
    warning = report_warning(report)
    if warning:
        parts.append(f"\n**Warning:** {warning}" if markdown else f"\nwarning: {warning}")
    return "\n".join(parts) + "\n"


def mqtt_rows(report: dict[str, Any]) -> list[Row]:
    rows = []
    for row in report["models"]:
        mqtt = row.get("mqtt")
        if mqtt:
            rows.append(
                [
                    model_label(row),
                    mqtt["broker"],
                    f"{mqtt['received']}/{mqtt['published']}",
                    fmt(mqtt["e2e"]["p50"], 2),
                    fmt(mqtt["e2e"]["p99"], 2),
                    fmt(mqtt["pipeline"]["p50"], 2),
                    fmt(mqtt["transit"]["p50"], 2),
                    fmt(mqtt["transit"]["p99"], 2),
                ]
            )
    return rows


# --------------------------------------------------------------------------- comparing two runs


@dataclass(frozen=True)
class Change:
    model: str
    metric: str
    before: float
    after: float
    higher_is_better: bool

    @property
    def ratio(self) -> float:
        return self.after / self.before if self.before else float("inf")

    @property
    def verdict(self) -> str:
        if abs(self.ratio - 1) < 0.03:
            return "same"
        improved = self.ratio > 1 if self.higher_is_better else self.ratio < 1
        return "better" if improved else "worse"


def row_key(row: dict[str, Any]) -> str:
    return f"{model_label(row)} [{row['target']['runtime']}]"


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """Each figure measured in both reports, for the models (and runtimes) both contain."""
    after_rows = {row_key(row): row for row in after["models"] if "error" not in row}
    changes = []
    for row in before["models"]:
        key = row_key(row)
        if "error" in row or key not in after_rows:
            continue
        a, b = summary(row), summary(after_rows[key])
        metrics = [(f"invoke_{t}_p50", f"invoke p50 ms, {t} thread(s)", False) for t in (row.get("invoke") or {})]
        for metric, title, higher in (*metrics, *COMPARED):
            if a.get(metric) is not None and b.get(metric) is not None:
                changes.append(Change(key, title, float(a[metric]), float(b[metric]), higher))
    return changes


def render_comparison(before: dict[str, Any], after: dict[str, Any], markdown: bool = False) -> str:
    changes = compare(before, after)
    lines = [
        f"A: {before['machine']['host']} ({before['machine']['cpu_model']}, {before['machine']['cores']} cores) "
        f"{before['created']}",
        f"B: {after['machine']['host']} ({after['machine']['cpu_model']}, {after['machine']['cores']} cores) "
        f"{after['created']}",
        "",
    ]
    rows = [[c.model, c.metric, fmt(c.before, 2), fmt(c.after, 2), fmt(c.ratio, 2), c.verdict] for c in changes]
    lines.append(table(["model", "figure", "A", "B", "B/A", "B is"], rows, markdown))
    return "\n".join(lines) + "\n"
