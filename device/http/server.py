"""The daemon's HTTP server: status page, JSON API, Prometheus metrics, snapshot, MJPEG, upload.

Standard library only (``http.server.ThreadingHTTPServer``): a Pi Zero 2 has no room for a web
framework, and a handful of read-only endpoints plus one upload do not need one. Off by
default; binds 127.0.0.1; refuses to listen on any other address without a token, so a control
surface is never opened on a LAN by accident. With a token every endpoint but ``/healthz`` and the
page's static shell (which holds no data) needs ``Authorization: Bearer TOKEN`` or ``?token=TOKEN``.
"""

from __future__ import annotations

import email.parser
import email.policy
import hmac
import ipaddress
import json
import logging
import mimetypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..core.errors import ConfigError, EdgesightError, ImageError
from ..core.preprocess import decode_image
from .board import StatusBoard

log = logging.getLogger(__name__)

BOUNDARY = "edgesightframe"
DRAIN_LIMIT = 64 << 20  # read and discard an oversize body up to this, so the client sees the 413
# The page's shell holds no data (it fetches everything with the token), and /healthz is for probes.
PUBLIC_PATHS = frozenset({"/healthz", "/", "/index.html", "/app.js", "/style.css"})
UPLOAD_TYPES = ("image/", "application/octet-stream", "multipart/form-data")


@dataclass(frozen=True)
class HttpSettings:
    """The ``[http]`` config section."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    max_upload_mb: float = 8.0
    mjpeg_fps: float = 5.0
    max_streams: int = 4
    jpeg_quality: int = 80
    stale_after_s: float = 5.0


def is_loopback(host: str) -> bool:
    """``localhost`` and 127.0.0.0/8 / ::1; a name or wildcard address counts as reachable from outside."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_settings(settings: HttpSettings) -> None:
    """Refuse an open control surface: a non-loopback bind needs a token."""
    if not is_loopback(settings.host) and not settings.token:
        raise ConfigError(
            f"[http] host {settings.host!r} is reachable from the network: set [http] token "
            '(or bind host = "127.0.0.1")'
        )
    if not 0 <= settings.port <= 65535:
        raise ConfigError(f"[http] port: expected 0..65535, got {settings.port}")
    if settings.mjpeg_fps <= 0:
        raise ConfigError(f"[http] mjpeg_fps: must be > 0, got {settings.mjpeg_fps}")


class UploadRefused(Exception):
    """An upload the API answers with a 4xx: the status and the reason shown to the client."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def image_from_multipart(content_type: str, body: bytes) -> tuple[bytes, str]:
    """(file bytes, file name) of the first file part of a ``multipart/form-data`` body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise UploadRefused(HTTPStatus.BAD_REQUEST, "multipart body could not be parsed (boundary missing?)")
    for part in message.iter_parts():
        if part.get_filename() is not None or part.get_content_maintype() == "image":
            data = part.get_payload(decode=True) or b""
            return data, part.get_filename() or "upload"
    raise UploadRefused(HTTPStatus.BAD_REQUEST, "multipart body has no file part (send the image as a file field)")


