"""Download photos listed by URL into a folder per class that ``data import`` takes as it is.

A SOURCE is a CSV/TSV with a URL column and a label column, a text file of URLs for one label,
or a folder of such files named by class (``cat.txt`` holds the cat URLs). Each URL is fetched
at most once (duplicate URLs are merged, identical content is kept once), politely: a bounded
pool of workers, a limit per host, retries with exponential backoff on 429/5xx and dropped
connections, ``Retry-After`` honoured up to a cap, connect and read timeouts, a redirect limit
and a size cap per file. What arrives is judged by :func:`images.load_photo` (the same judge as
``data import``: header pixel limit and a full decode), so an HTML error page named ``.jpg`` or a
truncated download is a reject, never a photo.

A download is written to a hidden temporary name (``.fetch-*.part``, which ``data import``
skips) and renamed only when it is complete and judged whole, so an interrupted run never
leaves a half file that looks whole. ``sources.csv`` in the output folder says, per URL, what
happened (status, bytes, sha256, final URL, error) so licences and attribution can be traced;
it is appended to as each URL finishes and rewritten (atomically) at the end, and it makes a
second run fetch only what is missing: kept files and permanent rejects are not asked again,
transient failures (timeouts, 5xx, dropped connections) are.

Library code: nothing is printed; progress goes to the ``progress`` callback.
"""

from __future__ import annotations

import csv
import email.utils
import hashlib
import logging
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..device.core.errors import UsageError
from .images import DEFAULT_MAX_PIXELS, ImageFault, load_photo

log = logging.getLogger(__name__)

SOURCES_CSV = "sources.csv"
SOURCE_COLUMNS = ["url", "label", "status", "bytes", "sha256", "final_url", "error", "file", "time"]
URL_COLUMNS = ("url", "image_url", "img_url", "image", "link", "href", "src", "uri")
LABEL_COLUMNS = ("label", "class", "category", "tag", "name")
LIST_SUFFIXES = (".txt", ".urls", ".list")
TABLE_SUFFIXES = (".csv", ".tsv")
PART_PREFIX = ".fetch-"
PART_SUFFIX = ".part"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# kept: a new or earlier download on disk; duplicate: same content as a kept file (not written
# twice); rejected: permanent (4xx, not an image, too large; asked again only with
# retry_rejected); failed: transient (timeout, 5xx, dropped connection; asked again next run)
STATUSES = ("ok", "duplicate", "rejected", "failed")
ILLEGAL_NAME = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
)
MAGIC = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG", ".png"), (b"GIF8", ".gif"), (b"BM", ".bmp"))


@dataclass(frozen=True)
class Wanted:
    """One URL to fetch, with its label and where in the SOURCE it was named."""

    url: str
    label: str
    where: str


@dataclass
class Outcome:
    """What happened to one URL: one row of ``sources.csv``."""

    url: str
    label: str
    status: str
    bytes: int = 0
    sha256: str = ""
    final_url: str = ""
    error: str = ""
    file: str = ""  # relative to the output folder
    time: str = ""
    new: bool = False  # fetched by this run (not read back from an earlier one)

    @property
    def kind(self) -> str:
        """The failure class (the error text before its first colon)."""
        return self.error.split(":", 1)[0] if self.error else ""

    def row(self) -> list[str]:
        return [
            self.url,
            self.label,
            self.status,
            str(self.bytes),
            self.sha256,
            self.final_url,
            self.error,
            self.file,
            self.time,
        ]


@dataclass
class FetchOptions:
    """How politely and how much to fetch (every limit has a default that suits a public site)."""

    workers: int = 8
    per_host: int = 2
    max_bytes: int = 20 * 1024 * 1024
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    retries: int = 3  # extra tries after the first on 429/5xx and dropped connections
    backoff: float = 1.0  # seconds before the first retry; doubled each time
    max_wait: float = 60.0  # the longest Retry-After honoured; longer is a failure
    max_redirects: int = 5
    max_pixels: int = DEFAULT_MAX_PIXELS
    retry_rejected: bool = False
    user_agent: str = "edgesight-data-fetch (+https://github.com/edgesight)"


@dataclass
class Tally:
    """Running counts for a progress bar."""

    done: int = 0
    total: int = 0
    bytes: int = 0
    failures: int = 0


