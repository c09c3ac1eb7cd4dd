"""The daemon's HTTP server: status page, JSON API, Prometheus metrics, snapshot, MJPEG, upload.

Standard library only (``http.server.ThreadingHTTPServer``): a Pi Zero 2 has no room for a web
framework, and a handful of read-only endpoints plus one upload do not need one. Off by
default; binds 127.0.0.1; refuses to listen on any other address without a token, so a control
surface is never opened on a LAN by accident.

Who may read what. With a token, every endpoint but ``/healthz``, ``/login`` and the page's
static shell (which holds no data) needs one of

* ``Authorization: Bearer TOKEN`` -- scripts, curl, Prometheus (``authorization`` in the scrape job);
* the session cookie ``edgesight_session`` (HttpOnly, SameSite=Strict, a keyed hash of the token,
  not the token itself), which a browser gets from ``POST /login`` with a form field ``token``. The
  page shows that login form when the API says 401; ``http://HOST:PORT/#token=TOKEN`` logs in in one
  step: ``app.js`` posts the fragment (which a browser never sends to a server, so it never reaches
  a log or a proxy) to ``/login`` and removes it from the address bar. ``POST /logout`` clears it.

The token is never accepted in the query string (URLs end up in logs, history and Referer
headers): ``?token=`` is refused with a 400 that says what to do instead, and access-log lines
have any ``token=`` value and the token itself masked.

Other walls. The ``Host`` header must be an IP address, a localhost name, this machine's name,
the bind address or one of ``[http] allowed_hosts`` (a DNS-rebinding page sends its own domain
name: 403). Every reply carries nosniff, a strict Content-Security-Policy (scripts, styles and
connections from this origin only, no framing), ``X-Frame-Options: DENY``, ``Referrer-Policy:
no-referrer`` and ``Cache-Control: no-store``. A client must send its request headers within
``read_timeout_s`` (a whole-request deadline, so a slowloris trickle does not reset it); a
viewer that reads nothing for ``write_timeout_s`` is dropped; beyond ``max_connections`` a new
connection gets a 503 at once. Uploads are bounded (``max_upload_mb``) and decoded and
classified one at a time; any image fault is a 400 with a one-line JSON ``error``.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import mimetypes
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..core.errors import ConfigError, EdgesightError, ImageError
from ..core.preprocess import decode_image
from ..core.tomlfile import read_secret
from .board import StatusBoard

log = logging.getLogger(__name__)

BOUNDARY = "edgesightframe"
DRAIN_LIMIT = 64 << 20  # read and discard an oversize body up to this, so the client sees the 413
# The page's shell holds no data (it fetches everything with the token), /healthz is for probes,
# /login and /logout set and clear the session cookie.
PUBLIC_PATHS = frozenset({"/healthz", "/", "/index.html", "/app.js", "/style.css", "/login", "/logout"})
UPLOAD_TYPES = ("image/", "application/octet-stream", "multipart/form-data")
SESSION_COOKIE = "edgesight_session"
SESSION_MAX_AGE_S = 30 * 86400
LOGIN_BODY_LIMIT = 4096
STREAM_SNDBUF = 256 << 10  # a fixed send buffer: a viewer that stops reading fills it in seconds
BODY_MIN_RATE = 32 << 10  # bytes/s an upload must at least arrive at (on top of read_timeout_s)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
}
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_TOKEN_IN_TEXT = re.compile(r"(?i)(token=)[^&\s\"]*")


@dataclass(frozen=True)
class HttpSettings:
    """The ``[http]`` config section as the server uses it (the token already read from token_file).

    Build it with :meth:`from_section` from ``config.http``; the keyword constructor stays for
    tests and callers written before that.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    max_upload_mb: float = 8.0
    mjpeg_fps: float = 5.0
    max_streams: int = 4
    jpeg_quality: int = 80
    stale_after_s: float = 5.0
    allowed_hosts: tuple[str, ...] = ()
    max_connections: int = 32
    read_timeout_s: float = 10.0
    write_timeout_s: float = 10.0

    @classmethod
    def from_section(cls, section: Any) -> HttpSettings:
        """From the typed ``[http]`` section: every field of the same name, the token from token/token_file."""
        names = [f.name for f in fields(cls) if f.name != "token" and hasattr(section, f.name)]
        return cls(**{name: getattr(section, name) for name in names}, token=read_token(section))


