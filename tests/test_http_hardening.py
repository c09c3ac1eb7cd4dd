"""The HTTP server's walls, against the real server on 127.0.0.1 (issue 12): raw sockets for
slowloris and for a viewer that never reads, a foreign Host header, the token refused in the URL
and never logged, the security headers, query numbers that must be finite, uploads that are
bounded, decoded one at a time and refused as one-line JSON.

The server is started in-process on a real board fed with a real classifier's result on frames of
noise (incompressible, so an MJPEG viewer that stops reading fills its buffers quickly).
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
import zlib
from contextlib import contextmanager

import numpy as np
import pytest
from http_helpers import mjpeg_frames, request

from edgesight.device.core.errors import ConfigError
from edgesight.device.http import HttpSettings, StatusBoard, StatusServer, check_settings
from edgesight.device.http import server as server_module

TOKEN = "hard-token-5f2a9c"


@pytest.fixture(scope="module")
def classifier(v2_model, imagenet_labels):
    from edgesight.device.classify import Classifier

    return Classifier.open(v2_model, imagenet_labels, num_threads=1)


@contextmanager
def serving(classifier, images_dir, *, feed: bool = True, **settings):
    """A started StatusServer (token on) whose board gets a new noisy frame every 20 ms."""
    from edgesight.device.core.preprocess import read_image
    from edgesight.device.results import FrameResult
    from edgesight.device.sources import Frame

    board = StatusBoard(stale_after_s=5)
    board.set_model(classifier.spec, classifier.runtime)
    result = classifier.classify(read_image(images_dir / "cat.bmp"))
    server = StatusServer(
        board, HttpSettings(enabled=True, port=0, token=TOKEN, **settings), lambda: classifier
    ).start()
    stop = threading.Event()
    rng = np.random.default_rng(0)

    def feeder() -> None:
        number = 0
        while not stop.is_set():
            image = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
            board(FrameResult(Frame(number, image, time.time(), 1.0), result, dict(result.latency_ms, total=5.0), {}))
            number += 1
            stop.wait(0.02)

    thread = threading.Thread(target=feeder, daemon=True)
    if feed:
        thread.start()
    try:
        yield server
    finally:
        stop.set()
        server.stop()


@pytest.fixture(scope="module")
def hard(classifier, images_dir):
    with serving(classifier, images_dir, read_timeout_s=1.0, max_connections=12, allowed_hosts=("cam.example",)) as s:
        yield s


def raw(server: StatusServer, data: bytes = b"", rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", server.port))
    if data:
        sock.sendall(data)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def test_security_headers_on_page_api_and_errors(hard):
    for path, token, status in [
        ("/", None, 200),
        ("/api/stats", TOKEN, 200),
        ("/api/stats", None, 401),
        ("/x", TOKEN, 404),
    ]:
        reply = request(hard.url + path, token=token)
        assert reply.status == status, path
        h = reply.headers
        assert h["x-content-type-options"] == "nosniff"
        assert h["x-frame-options"] == "DENY"
        assert h["referrer-policy"] == "no-referrer"
        assert h["cache-control"] == "no-store"
        csp = h["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp


def test_token_in_the_query_is_refused_even_when_right(hard):
    reply = request(hard.url + f"/api/stats?token={TOKEN}")
    assert reply.status == 400
    assert "not accepted in the URL" in reply.json()["error"] and "Bearer" in reply.json()["error"]
    assert request(hard.url + f"/api/stats?token={TOKEN}", token=TOKEN).status == 400


def test_login_sets_an_httponly_strict_cookie_that_grants_access(hard):
    import http.client

    wrong = request(
        hard.url + "/login", data=b"token=nope", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert wrong.status == 401 and "set-cookie" not in wrong.headers
    conn = http.client.HTTPConnection("127.0.0.1", hard.port, timeout=10)
    conn.request("POST", "/login", body=f"token={TOKEN}", headers={"Content-Type": "application/x-www-form-urlencoded"})
    reply = conn.getresponse()
    reply.read()
    assert reply.status == 303
    cookie = reply.getheader("Set-Cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert TOKEN not in cookie  # the cookie jar holds a keyed hash, not the token
    pair = cookie.split(";")[0]
    assert request(hard.url + "/api/stats", headers={"Cookie": pair}).status == 200
    assert request(hard.url + "/api/stats", headers={"Cookie": pair[:-2] + "00"}).status == 401


def test_the_token_never_reaches_the_log(hard, caplog):
    with caplog.at_level(logging.DEBUG, logger="edgesight.device.http.server"):
        request(hard.url + f"/api/stats?token={TOKEN}")
        request(hard.url + f"/api/latest?x=1&token={TOKEN}&y=2")
        request(hard.url + "/api/stats", token=TOKEN)
        request(hard.url + "/login", data=f"token={TOKEN}".encode(), headers={"Content-Type": "x/y"})
        time.sleep(0.2)
    lines = [r.getMessage() for r in caplog.records]
    assert any("/api/latest" in line for line in lines), lines  # the access log did run at DEBUG
    assert not [line for line in lines if TOKEN in line]
    assert any("token=***" in line for line in lines)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "attacker.test."])
def test_a_foreign_host_header_is_refused(hard, host):
    reply = request(hard.url + "/api/stats", token=TOKEN, headers={"Host": host})
    assert reply.status == 403 and "allowed_hosts" in reply.json()["error"]
    assert request(hard.url + "/healthz", headers={"Host": host}).status == 403


@pytest.mark.parametrize("host", ["127.0.0.1:1", "localhost:8080", "[::1]:8080", "192.168.1.20:8080", "cam.example"])
def test_addresses_localhost_and_allowed_hosts_pass(hard, host):
    assert request(hard.url + "/api/stats", token=TOKEN, headers={"Host": host}).status == 200


@pytest.mark.parametrize("query", ["fps=nan", "fps=inf", "fps=-inf", "fps=abc", "frames=nan", "frames=1e999"])
def test_mjpeg_query_numbers_must_be_finite(hard, query):
    reply = request(hard.url + f"/stream.mjpg?{query}", token=TOKEN)
    assert reply.status == 400, reply
    assert reply.json()["error"].startswith(query.split("=")[0])


def test_mjpeg_fps_above_the_cap_is_clamped(hard):
    started = time.monotonic()
    reply = request(hard.url + "/stream.mjpg?fps=1e9&frames=6", token=TOKEN, timeout=30)
    elapsed = time.monotonic() - started
    assert reply.status == 200 and len(mjpeg_frames(reply.body, reply.headers["content-type"])) == 6
    assert elapsed >= 5 / 5.0 * 0.9, elapsed  # the 5 fps cap, not a billion


def test_slowloris_sockets_are_dropped_and_the_server_keeps_serving(hard):
    threads_before = threading.active_count()
    socks = [raw(hard, b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n") for _ in range(20)]
    stop = threading.Event()

    def trickle() -> None:  # one more header byte per socket every 0.2 s: a per-recv timeout never fires
        while not stop.is_set():
            for sock in socks:
                try:
                    sock.send(b"X")
                except OSError:
                    pass
            stop.wait(0.2)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        time.sleep(0.3)
        assert threading.active_count() - threads_before <= 12 + 1  # the connection cap, not one thread each
        deadline = time.monotonic() + 5
        dropped = [closed_by_server(sock, max(0.1, deadline - time.monotonic())) for sock in socks]
        assert all(dropped), f"{dropped.count(False)} slowloris sockets still open after the read deadline"
    finally:
        stop.set()
        for sock in socks:
            sock.close()
    assert request(hard.url + "/api/stats", token=TOKEN).status == 200


def test_connections_beyond_the_cap_get_503_at_once(classifier, images_dir):
    with serving(classifier, images_dir, feed=False, read_timeout_s=3.0, max_connections=4) as server:
        socks = [raw(server) for _ in range(4)]
        try:
            deadline = time.monotonic() + 2
            while server.httpd.active < 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            reply = request(server.url + "/api/stats", token=TOKEN, timeout=5)
            assert reply.status == 503 and "too many connections (max 4)" in reply.json()["error"]
            assert reply.headers["x-content-type-options"] == "nosniff" and reply.headers["retry-after"] == "1"
        finally:
            for sock in socks:
                sock.close()
        deadline = time.monotonic() + 3
        while server.httpd.active and time.monotonic() < deadline:
            time.sleep(0.02)
        assert request(server.url + "/api/stats", token=TOKEN).status == 200  # slots are freed


def test_viewers_that_never_read_do_not_hold_the_mjpeg_slots(classifier, images_dir):
    with serving(classifier, images_dir, max_streams=2, write_timeout_s=1.0, mjpeg_fps=30.0) as server:
        ask = f"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
        hogs = [raw(server, ask, rcvbuf=4096) for _ in range(2)]
        try:
            time.sleep(0.5)
            assert request(server.url + "/stream.mjpg?frames=1", token=TOKEN).status == 503  # both slots taken
            deadline = time.monotonic() + 20
            while True:
                reply = request(server.url + "/stream.mjpg?frames=2", token=TOKEN, timeout=20)
                if reply.status == 200:
                    break
                assert time.monotonic() < deadline, "viewers that never read still hold every MJPEG slot"
                time.sleep(0.5)
            assert len(mjpeg_frames(reply.body, reply.headers["content-type"])) == 2
        finally:
            for sock in hogs:
                sock.close()


def png_header(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height (a decompression bomb's first bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def test_a_png_claiming_40000_squared_is_a_one_line_400_never_an_empty_reply(hard):
    reply = request(
        hard.url + "/api/classify", token=TOKEN, data=png_header(40000, 40000), headers={"Content-Type": "image/png"}
    )
    assert reply.status == 400, reply
    error = reply.json()["error"]
    assert error and "\n" not in error


def test_uploads_are_decoded_one_at_a_time(hard, images_dir, monkeypatch):
    real = server_module.decode_image
    active, peak = [0], [0]
    lock = threading.Lock()

    def spy(data, where="upload"):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.2)
            return real(data, where)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(server_module, "decode_image", spy)
    body = (images_dir / "cat.bmp").read_bytes()
    replies: list = []
    threads = [
        threading.Thread(
            target=lambda: replies.append(
                request(hard.url + "/api/classify", token=TOKEN, data=body, headers={"Content-Type": "image/bmp"})
            )
        )
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r.status for r in replies] == [200] * 4
    assert peak[0] == 1, f"{peak[0]} uploads were decoded at once"


def test_an_upload_body_that_stalls_is_dropped(hard):
    sock = raw(
        hard,
        f"POST /api/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: image/png\r\nContent-Length: 5000\r\n\r\nabc".encode(),
    )
    try:
        assert closed_by_server(sock, 4), "a stalled upload body held its connection"
    finally:
        sock.close()


def test_bad_http_settings_are_config_errors():
    with pytest.raises(ConfigError, match=r"\[http\] host 'no-such-host\.invalid': cannot be resolved"):
        check_settings(HttpSettings(host="no-such-host.invalid", token="t"))
    with pytest.raises(ConfigError, match=r"\[http\] host"):
        check_settings(HttpSettings(host=""))


def test_settings_come_from_the_typed_section(tmp_path):
    from edgesight.device.config import validate

    (tmp_path / "token").write_text("from-file\n")
    section = validate(
        {"http": {"port": 0, "allowed_hosts": ["cam.lan"], "token_file": str(tmp_path / "token"), "mjpeg_fps": 2}},
        "t",
    ).http
    settings = HttpSettings.from_section(section)
    assert settings.port == 0 and settings.allowed_hosts == ("cam.lan",) and settings.token == "from-file"
    assert settings.mjpeg_fps == 2.0 and settings.max_connections == 32
    server = StatusServer(StatusBoard(), section)  # the section itself is accepted too
    assert server.settings == settings