@dataclass
class FetchResult:
    out_dir: Path
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def fetched(self) -> int:
        """New files written by this run."""
        return sum(o.new and o.status == "ok" for o in self.outcomes)

    @property
    def present(self) -> int:
        """URLs whose photo is in the output folder (new or from an earlier run, duplicates included)."""
        return sum(o.status in ("ok", "duplicate") for o in self.outcomes)


Progress = Callable[[Tally], None]


# --------------------------------------------------------------------------- names


def safe_name(text: str, limit: int = 100) -> str:
    """``text`` as a file or folder name on any common file system (Windows included)."""
    name = ILLEGAL_NAME.sub("_", text).strip().rstrip(". ")
    if name.split(".")[0].upper() in RESERVED_NAMES:
        name = f"_{name}"
    encoded = name.encode("utf-8", "surrogateescape")[:limit]
    name = encoded.decode("utf-8", "ignore")
    return name or "_"


def _file_stem(url: str) -> str:
    """A readable, stable stem: the URL's last path segment plus a short hash of the whole URL."""
    tail = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    stem = safe_name(os.path.splitext(tail)[0], 60).lstrip(".")
    return f"{stem or 'image'}_{hashlib.sha1(url.encode('utf-8', 'surrogateescape')).hexdigest()[:10]}"


def _extension(head: bytes) -> str:
    for magic, suffix in MAGIC:
        if head.startswith(magic):
            return suffix
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return ".tif"
    return ".img"


# --------------------------------------------------------------------------- the source


def _pick(columns: list[str], chosen: str | None, defaults: Iterable[str], what: str, path: Path) -> int | None:
    lowered = [c.strip().lower() for c in columns]
    if chosen is not None:
        if chosen.strip().lower() not in lowered:
            raise UsageError(f"{path}: no column {chosen!r} ({what}); the columns are {', '.join(columns)}")
        return lowered.index(chosen.strip().lower())
    return next((lowered.index(d) for d in defaults if d in lowered), None)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read_table(
    path: Path, url_col: str | None, label_col: str | None, label: str | None, fallback: str | None = None
) -> list[Wanted]:
    """The rows of a CSV/TSV; ``fallback`` is the label when it has no label column (a file named by class)."""
    text = _read_text(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    if path.suffix.lower() != ".tsv":
        try:
            delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter
        except csv.Error:
            pass
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    if not rows:
        raise UsageError(f"{path}: empty")
    header, body, first = rows[0], rows[1:], 2
    if url_col is None and header and header[0].strip().lower().startswith(("http://", "https://")):
        header, body, first = [], rows, 1  # no header row: URL first, label second
        url_at, label_at = 0, (1 if label is None and len(rows[0]) > 1 else None)
    else:
        picked = _pick(header, url_col, URL_COLUMNS, "--url-col", path)
        if picked is None:
            raise UsageError(f"{path}: no URL column (tried {', '.join(URL_COLUMNS)}); name it with --url-col")
        url_at = picked
        label_at = (
            None
            if label is not None and label_col is None
            else _pick(header, label_col, LABEL_COLUMNS, "--label-col", path)
        )
        if label_at is None and label is None:
            if fallback is None:
                raise UsageError(
                    f"{path}: no label column (tried {', '.join(LABEL_COLUMNS)}); use --label-col or --label"
                )
            label = fallback
    wanted: list[Wanted] = []
    for number, row in enumerate(body, start=first):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path.name}:{number}"
        url = row[url_at].strip() if url_at < len(row) else ""
        row_label = (row[label_at].strip() if label_at is not None and label_at < len(row) else "") or (label or "")
        wanted.append(Wanted(url, row_label, where))
    return wanted


def _read_list(path: Path, label: str | None) -> list[Wanted]:
    if not label:
        raise UsageError(
            f"{path}: a list of URLs names no class; give it with --label (or use a folder of <class>.txt)"
        )
    wanted = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            wanted.append(Wanted(line, label, f"{path.name}:{number}"))
    return wanted


def read_source(
    source: str | Path, url_col: str | None = None, label_col: str | None = None, label: str | None = None
) -> list[Wanted]:
    """Every (URL, label) the SOURCE names, in order (bad rows included; :func:`fetch` judges them)."""
    path = Path(source)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() in TABLE_SUFFIXES:
            return _read_table(path, url_col, label_col, label)
        return _read_list(path, label)
    wanted: list[Wanted] = []
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    for file in files:
        if file.suffix.lower() in TABLE_SUFFIXES:
            wanted.extend(_read_table(file, url_col, label_col, label, fallback=file.stem))
        elif file.suffix.lower() in LIST_SUFFIXES:
            wanted.extend(_read_list(file, label or file.stem))
    if not wanted:
        raise UsageError(f"{path}: no URL lists found (expected <class>.txt files with one URL a line, or a CSV)")
    return wanted