def read_token(section: Any) -> str | None:
    """The HTTP token from ``token`` or the first line of ``token_file``."""
    token_file = getattr(section, "token_file", None)
    if token_file:
        token = read_secret(token_file, "[http] token_file")
        if not token:
            raise ConfigError(f"[http] token_file: {token_file} starts with an empty line")
        return token
    return getattr(section, "token", None) or None


def is_loopback(host: str) -> bool:
    """``localhost`` and 127.0.0.0/8 / ::1; a name or wildcard address counts as reachable from outside."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_settings(settings: HttpSettings) -> None:
    """Refuse an open control surface (a non-loopback bind needs a token) and a host that cannot be bound."""
    if not settings.host.strip():
        raise ConfigError('[http] host: expected an address or name to bind, got ""')
    if not is_loopback(settings.host) and not settings.token:
        raise ConfigError(
            f"[http] host {settings.host!r} is reachable from the network: set [http] token "
            '(or bind host = "127.0.0.1")'
        )
    if not 0 <= settings.port <= 65535:
        raise ConfigError(f"[http] port: expected 0..65535, got {settings.port}")
    for name in ("mjpeg_fps", "read_timeout_s", "write_timeout_s", "max_upload_mb"):
        value = getattr(settings, name)
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"[http] {name}: must be a finite number > 0, got {value}")
    try:
        socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"[http] host {settings.host!r}: cannot be resolved ({exc})") from None


def host_allowed(header: str | None, settings: HttpSettings) -> bool:
    """Whether a ``Host`` header names this server, not a foreign domain rebound to its address."""
    if header is None:
        return True  # every browser sends Host; a client without one is not a rebinding page
    host = header.strip().lower()
    if host.startswith("["):
        name = host[1 : host.find("]")] if "]" in host else host[1:]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.rstrip(".")
    if not name:
        return False
    try:
        ipaddress.ip_address(name)
        return True  # an address literal cannot be a rebound foreign name
    except ValueError:
        pass
    machine = socket.gethostname().lower()
    known = {*LOCAL_NAMES, settings.host.lower(), machine, machine.split(".")[0], machine.split(".")[0] + ".local"}
    known |= {h.strip().lower().rstrip(".") for h in settings.allowed_hosts}
    return name in known or name.endswith(".localhost")


def session_value(token: str) -> str:
    """The cookie a login sets: a keyed hash of the token, so the cookie jar never holds the token."""
    return hmac.new(token.encode(), b"edgesight-session-v1", hashlib.sha256).hexdigest()


def redact(text: str, token: str | None) -> str:
    """A log line with any ``token=`` value and the token itself masked."""
    text = _TOKEN_IN_TEXT.sub(r"\1***", text)
    return text.replace(token, "***") if token else text


class Refused(Exception):
    """A request the API answers with a 4xx/5xx: the status and the reason shown to the client."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


UploadRefused = Refused  # the name before GET queries could be refused too


def query_number(
    query: dict[str, list[str]], name: str, default: float, low: float, high: float, *, integer: bool = False
) -> float:
    """A number from the query string: finite, clamped to low..high; anything else is a 400."""
    if name not in query:
        return default
    text = query[name][0]
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise Refused(HTTPStatus.BAD_REQUEST, f"{name} must be {kind}, got {text[:40]!r}") from None
    if not math.isfinite(value):
        raise Refused(HTTPStatus.BAD_REQUEST, f"{name} must be a finite number, got {text[:40]!r}")
    return min(max(value, low), high)


