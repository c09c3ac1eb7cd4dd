"""A real HTTP server on 127.0.0.1 for the `data fetch` tests: real photos plus every bad case.

Run in a thread by the test fixture, or as a script (``python fetch_server.py PORT IMAGES``) when
a test must kill the server process mid-file.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BIG = 1536 * 1024  # past a 1 MiB cap (--max-mb 1)
HTML = b"<!doctype html><html><body><h1>Sorry, this photo was removed</h1></body></html>\n"


class PhotoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, images: Path) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.images = images
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up (a size cap, a timeout) is part of the test, not news

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: PhotoServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send(self, code: int, body: bytes, ctype: str = "image/jpeg", headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _photo(self, name: str) -> bytes:
        return (self.server.images / name).read_bytes()

    def do_GET(self) -> None:  # noqa: C901 - one branch per case reads best here
        path = self.path.split("?")[0]
        with self.server.lock:
            self.server.hits[path] += 1
            hit = self.server.hits[path]
        parts = path.strip("/").split("/")
        if parts[0] in ("img", "copy") and len(parts) == 2:
            self._send(200, self._photo(parts[1]))
        elif parts[0] == "wait" and len(parts) == 3:  # /wait/<n>/<photo>: 0.3 s, counting downloads at once
            with self.server.lock:
                self.server.in_flight += 1
                self.server.most_in_flight = max(self.server.most_in_flight, self.server.in_flight)
            time.sleep(0.3)
            with self.server.lock:
                self.server.in_flight -= 1
            self._send(200, self._photo(parts[2]))
        elif parts[0] == "flaky":  # 500 then the photo
            if hit == 1:
                self._send(500, b"oops", "text/plain")
            else:
                self._send(200, self._photo(parts[1]))
        elif parts[0] == "busy":  # 429 with Retry-After: 1, then the photo
            if hit == 1:
                self._send(429, b"slow down", "text/plain", {"Retry-After": "1"})
            else:
                self._send(200, self._photo(parts[1]))
        elif path == "/later.jpg":
            self._send(429, b"come back tomorrow", "text/plain", {"Retry-After": "3600"})
        elif path == "/slow.jpg":
            time.sleep(4)
            self._send(200, self._photo("face.jpg"))
        elif parts[0] == "hop" and len(parts) == 2:  # /hop/3 -> /hop/2 -> /hop/1 -> /img/face.jpg
            left = int(parts[1])
            target = "/img/face.jpg" if left <= 1 else f"/hop/{left - 1}"
            self._send(302, b"", "text/plain", {"Location": target})
        elif parts[0] == "loop":
            self._send(302, b"", "text/plain", {"Location": f"/loop/{int(parts[1]) + 1}"})
        elif path == "/page.jpg":
            self._send(200, HTML, "text/html; charset=utf-8")
        elif path == "/truncated.jpg":
            data = self._photo("hot_dog.jpg")
            self._send(200, data[: len(data) // 2])
        elif path == "/huge.jpg":
            self._send(200, b"\xff\xd8\xff" + bytes(BIG))
        elif path == "/huge-unannounced.jpg":  # no Content-Length: the cap is found while reading
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"\xff\xd8\xff" + bytes(BIG))
            self.close_connection = True
        elif path == "/dies.bmp":  # half the file, then the process is killed by the test
            data = self._photo("dragonfly.bmp")
            self.send_response(200)
            self.send_header("Content-Type", "image/bmp")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            print("HALF", flush=True)
            time.sleep(60)
        else:
            self._send(404, b"not found", "text/plain")


def serve(port: int, images: Path) -> PhotoServer:
    server = PhotoServer(port, images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    server = PhotoServer(int(sys.argv[1]), Path(sys.argv[2]))
    print("READY", flush=True)
    server.serve_forever()