# --------------------------------------------------------------------------- the record


class SourceLog:
    """``sources.csv``: appended (and flushed) as each URL finishes; rewritten whole at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._handle: Any = None
        self._writer: Any = None

    def earlier(self) -> dict[str, Outcome]:
        """The last row per URL of an earlier run (empty when there was none)."""
        if not self.path.is_file():
            return {}
        rows: dict[str, Outcome] = {}
        with self.path.open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not {"url", "status", "file"} <= set(reader.fieldnames):
                raise UsageError(f"{self.path}: not an edgesight sources.csv (move it away or pick another folder)")
            for row in reader:
                try:
                    size = int(row.get("bytes") or 0)
                except ValueError:
                    size = 0
                rows[row["url"]] = Outcome(
                    row["url"], row.get("label") or "", row.get("status") or "", size, row.get("sha256") or "",
                    row.get("final_url") or "", row.get("error") or "", row.get("file") or "", row.get("time") or "",
                )  # fmt: skip
        return rows

    def append(self, outcome: Outcome) -> None:
        with self._lock:
            if self._handle is None:
                new = not self.path.exists() or self.path.stat().st_size == 0
                self._handle = self.path.open("a", newline="", encoding="utf-8", errors="surrogateescape")
                self._writer = csv.writer(self._handle)
                if new:
                    self._writer.writerow(SOURCE_COLUMNS)
            self._writer.writerow(outcome.row())
            self._handle.flush()

    def rewrite(self, outcomes: Iterable[Outcome]) -> None:
        """One row per URL, written to a temporary file and renamed over the log."""
        self.close()
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
            writer = csv.writer(handle)
            writer.writerow(SOURCE_COLUMNS)
            writer.writerows(o.row() for o in outcomes)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


# --------------------------------------------------------------------------- one download


class _Stop(Exception):
    """A URL's end: ``status`` (rejected | failed) and the error text ``kind: detail``."""

    def __init__(self, status: str, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (a number or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class _Fetcher:
    """The HTTP side: one requests session per worker thread, a semaphore per host."""

    def __init__(self, options: FetchOptions) -> None:
        import requests  # local: only `data fetch` needs the HTTP client

        self.requests = requests
        self.options = options
        self._local = threading.local()
        self._hosts: dict[str, threading.BoundedSemaphore] = {}
        self._hosts_lock = threading.Lock()

    def _session(self) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self.requests.Session()
            session.max_redirects = self.options.max_redirects
            session.headers["User-Agent"] = self.options.user_agent
            self._local.session = session
        return session

    def host_slot(self, url: str) -> threading.BoundedSemaphore:
        host = (urllib.parse.urlsplit(url).hostname or "").lower()
        with self._hosts_lock:
            return self._hosts.setdefault(host, threading.BoundedSemaphore(max(1, self.options.per_host)))

    def _wait(self, attempt: int, response: Any | None) -> float:
        """Seconds before the next try: Retry-After when the server gave one, else backoff."""
        asked = _retry_after(response.headers.get("Retry-After")) if response is not None else None
        if asked is not None:
            if asked > self.options.max_wait:
                code = response.status_code if response is not None else 0
                raise _Stop(
                    "failed",
                    f"HTTP {code}: the server asks to wait {asked:g} s, past the {self.options.max_wait:g} s cap",
                )
            return asked
        return self.options.backoff * (2**attempt) * (1 + random.random() / 4)

    def download(self, url: str, tmp: Path) -> tuple[str, int, str, str]:
        """(final URL, bytes, sha256, content type) of ``url`` written to ``tmp``, or :class:`_Stop`."""
        rex = self.requests.exceptions
        opts = self.options
        last = ""
        for attempt in range(opts.retries + 1):
            response = None
            try:
                with self._session().get(
                    url, stream=True, timeout=(opts.connect_timeout, opts.read_timeout), allow_redirects=True
                ) as response:
                    if response.status_code in RETRY_STATUSES:
                        last = f"HTTP {response.status_code}: {response.reason} after {attempt + 1} tries"
                        if attempt < opts.retries:
                            time.sleep(self._wait(attempt, response))
                            continue
                        raise _Stop("failed", last)
                    if response.status_code >= 400:
                        raise _Stop("rejected", f"HTTP {response.status_code}: {response.reason}")
                    return self._body(response, tmp)
            except rex.TooManyRedirects:
                raise _Stop("rejected", f"too many redirects: more than {opts.max_redirects}") from None
            except (rex.MissingSchema, rex.InvalidSchema, rex.InvalidURL) as exc:
                raise _Stop("rejected", f"bad URL: {exc}") from None
            except rex.ConnectTimeout:
                last = f"connect timeout: no connection within {opts.connect_timeout:g} s"
            except rex.ReadTimeout:
                # slow servers are not hammered: a read timeout is not retried now (the next run asks again)
                raise _Stop("failed", f"read timeout: no data for {opts.read_timeout:g} s") from None
            except (rex.ChunkedEncodingError, rex.ConnectionError) as exc:
                last = f"connection: {type(exc).__name__} ({_short(exc)})"
            tmp.unlink(missing_ok=True)
            if attempt < opts.retries:
                time.sleep(self._wait(attempt, None))
        raise _Stop("failed", last)

    def _body(self, response: Any, tmp: Path) -> tuple[str, int, str, str]:
        opts = self.options
        cap = f"{opts.max_bytes / 1e6:g} MB"
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > opts.max_bytes:
            raise _Stop("rejected", f"too large: {int(length) / 1e6:g} MB announced, the cap is {cap} (--max-mb)")
        digest = hashlib.sha256()
        size = 0
        deadline = time.monotonic() + opts.connect_timeout + opts.read_timeout * 4
        try:
            with tmp.open("wb") as handle:
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > opts.max_bytes:
                        raise _Stop("rejected", f"too large: more than the {cap} cap (--max-mb)")
                    if time.monotonic() > deadline:
                        raise _Stop("failed", "read timeout: the download is too slow")
                    digest.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return response.url, size, digest.hexdigest(), response.headers.get("Content-Type", "")


def _short(exc: BaseException) -> str:
    text = str(exc)
    match = re.search(r"\] (.+?)'?\)*$", text) or re.search(r"\((.+)\)", text)
    return (match.group(1) if match else text)[:120]


# --------------------------------------------------------------------------- the run


class _Run:
    """One ``fetch``: shared state of the workers (what is kept by content, the log, the tally)."""

    def __init__(self, out_dir: Path, options: FetchOptions, book: SourceLog, progress: Progress | None) -> None:
        self.out_dir = out_dir
        self.options = options
        self.book = book
        self.progress = progress
        self.fetcher = _Fetcher(options)
        self.by_content: dict[str, str] = {}  # sha256 -> file (relative) of the copy kept
        self.lock = threading.Lock()
        self.tally = Tally()

    def finish(self, outcome: Outcome) -> Outcome:
        outcome.time = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.book.append(outcome)
        with self.lock:
            self.tally.done += 1
            self.tally.bytes += outcome.bytes if outcome.new else 0
            self.tally.failures += outcome.status in ("rejected", "failed")
            if self.progress is not None:
                self.progress(self.tally)
        return outcome

    def one(self, item: Wanted) -> Outcome:
        outcome = Outcome(item.url, item.label, "failed", new=True)
        folder = safe_name(item.label)
        stem = _file_stem(item.url)
        tmp = self.out_dir / folder / f"{PART_PREFIX}{stem}{PART_SUFFIX}"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.fetcher.host_slot(item.url):
                final_url, size, sha, ctype = self.fetcher.download(item.url, tmp)
            outcome.bytes, outcome.sha256, outcome.final_url = size, sha, final_url
            self._judge(tmp, ctype)
            with self.lock:
                kept = self.by_content.get(sha)
                if kept is None:
                    with tmp.open("rb") as handle:
                        name = f"{stem}{_extension(handle.read(16))}"
                    outcome.file = f"{folder}/{name}"
                    os.replace(tmp, self.out_dir / folder / name)
                    self.by_content[sha] = outcome.file
                    outcome.status = "ok"
                else:
                    tmp.unlink(missing_ok=True)
                    outcome.status, outcome.file = "duplicate", kept
                    outcome.error = f"same content: identical to {kept}"
        except _Stop as stop:
            tmp.unlink(missing_ok=True)
            outcome.status, outcome.error = stop.status, stop.error
        except OSError as exc:  # our own disk: full, permissions
            tmp.unlink(missing_ok=True)
            outcome.status, outcome.error = "failed", f"disk: {exc.strerror or exc}"
        return self.finish(outcome)

    def _judge(self, tmp: Path, ctype: str) -> None:
        try:
            load_photo(tmp, self.options.max_pixels)
        except ImageFault as exc:
            reason = str(exc)
            if reason == "not an image file":
                sent = ctype.split(";")[0].strip() or "no Content-Type"
                raise _Stop("rejected", f"not an image: the server sent {sent}") from None
            kind = "truncated image" if reason.startswith("truncated") else "bad image"
            raise _Stop("rejected", f"{kind}: {reason}") from None


def _first_check(item: Wanted) -> str | None:
    """Why a SOURCE row cannot be fetched at all, or None."""
    parts = urllib.parse.urlsplit(item.url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return f"bad URL: {item.url or '(empty)'} is not an http(s) URL ({item.where})"
    if not item.label:
        return f"no label: {item.where} gives no class"
    return None


def _interleave(items: list[Wanted]) -> list[Wanted]:
    """Round-robin over hosts, so the per-host limit does not leave workers idle behind one host."""
    by_host: dict[str, list[Wanted]] = {}
    for item in items:
        by_host.setdefault((urllib.parse.urlsplit(item.url).hostname or "").lower(), []).append(item)
    queues = list(by_host.values())
    order: list[Wanted] = []
    while queues:
        order.extend(q.pop(0) for q in queues)
        queues = [q for q in queues if q]
    return order


def _remove_stale_parts(out_dir: Path) -> None:
    """Temporary files of an earlier, interrupted run (ours by name: hidden, ``.fetch-*.part``)."""
    for part in out_dir.glob(f"*/{PART_PREFIX}*{PART_SUFFIX}"):
        part.unlink(missing_ok=True)


def _still_there(out_dir: Path, earlier: Outcome, options: FetchOptions) -> bool:
    """Whether an earlier run's answer for a URL stands (its file is there, or it was a permanent reject)."""
    if earlier.status in ("ok", "duplicate"):
        return bool(earlier.file) and (out_dir / earlier.file).is_file()
    return earlier.status == "rejected" and not options.retry_rejected


def fetch(
    wanted: list[Wanted], out_dir: str | Path, options: FetchOptions | None = None, progress: Progress | None = None
) -> FetchResult:
    """Fetch every wanted URL not already in ``out_dir``; one :class:`Outcome` per distinct URL."""
    options = options or FetchOptions()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(out_dir)
    book = SourceLog(out_dir / SOURCES_CSV)
    earlier = book.earlier()
    result = FetchResult(out_dir)
    run = _Run(out_dir, options, book, progress)
    for kept in earlier.values():
        if kept.status == "ok" and kept.sha256 and (out_dir / kept.file).is_file():
            run.by_content.setdefault(kept.sha256, kept.file)
    seen: dict[str, Wanted] = {}
    todo: list[Wanted] = []
    for item in wanted:
        first = seen.get(item.url)
        if first is not None:
            if first.label != item.label:
                log.warning(
                    "%s: %s is also listed under %r (%s); kept under %r",
                    item.where,
                    item.url,
                    first.label,
                    first.where,
                    first.label,
                )
            continue
        seen[item.url] = item
        problem = _first_check(item)
        old = earlier.get(item.url)
        if problem is not None:
            result.outcomes.append(Outcome(item.url, item.label, "rejected", error=problem))
        elif old is not None and _still_there(out_dir, old, options):
            result.outcomes.append(old)
        else:
            todo.append(item)
    run.tally.total = len(todo)
    workers = max(1, min(options.workers, len(todo) or 1))
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
            result.outcomes.extend(pool.map(run.one, _interleave(todo)))
    finally:
        book.close()
    merged = {**earlier, **{o.url: o for o in result.outcomes}}
    book.rewrite(merged.values())
    return result


def summary(result: FetchResult) -> tuple[dict[str, int], dict[str, int]]:
    """(count per status, count per failure class) of a run, for the table a command prints."""
    statuses = {s: 0 for s in STATUSES}
    kinds: dict[str, int] = {}
    for outcome in result.outcomes:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        if outcome.status in ("rejected", "failed"):
            kinds[outcome.kind] = kinds.get(outcome.kind, 0) + 1
    return statuses, dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