def image_from_multipart(content_type: str, body: bytes) -> tuple[bytes, str]:
    """(file bytes, file name) of the first file part of a ``multipart/form-data`` body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise UploadRefused(HTTPStatus.BAD_REQUEST, "multipart body could not be parsed (boundary missing?)")
    for part in message.iter_parts():
        if part.get_filename() is not None or part.get_content_maintype() == "image":
            data = part.get_payload(decode=True)
            return (data if isinstance(data, bytes) else b""), part.get_filename() or "upload"
    raise UploadRefused(HTTPStatus.BAD_REQUEST, "multipart body has no file part (send the image as a file field)")


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a connection cap and a whole-request deadline for headers and bodies.

    A per-socket timeout alone is reset by every byte, so a client trickling one header byte a
    second would hold its thread for ever; the reaper thread shuts down any connection whose
    deadline (armed by the handler while it waits for headers or a body) has passed.
    """

    daemon_threads = True
    request_queue_size = 64  # the listen backlog: a burst of connects is accepted (then capped), not SYN-dropped

    def __init__(self, address: tuple[str, int], handler: type, settings: HttpSettings) -> None:
        self.max_connections = settings.max_connections
        self.active = 0
        self._count_lock = threading.Lock()
        self._deadlines: dict[socket.socket, float] = {}
        self._deadline_lock = threading.Lock()
        self._reaping = threading.Event()
        super().__init__(address, handler)
        self._reaper = threading.Thread(target=self._reap, name="http-reaper", daemon=True)
        self._reaper.start()

    def arm(self, conn: socket.socket, seconds: float) -> None:
        with self._deadline_lock:
            self._deadlines[conn] = time.monotonic() + seconds

    def disarm(self, conn: socket.socket) -> None:
        with self._deadline_lock:
            self._deadlines.pop(conn, None)

    def _reap(self) -> None:
        while not self._reaping.wait(0.2):
            now = time.monotonic()
            with self._deadline_lock:
                late = [conn for conn, deadline in self._deadlines.items() if deadline < now]
                for conn in late:
                    del self._deadlines[conn]
            for conn in late:
                log.debug("http: dropping a client that did not send its request in time")
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._count_lock:
            full = self.active >= self.max_connections
            if not full:
                self.active += 1
        if full:
            self._refuse_busy(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            with self._count_lock:
                self.active -= 1
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.disarm(request)
            with self._count_lock:
                self.active -= 1

    def _refuse_busy(self, request: socket.socket) -> None:
        """503 without a thread: the cap exists so that a flood cannot take one per connection."""
        body = json.dumps({"error": f"too many connections (max {self.max_connections})", "status": 503}) + "\n"
        head = "".join(f"{k}: {v}\r\n" for k, v in SECURITY_HEADERS.items())
        reply = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nRetry-After: 1\r\nConnection: close\r\n"
            f"{head}\r\n{body}"
        )
        try:
            request.settimeout(0.5)
            request.sendall(reply.encode())
            request.shutdown(socket.SHUT_WR)
            request.setblocking(False)
            request.recv(65536)  # what the client already sent: closing with it unread would reset the reply
        except OSError:
            pass
        self.shutdown_request(request)

    def server_close(self) -> None:
        self._reaping.set()
        super().server_close()


