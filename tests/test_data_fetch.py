"""`edgesight data fetch` against a real HTTP server on 127.0.0.1 serving real photos and every bad
case: what is kept, what is rejected and why, what sources.csv says, that a re-run asks for nothing
it already has, and that a server killed mid-file leaves no partial file behind."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_one_line_error, free_port
from fetch_server import PhotoServer, serve

from edgesight.trainer.fetch import FetchOptions, Wanted, fetch, safe_name

HERE = Path(__file__).resolve().parent
LABEL = 'sun/flower: "big"*?'  # characters no file system takes in a name


@pytest.fixture
def server(images_dir: Path):
    srv = serve(free_port(), images_dir)
    yield srv
    srv.shutdown()
    srv.server_close()


def _sources(out: Path) -> dict[str, dict[str, str]]:
    with (out / "sources.csv").open(newline="", encoding="utf-8") as handle:
        return {row["url"]: row for row in csv.DictReader(handle)}


def _visible_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file() and p.name != "sources.csv")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_keeps_photos_rejects_every_bad_case_and_a_rerun_fetches_nothing(
    server: PhotoServer, images_dir: Path, tmp_path: Path, cli
) -> None:
    b = server.base
    rows = [
        ("url", "label"),
        (f"{b}/img/cat_720p.jpg", "cat"),
        (f"{b}/flaky/cat.bmp", "cat"),  # 500, then the photo
        (f"{b}/busy/dragonfly.bmp", "bug"),  # 429 + Retry-After: 1, then the photo
        (f"{b}/hop/3", "face"),  # a chain of 3 redirects to /img/face.jpg
        (f"{b}/img/hot_dog.jpg", "food"),
        (f"{b}/copy/hot_dog.jpg", "food"),  # the same photo under a second URL
        (f"{b}/img/hot_dog.jpg", "food"),  # the same URL twice
        (f"{b}/img/sunflower.bmp", LABEL),
        (f"{b}/missing.jpg", "cat"),
        (f"{b}/page.jpg", "cat"),  # an HTML page named .jpg
        (f"{b}/truncated.jpg", "food"),
        (f"{b}/huge.jpg", "food"),
        (f"{b}/huge-unannounced.jpg", "food"),
        (f"{b}/loop/0", "cat"),  # redirects without end
        (f"{b}/slow.jpg", "face"),  # no answer within --timeout
        (f"{b}/later.jpg", "cat"),  # 429 asking for an hour
        ("ftp://example.org/x.jpg", "cat"),
        (f"{b}/img/face.jpg", ""),
    ]
    source = tmp_path / "photos.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    out, ds = tmp_path / "raw", tmp_path / "ds"
    args = ("data", "fetch", source, out, "--max-mb", "1", "--timeout", "1", "--workers", "4", "--per-host", "2")

    started = time.monotonic()
    result = cli(*args, "--import", ds)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 1  # Retry-After: 1 was waited for
    assert "ignoring" not in result.stderr  # sources.csv is not a stray file to data import

    sources = _sources(out)
    assert len(sources) == len(rows) - 2  # the URL listed twice is one row
    expect = {
        "/img/cat_720p.jpg": ("ok", ""),
        "/flaky/cat.bmp": ("ok", ""),
        "/busy/dragonfly.bmp": ("ok", ""),
        "/hop/3": ("ok", ""),
        "/img/sunflower.bmp": ("ok", ""),
        "/missing.jpg": ("rejected", "HTTP 404"),
        "/page.jpg": ("rejected", "not an image"),
        "/truncated.jpg": ("rejected", "truncated image"),
        "/huge.jpg": ("rejected", "too large"),
        "/huge-unannounced.jpg": ("rejected", "too large"),
        "/loop/0": ("rejected", "too many redirects"),
        "/slow.jpg": ("failed", "read timeout"),
        "/later.jpg": ("failed", "HTTP 429"),
    }
    for path, (status, kind) in expect.items():
        row = sources[b + path]
        assert row["status"] == status, row
        assert row["error"].startswith(kind), row
    assert "text/html" in sources[f"{b}/page.jpg"]["error"]
    assert "3600" in sources[f"{b}/later.jpg"]["error"]
    assert sources["ftp://example.org/x.jpg"]["error"].startswith("bad URL")
    assert sources[f"{b}/img/face.jpg"]["error"].startswith("no label")
    assert server.hits["/later.jpg"] == 1  # an hour's wait is not waited, and not hammered either

    # provenance: bytes, sha256 and the final URL of each kept photo are the real ones
    for path, photo in (("/img/cat_720p.jpg", "cat_720p.jpg"), ("/hop/3", "face.jpg"), ("/flaky/cat.bmp", "cat.bmp")):
        row = sources[b + path]
        assert row["sha256"] == _sha(images_dir / photo)
        assert int(row["bytes"]) == (images_dir / photo).stat().st_size
        assert _sha(out / row["file"]) == row["sha256"]
    assert sources[f"{b}/hop/3"]["final_url"] == f"{b}/img/face.jpg"
    # the same photo under two URLs: whichever arrived first is kept, the other names that file
    pair = sorted((sources[f"{b}/img/hot_dog.jpg"], sources[f"{b}/copy/hot_dog.jpg"]), key=lambda r: r["status"])
    assert [r["status"] for r in pair] == ["duplicate", "ok"]
    assert pair[0]["error"].startswith("same content") and pair[0]["file"] == pair[1]["file"]

    files = _visible_files(out)
    assert len(files) == 6  # six distinct photos, each kept once; no rejected or partial file
    assert sorted({f.parent.name for f in files}) == sorted(["bug", "cat", "face", "food", safe_name(LABEL)])
    assert not any(c in safe_name(LABEL) for c in '/:"*?')
    assert not list(out.rglob(".fetch-*"))
    assert {f.suffix for f in files} == {".jpg", ".bmp"}  # named by their content

    assert "fetched 6 new photo(s)" in result.stdout
    assert "why not kept:" in result.stdout and "HTTP 404" in result.stdout
    manifest = json.loads((ds / "dataset.json").read_text())
    assert set(manifest["labels"]) == {"bug", "cat", "face", "food", safe_name(LABEL)}

    # a re-run asks only for what is missing: the transient failures, nothing already kept or rejected
    stale = out / "cat" / ".fetch-interrupted.part"
    stale.write_bytes(b"\xff\xd8\xff half")
    before = dict(server.hits)
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    asked = {p: n - before.get(p, 0) for p, n in server.hits.items() if n != before.get(p, 0)}
    assert asked == {"/slow.jpg": 1, "/later.jpg": 1}
    assert "fetched 0 new photo(s)" in again.stdout and "7 already here" in again.stdout
    assert _visible_files(out) == files
    assert not stale.exists()  # an interrupted run's temporary file is cleaned up
    assert _sources(out).keys() == sources.keys()


def test_per_host_limit_bounds_downloads_at_once(server: PhotoServer, images_dir: Path, tmp_path: Path) -> None:
    photos = sorted(p.name for p in images_dir.iterdir())
    wanted = [Wanted(f"{server.base}/wait/{i}/{name}", "x", f"l{i}") for i, name in enumerate(photos)]
    result = fetch(wanted, tmp_path / "raw", FetchOptions(workers=6, per_host=2))
    assert result.fetched == len(photos)
    assert server.most_in_flight == 2


def test_a_server_killed_mid_file_leaves_no_partial_file(images_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    srv = subprocess.Popen(
        [sys.executable, str(HERE / "fetch_server.py"), str(port), str(images_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert srv.stdout is not None and srv.stdout.readline().strip() == "READY"
        source = tmp_path / "bugs.txt"
        source.write_text(f"http://127.0.0.1:{port}/dies.bmp\n")
        out = tmp_path / "raw"
        command = [sys.executable, "-m", "edgesight.device.cli", "data", "fetch", str(source), str(out)]
        client = subprocess.Popen(
            [*command, "--label", "bug", "--retries", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert srv.stdout.readline().strip() == "HALF"  # half the photo is on its way
        time.sleep(0.3)
        srv.kill()
        srv.wait(10)
        stdout, stderr = client.communicate(timeout=60)
    finally:
        srv.kill()
    assert client.returncode == 1, stderr
    assert "nothing could be fetched" in stderr and "Traceback" not in stderr
    assert not _visible_files(out)  # only sources.csv: no half photo under any name
    assert not list(out.rglob(".fetch-*"))
    (row,) = _sources(out).values()
    assert row["status"] == "failed" and row["error"].startswith("connection"), row
    assert "connection" in stdout


def test_folder_of_lists_named_by_class(server: PhotoServer, tmp_path: Path, cli) -> None:
    urls = tmp_path / "urls"
    urls.mkdir()
    (urls / "cat.txt").write_text(f"# cats\n{server.base}/img/cat_720p.jpg\n\n{server.base}/img/cat.bmp\n")
    (urls / "face.txt").write_text(f"{server.base}/img/face.jpg\n")
    result = cli("data", "fetch", urls, tmp_path / "raw")
    assert result.returncode == 0, result.stderr
    assert sorted(p.parent.name for p in _visible_files(tmp_path / "raw")) == ["cat", "cat", "face"]


def test_bad_sources_are_one_line(server: PhotoServer, tmp_path: Path, cli) -> None:
    table = tmp_path / "t.csv"
    table.write_text(f"address,kind\n{server.base}/img/face.jpg,face\n")
    assert_one_line_error(cli("data", "fetch", table, tmp_path / "a"), "no URL column", "--url-col", code=2)
    assert_one_line_error(
        cli("data", "fetch", table, tmp_path / "a", "--url-col", "address", "--label-col", "species"),
        "no column 'species'",
        code=2,
    )
    assert cli("data", "fetch", table, tmp_path / "a", "--url-col", "address", "--label-col", "kind").returncode == 0
    listing = tmp_path / "l.txt"
    listing.write_text(f"{server.base}/missing.jpg\n")
    assert_one_line_error(cli("data", "fetch", listing, tmp_path / "b"), "--label", code=2)
    gone = cli("data", "fetch", listing, tmp_path / "b", "--label", "cat")
    assert_one_line_error(gone, "nothing could be fetched", code=1)
    assert "HTTP 404" in gone.stdout
    assert_one_line_error(cli("data", "fetch", tmp_path / "nope.csv", tmp_path / "c"), "no such file", code=2)