class StatusServer:
    """Serve a :class:`StatusBoard`; ``classifier_factory`` builds the model used by /api/classify.

    The upload endpoint gets its own classifier (interpreters are not thread-safe and the
    pipeline's are busy), built on first use and rebuilt by :meth:`set_classifier_factory` on
    reload. Uploads are classified one at a time so a burst cannot starve the pipeline of CPU.
    """

    def __init__(
        self,
        board: StatusBoard,
        settings: HttpSettings,
        classifier_factory: Callable[[], Any] | None = None,
        web_dir: Path | None = None,
    ) -> None:
        check_settings(settings)
        self.board = board
        self.settings = settings
        self._factory = classifier_factory
        self._classifier: Any = None
        self._classify_lock = threading.Lock()
        self._streams = threading.BoundedSemaphore(settings.max_streams)
        self._stopping = threading.Event()
        self.web_dir = web_dir
        self.httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life ------------------------------------------------------------------------------------
    def start(self) -> StatusServer:
        handler = type("Handler", (_Handler,), {"server_ref": self})
        try:
            self.httpd = ThreadingHTTPServer((self.settings.host, self.settings.port), handler)
        except OSError as exc:
            raise EdgesightError(
                f"[http] cannot listen on {self.settings.host}:{self.settings.port} ({exc.strerror or exc})"
            ) from None
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True
        )
        self._thread.start()
        log.info(
            "status page on http://%s:%d/%s",
            self.settings.host,
            self.port,
            " (token required)" if self.settings.token else "",
        )
        return self

    @property
    def port(self) -> int:
        return self.httpd.server_address[1] if self.httpd else self.settings.port

    @property
    def url(self) -> str:
        host = self.settings.host if self.settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self._stopping.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def set_classifier_factory(self, factory: Callable[[], Any]) -> None:
        """Use a new model for uploads (after cmd/reload); built on the next upload."""
        with self._classify_lock:
            self._factory, self._classifier = factory, None

    def classify_upload(self, data: bytes, name: str, top_k: int | None) -> dict[str, Any]:
        if self._factory is None:
            raise UploadRefused(HTTPStatus.SERVICE_UNAVAILABLE, "no model loaded for uploads")
        try:
            image = decode_image(data, name)
        except ImageError as exc:
            raise UploadRefused(HTTPStatus.BAD_REQUEST, str(exc)) from None
        with self._classify_lock:
            if self._classifier is None:
                self._classifier = self._factory()
            classifier = self._classifier
            result = classifier.classify(image, k=top_k)
        return {
            "v": 1,
            "name": name,
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "top": [p.as_dict() for p in result.top],
            "latency_ms": {k: round(v, 3) for k, v in result.latency_ms.items()},
            "model": {"name": classifier.spec.name, "version": classifier.spec.version},
        }

    def static_file(self, name: str) -> bytes | None:
        """A file of the page (``index.html``, ``app.js``, ``style.css``) from the package's web/."""
        if "/" in name or name.startswith("."):
            return None
        if self.web_dir is not None:
            path = self.web_dir / name
            return path.read_bytes() if path.is_file() else None
        resource = resources.files("edgesight.device").joinpath("web").joinpath(name)
        return resource.read_bytes() if resource.is_file() else None