class StatusServer:
    """Serve a :class:`StatusBoard`; ``classifier_factory`` builds the model used by /api/classify.

    ``settings`` is an :class:`HttpSettings` or the typed ``[http]`` config section itself.
    The upload endpoint gets its own classifier (interpreters are not thread-safe and the
    pipeline's are busy), built on first use and rebuilt by :meth:`set_classifier_factory` on
    reload. Uploads are decoded and classified one at a time, under one lock: a burst can neither
    starve the pipeline of CPU nor hold several huge decoded images in memory at once.
    """

    def __init__(
        self,
        board: StatusBoard,
        settings: Any,
        classifier_factory: Callable[[], Any] | None = None,
        web_dir: Path | None = None,
    ) -> None:
        if not isinstance(settings, HttpSettings):
            settings = HttpSettings.from_section(settings)
        check_settings(settings)
        self.board = board
        self.settings: HttpSettings = settings
        self._factory = classifier_factory
        self._classifier: Any = None
        self._classify_lock = threading.Lock()
        self._streams = threading.BoundedSemaphore(settings.max_streams)
        self._stopping = threading.Event()
        self.web_dir = web_dir
        self.httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- life ------------------------------------------------------------------------------------
    def start(self) -> StatusServer:
        handler = type("Handler", (_Handler,), {"server_ref": self, "timeout": self.settings.read_timeout_s})
        try:
            self.httpd = _Server((self.settings.host, self.settings.port), handler, self.settings)
        except OSError as exc:
            raise EdgesightError(
                f"[http] cannot listen on {self.settings.host}:{self.settings.port} ({exc.strerror or exc})"
            ) from None
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
            raise Refused(HTTPStatus.SERVICE_UNAVAILABLE, "no model loaded for uploads")
        with self._classify_lock:  # decode inside too: two huge images must not be decoded at once
            try:
                image = decode_image(data, name)
            except ImageError as exc:
                raise Refused(HTTPStatus.BAD_REQUEST, str(exc)) from None
            except Exception as exc:  # noqa: BLE001 - any decoder fault is the client's bad image, never an empty reply
                raise Refused(HTTPStatus.BAD_REQUEST, f"{name}: not a readable image ({type(exc).__name__})") from None
            if self._classifier is None:
                self._classifier = self._factory()
            classifier = self._classifier
            result = classifier.classify(image, k=top_k)
            height, width = int(image.shape[0]), int(image.shape[1])
            del image
        return {
            "v": 1,
            "name": name,
            "width": width,
            "height": height,
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
    server: _Server
    server_version = "edgesight"
    protocol_version = "HTTP/1.1"
    _replied = False

    # -- plumbing ------------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), redact(format % args, self.server_ref.settings.token))

    def handle_one_request(self) -> None:
        # the request line and headers must all arrive within read_timeout_s, however slowly they trickle
        self.server.arm(self.connection, self.server_ref.settings.read_timeout_s)
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away or stalled mid-reply
        finally:
            self.server.disarm(self.connection)

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.server.disarm(self.connection)
        return ok

    def end_headers(self) -> None:
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self._replied = True
        super().end_headers()

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

    def _session(self) -> str:
        try:
            cookie = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return ""
        morsel = cookie.get(SESSION_COOKIE)
        return morsel.value if morsel is not None else ""

    def _authorised(self) -> bool:
        token = self.server_ref.settings.token
        if not token:
            return True
        header = self.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            return hmac.compare_digest(header[7:].strip().encode(), token.encode())
        session = self._session()
        return bool(session) and hmac.compare_digest(session.encode(), session_value(token).encode())

    def _route(self) -> tuple[str, dict[str, list[str]]] | None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        settings = self.server_ref.settings
        if not host_allowed(self.headers.get("Host"), settings):
            self.close_connection = True
            self._error(
                HTTPStatus.FORBIDDEN,
                "Host header names another site (a DNS-rebinding guard): add the name to [http] allowed_hosts "
                "if it is really this device",
            )
            return None
        if "token" in query:
            self.close_connection = True
            self._error(
                HTTPStatus.BAD_REQUEST,
                "the token is not accepted in the URL (URLs end up in logs and history): send "
                "'Authorization: Bearer TOKEN', or open the page as /#token=TOKEN to log in",
            )
            return None
        if parts.path not in PUBLIC_PATHS and not self._authorised():
            self.close_connection = True
            self._error(
                HTTPStatus.UNAUTHORIZED,
                "missing or wrong token: send 'Authorization: Bearer TOKEN' or log in on the page",
                {"WWW-Authenticate": 'Bearer realm="edgesight"'},
            )
            return None
        return parts.path, query

    def _guarded(self, handler: Callable[[str, dict[str, list[str]]], None]) -> None:
        """Route, then run ``handler``: a refusal is its JSON error, a bug a 500, never an empty reply."""
        try:
            routed = self._route()
            if routed is not None:
                handler(*routed)
        except Refused as exc:
            if not self._replied:
                self._error(exc.status, exc.reason)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            log.exception("http: %s %s failed", self.command, redact(urlsplit(self.path).path, None))
            self.close_connection = True
            if not self._replied:
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see the daemon's log)")

    # -- GET ---------------------------------------------------------------------------------------------
    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        self._replied = False
        self._guarded(self._get)

    def _get(self, path: str, query: dict[str, list[str]]) -> None:
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
        elif path in ("/login", "/logout"):
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} takes a POST", {"Allow": "POST"})
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
        settings = server.settings
        fps = query_number(query, "fps", settings.mjpeg_fps, 0.1, settings.mjpeg_fps)
        limit = int(query_number(query, "frames", 0, 0, 1_000_000, integer=True))
        if not server._streams.acquire(blocking=False):
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"too many preview streams (max {settings.max_streams})")
            return
        try:
            # a viewer that stops reading fills a small fixed buffer, then the write times out: slot freed
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, STREAM_SNDBUF)
            self.connection.settimeout(settings.write_timeout_s)
            self.close_connection = True
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            sent, last_number = 0, None
            while not server._stopping.is_set() and (not limit or sent < limit):
                started = time.monotonic()
                snap = server.board.snapshot_jpeg(settings.jpeg_quality)
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
        except (ConnectionError, TimeoutError, OSError):
            log.debug("http: MJPEG viewer gone or not reading; slot freed")
        finally:
            server._streams.release()

    # -- POST ---------------------------------------------------------------------------------------
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
        self._replied = False
        self._guarded(self._post)

    def _post(self, path: str, query: dict[str, list[str]]) -> None:
        if path == "/login":
            self._login()
        elif path == "/logout":
            self._set_session("", 0)
        elif path == "/api/classify":
            try:
                self._json(HTTPStatus.OK, self._classify(query))
            except EdgesightError as exc:  # e.g. the model for uploads cannot be loaded
                self._error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
        else:
            self.close_connection = True
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: POST {path}")

    def _login(self) -> None:
        """``token=...`` (a form field) -> the session cookie and a redirect to the page; wrong: 401."""
        body = self._body(LOGIN_BODY_LIMIT)
        given = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0].strip()
        token = self.server_ref.settings.token
        if token and not (given and hmac.compare_digest(given.encode(), token.encode())):
            time.sleep(0.25)  # a little friction for guessing
            raise Refused(HTTPStatus.UNAUTHORIZED, "wrong token")
        self._set_session(session_value(token) if token else "", SESSION_MAX_AGE_S)

    def _set_session(self, value: str, max_age: int) -> None:
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header(
            "Set-Cookie", f"{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"
        )
        self.send_header("Location", "./")
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

    def _content_length(self, limit: int) -> int:
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            raise Refused(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required")
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise Refused(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length_header[:40]!r}") from None
        if length > limit:
            self.close_connection = True
            if length <= DRAIN_LIMIT:
                self._drain(length)
            raise Refused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"upload is {length} bytes; the limit is {limit} bytes ([http] max_upload_mb)",
            )
        return length

    def _body(self, limit: int) -> bytes:
        """The request body, at most ``limit`` bytes, arriving within the read deadline."""
        length = self._content_length(limit)
        self.server.arm(self.connection, self.server_ref.settings.read_timeout_s + length / BODY_MIN_RATE)
        try:
            body = self.rfile.read(length)
        finally:
            self.server.disarm(self.connection)
        if len(body) < length:
            self.close_connection = True
            raise Refused(HTTPStatus.BAD_REQUEST, f"body ended after {len(body)} of {length} bytes")
        return body

    def _classify(self, query: dict[str, list[str]]) -> dict[str, Any]:
        settings = self.server_ref.settings
        content_type = self.headers.get("Content-Type", "")
        body = self._body(int(settings.max_upload_mb * (1 << 20)))
        media = content_type.split(";")[0].strip().lower()
        if not media.startswith(UPLOAD_TYPES):
            raise Refused(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type {media or '(none)'!r} is not an image; send image/jpeg, image/png, "
                "application/octet-stream or multipart/form-data",
            )
        name = "upload"
        if media == "multipart/form-data":
            body, name = image_from_multipart(content_type, body)
        if not body:
            raise Refused(HTTPStatus.BAD_REQUEST, "empty upload")
        top_k: int | None = None
        if "top_k" in query:
            top_k = int(query_number(query, "top_k", 0, -1_000_000, 1000, integer=True))
            if top_k < 1:
                raise Refused(HTTPStatus.BAD_REQUEST, "top_k must be at least 1")
        return self.server_ref.classify_upload(body, name, top_k)

    def _drain(self, length: int) -> None:
        self.server.arm(self.connection, self.server_ref.settings.read_timeout_s + length / BODY_MIN_RATE)
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
        self.server.disarm(self.connection)