class _Handler(BaseHTTPRequestHandler):
    server_ref: StatusServer
    server_version = "edgesight"
    protocol_version = "HTTP/1.1"

    # -- plumbing ------------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, (json.dumps(payload) + "\n").encode(), "application/json", headers)

    def _error(self, status: HTTPStatus, reason: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": reason, "status": int(status)}, headers)

    def _authorised(self, query: dict[str, list[str]]) -> bool:
        token = self.server_ref.settings.token
        if not token:
            return True
        given = ""
        header = self.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        elif query.get("token"):
            given = query["token"][0]
        return bool(given) and hmac.compare_digest(given.encode(), token.encode())

    def _route(self) -> tuple[str, dict[str, list[str]]] | None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path not in PUBLIC_PATHS and not self._authorised(query):
            self.close_connection = True
            self._error(
                HTTPStatus.UNAUTHORIZED,
                "missing or wrong token: send 'Authorization: Bearer TOKEN' or ?token=TOKEN",
                {"WWW-Authenticate": 'Bearer realm="edgesight"'},
            )
            return None
        return parts.path, query

    # -- GET ---------------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        routed = self._route()
        if routed is None:
            return
        path, query = routed
        server, board = self.server_ref, self.server_ref.board
        if path == "/healthz":
            healthy = board.healthy()
            self._send(
                HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE,
                b"ok\n" if healthy else b"no frames classified recently\n",
                "text/plain; charset=utf-8",
            )
        elif path == "/metrics":
            self._send(HTTPStatus.OK, generate_latest(board.registry), CONTENT_TYPE_LATEST)
        elif path == "/api/stats":
            self._json(HTTPStatus.OK, board.stats())
        elif path == "/api/latest":
            latest = board.latest_json()
            if latest is None:
                self._error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame classified yet")
            else:
                self._json(HTTPStatus.OK, latest)
        elif path == "/snapshot.jpg":
            snap = board.snapshot_jpeg(server.settings.jpeg_quality)
            if snap is None:
                self._error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame classified yet")
            else:
                self._send(HTTPStatus.OK, snap[1], "image/jpeg", {"X-Frame-Number": str(snap[0])})
        elif path == "/stream.mjpg":
            self._stream(query)
        elif path in ("/", "/index.html") or path.count("/") == 1:
            name = "index.html" if path in ("/", "/index.html") else path[1:]
            body = server.static_file(name)
            if body is None:
                self._error(HTTPStatus.NOT_FOUND, f"no such page: {path}")
            else:
                kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
                self._send(HTTPStatus.OK, body, kind + ("; charset=utf-8" if kind.startswith("text/") else ""))
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {path}")

    def _stream(self, query: dict[str, list[str]]) -> None:
        """MJPEG at most ``mjpeg_fps``: encoded here, from the newest frame, never in the pipeline."""
        server = self.server_ref
        if not server._streams.acquire(blocking=False):
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"too many preview streams (max {server.settings.max_streams})")
            return
        try:
            try:
                fps = min(float(query.get("fps", [server.settings.mjpeg_fps])[0]), server.settings.mjpeg_fps)
                limit = int(query.get("frames", [0])[0])
            except ValueError:
                self._error(HTTPStatus.BAD_REQUEST, "fps and frames must be numbers")
                return
            fps = max(fps, 0.1)
            self.close_connection = True
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            sent, last_number = 0, None
            while not server._stopping.is_set() and (not limit or sent < limit):
                started = time.monotonic()
                snap = server.board.snapshot_jpeg(server.settings.jpeg_quality)
                if snap is not None and snap[0] != last_number:
                    last_number = snap[0]
                    self.wfile.write(
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(snap[1])}\r\n"
                        f"X-Frame-Number: {snap[0]}\r\n\r\n".encode()
                        + snap[1]
                        + b"\r\n"
                    )
                    self.wfile.flush()
                    sent += 1
                server._stopping.wait(max(0.0, 1.0 / fps - (time.monotonic() - started)))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the viewer went away
        finally:
            server._streams.release()

    # -- POST /api/classify ---------------------------------------------------------------------------
    def handle_expect_100(self) -> bool:
        """Refuse an oversize upload before the client sends it (curl asks first for large bodies)."""
        limit = int(self.server_ref.settings.max_upload_mb * (1 << 20))
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        if self.command == "POST" and length > limit:
            self.close_connection = True
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"upload is {length} bytes; the limit is {limit} bytes ([http] max_upload_mb)",
            )
            return False
        return super().handle_expect_100()

    def do_POST(self) -> None:  # noqa: N802
        routed = self._route()
        if routed is None:
            return
        path, query = routed
        if path != "/api/classify":
            self.close_connection = True
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: POST {path}")
            return
        try:
            self._json(HTTPStatus.OK, self._classify(query))
        except UploadRefused as exc:
            self._error(exc.status, exc.reason)
        except EdgesightError as exc:  # e.g. the model for uploads cannot be loaded
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))

    def _classify(self, query: dict[str, list[str]]) -> dict[str, Any]:
        settings = self.server_ref.settings
        limit = int(settings.max_upload_mb * (1 << 20))
        content_type = self.headers.get("Content-Type", "")
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            raise UploadRefused(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise UploadRefused(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length_header!r}") from None
        if length > limit:
            self.close_connection = True
            if length <= DRAIN_LIMIT:
                self._drain(length)
            raise UploadRefused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"upload is {length} bytes; the limit is {limit} bytes ([http] max_upload_mb)",
            )
        body = self.rfile.read(length)
        media = content_type.split(";")[0].strip().lower()
        if not media.startswith(UPLOAD_TYPES):
            raise UploadRefused(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type {media or '(none)'!r} is not an image; send image/jpeg, image/png, "
                "application/octet-stream or multipart/form-data",
            )
        name = "upload"
        if media == "multipart/form-data":
            body, name = image_from_multipart(content_type, body)
        if not body:
            raise UploadRefused(HTTPStatus.BAD_REQUEST, "empty upload")
        try:
            top_k = int(query["top_k"][0]) if "top_k" in query else None
        except ValueError:
            raise UploadRefused(HTTPStatus.BAD_REQUEST, "top_k must be an integer") from None
        if top_k is not None and top_k < 1:
            raise UploadRefused(HTTPStatus.BAD_REQUEST, "top_k must be at least 1")
        return self.server_ref.classify_upload(body, name, top_k)

    def _drain(self, length: int) -> None:
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
