"""The workstation side: pack a bundle, offer it, send its chunks, follow each device's progress.

One paho client watches ``<root>/+/availability`` and ``<root>/+/deploy`` (both retained), so
the sender knows before sending which devices are online and what they already run. A rollout
is canaries first, then the rest; a canary that ends in anything but ``active`` stops it there.

Resume: the broker may restart in the middle of a transfer (chunks lost with the device's clean
session). While a device still says ``receiving``, the sender offers the same transfer again
when its own connection came back or nothing moved for ``stall_s``; the device answers with the
chunk numbers it still needs (``missing``) and only those are sent again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from ..core.bundle import read_manifest
from ..core.errors import EdgesightError
from ..mqtt.topics import ONLINE, Topics
from .protocol import CHUNK_BYTES, FINAL, Offer, chunk_payload, pack

log = logging.getLogger(__name__)


@dataclass
class Broker:
    """Where and how to connect."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass
class Outcome:
    """One device's end of a rollout."""

    device: str
    state: str  # active | refused | rolled_back | offline | timeout | skipped | unchanged
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.state in ("active", "unchanged")

    def line(self) -> str:
        extra = []
        if "agreement" in self.detail:
            extra.append(f"agreement {self.detail['agreement']:.2f}")
        if "latency_ms" in self.detail:
            extra.append(f"latency {self.detail['latency_ms']:.1f} ms")
        if "score_mean" in self.detail and "old_score_mean" in self.detail:
            extra.append(f"mean score {self.detail['score_mean']:.2f} vs {self.detail['old_score_mean']:.2f}")
        tail = f" ({', '.join(extra)})" if extra else ""
        return f"{self.device}: {self.state}{f': {self.reason}' if self.reason else ''}{tail}"


class Watcher:
    """A connected client that records each device's retained availability and deploy progress."""

    def __init__(self, broker: Broker, root: str, extra: tuple[str, ...] = (), client_id: str = "") -> None:
        self.root = root.rstrip("/")
        self.availability: dict[str, str] = {}
        self.deploy: dict[str, dict[str, Any]] = {}
        self.other: dict[tuple[str, str], dict[str, Any]] = {}
        self.seen: dict[str, float] = {}
        self.seq: dict[str, int] = {}  # deploy messages received per device: "newer than" without clocks
        self.connects = 0
        self._lock = threading.Condition()
        self._ready = threading.Event()
        self.error = ""
        topics = ["availability", "deploy", *extra]
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"edgesight-deploy-{secrets.token_hex(4)}"
        )
        self.client.reconnect_delay_set(1, 5)  # a restarted broker is found again within seconds
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set(ca_certs=broker.ca_file, certfile=broker.cert_file, keyfile=broker.key_file)

        def connected(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
            if rc.is_failure:
                self.error = f"broker refused the connection: {rc}"
                self._ready.set()
                return
            self.connects += 1
            c.subscribe([(f"{self.root}/+/{t}", 1) for t in topics])

        self.client.on_connect = connected
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._message
        try:
            self.client.connect(broker.host, broker.port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise EdgesightError(f"cannot connect to the broker {broker.host}:{broker.port} ({exc})") from None
        self.client.loop_start()
        if not self._ready.wait(10) or self.error:
            self.close()
            raise EdgesightError(self.error or f"broker {broker.host}:{broker.port} did not answer within 10 s")

    def _message(self, client: Any, userdata: Any, message: Any) -> None:
        rest = message.topic.removeprefix(self.root + "/")
        device, _, kind = rest.partition("/")
        if not device or "/" in kind:
            return
        with self._lock:
            self.seen[device] = time.time()
            if kind == "availability":
                self.availability[device] = message.payload.decode("utf-8", "replace")
            else:
                try:
                    body = json.loads(message.payload)
                except ValueError:
                    return
                if not isinstance(body, dict):
                    return
                if kind == "deploy":
                    self.deploy[device] = body
                    self.seq[device] = self.seq.get(device, 0) + 1
                else:
                    self.other[(device, kind)] = body
            self._lock.notify_all()

    def settle(self, seconds: float) -> None:
        """Let the retained messages arrive."""
        time.sleep(seconds)

    def wait_final(self, device: str, sha256: str, transfer: str, timeout: float) -> dict[str, Any] | None:
        """The device's final progress for this bundle (or None after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                body = self.deploy.get(device)
                if (
                    body
                    and body.get("state") in FINAL
                    and (
                        body.get("transfer") == transfer
                        # active: it already ran; rolled_back: it restarted during the watch (no transfer id then)
                        or (body.get("sha256") == sha256 and body.get("state") in ("active", "rolled_back"))
                    )
                ):
                    return body
                if body and body.get("state") == "refused" and not body.get("sha256"):
                    return body  # the offer itself was refused (malformed, too big)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(min(left, 0.5))

    def wait_newer(self, device: str, seq: int, transfer: str, timeout: float) -> dict[str, Any] | None:
        """The first deploy message of ``device`` after message number ``seq`` that names ``transfer``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                body = self.deploy.get(device)
                if body and self.seq.get(device, 0) > seq and body.get("transfer") == transfer:
                    return body
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(min(left, 0.5))

    def wait_started(self, device: str, transfer: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                body = self.deploy.get(device)
                if body and (
                    body.get("transfer") == transfer or (body.get("state") == "refused" and not body.get("sha256"))
                ):
                    return body
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(min(left, 0.5))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


_DETAIL = ("agreement", "latency_ms", "old_latency_ms", "score_mean", "old_score_mean", "shadow_frames")


def _wait(info: Any, timeout: float) -> None:
    """Wait for a QoS 1 publish; a lost connection is not an error here (the resume resends)."""
    try:
        info.wait_for_publish(timeout)
    except (RuntimeError, ValueError):
        pass


@dataclass
class _Flight:
    """One device's transfer in progress, for the resume."""

    offer: Offer
    topics: Topics
    connects: int  # the watcher's connect count when the chunks were last sent
    moved: float = field(default_factory=time.monotonic)  # last time chunks went out or progress moved


@dataclass(frozen=True)
class Package:
    """A packed bundle ready to send."""

    name: str
    version: str
    data: bytes
    sha256: str


def package(bundle_dir: str | Path) -> Package:
    manifest = read_manifest(Path(bundle_dir))
    data = pack(bundle_dir)
    return Package(
        str(manifest.get("name", "")), str(manifest.get("version", "")), data, hashlib.sha256(data).hexdigest()
    )


class Sender:
    """Send one package to devices, canaries first."""

    def __init__(
        self,
        watcher: Watcher,
        pkg: Package,
        *,
        wait_s: float = 300.0,
        chunk_bytes: int = CHUNK_BYTES,
        url: str = "",
        stall_s: float = 5.0,
        on_chunk: Callable[[str, int], None] | None = None,
    ) -> None:
        self.watcher, self.pkg, self.wait_s, self.chunk_bytes = watcher, pkg, wait_s, chunk_bytes
        self.url, self.stall_s = url, stall_s
        self.on_chunk = on_chunk  # called after each chunk is handed to paho (tests cut the broker here)
        self.bytes_sent = 0
        self.chunks_sent = 0
        self.resends = 0
        self._flights: dict[str, _Flight] = {}

    def _send(self, device: str) -> tuple[str, str]:
        """Offer and stream the chunks to ``device``; return the transfer id and an early outcome ('' = sent)."""
        topics = Topics(f"{self.watcher.root}/{device}")
        pkg, client = self.pkg, self.watcher.client
        chunks = -(-len(pkg.data) // self.chunk_bytes)
        offer = Offer(
            secrets.token_hex(8), pkg.name, pkg.version, pkg.sha256, len(pkg.data), self.chunk_bytes, chunks, self.url
        )
        _wait(client.publish(topics.deploy_offer, offer.to_json(), qos=1), 10)
        started = self.watcher.wait_started(device, offer.transfer, min(self.wait_s, 30.0))
        if started is None:
            return offer.transfer, "no answer to the offer (is [deploy] enabled on the device?)"
        flight = _Flight(offer, topics, self.watcher.connects)
        self._flights[device] = flight
        if started.get("state") != "receiving" or offer.url:
            return offer.transfer, ""
        self._stream(device, flight, range(chunks))
        return offer.transfer, ""

    def _stream(self, device: str, flight: _Flight, numbers: Any) -> None:
        """Publish chunks ``numbers`` at QoS 1; a lost connection leaves them to the resume."""
        client, offer, data, size = self.watcher.client, flight.offer, self.pkg.data, self.chunk_bytes
        infos = []
        for n in numbers:
            part = data[n * size : (n + 1) * size]
            infos.append(client.publish(flight.topics.deploy_chunk(offer.transfer, n), chunk_payload(part), qos=1))
            self.bytes_sent += len(part)
            self.chunks_sent += 1
            if self.on_chunk is not None:
                self.on_chunk(device, n)
        for info in infos:
            _wait(info, 60)
        flight.moved = time.monotonic()

    def _resume(self, device: str) -> None:
        """Offer the same transfer again if it stalled or our connection came back; resend what is missing."""
        w, flight = self.watcher, self._flights.get(device)
        if flight is None or flight.offer.url:
            return
        body = w.deploy.get(device, {})
        if body.get("transfer") != flight.offer.transfer or body.get("state") != "receiving":
            if body.get("transfer") == flight.offer.transfer:
                flight.moved = time.monotonic()
            return
        reconnected = w.connects != flight.connects
        if not reconnected and time.monotonic() - flight.moved < self.stall_s:
            return
        flight.connects, flight.moved = w.connects, time.monotonic()
        seq = w.seq.get(device, 0)
        _wait(w.client.publish(flight.topics.deploy_offer, flight.offer.to_json(), qos=1), 10)
        answer = w.wait_newer(device, seq, flight.offer.transfer, min(10.0, self.stall_s * 2))
        if answer is None or answer.get("state") != "receiving":
            return
        missing = [n for n in answer.get("missing", []) if isinstance(n, int) and 0 <= n < flight.offer.chunks]
        if missing:
            log.info("deploy %s: resending %d missing chunk(s)", device, len(missing))
            self.resends += len(missing)
            self._stream(device, flight, missing)

    def deploy(self, devices: list[str], canary: int = 0) -> list[Outcome]:
        """Canaries one by one, then the rest together; a failed canary stops the rollout."""
        outcomes: list[Outcome] = []
        canaries, rest = devices[:canary], devices[canary:]
        for device in canaries:
            result = self._deploy_to([device])[0]
            outcomes.append(result)
            if not result.ok and result.state != "offline":
                outcomes += [
                    Outcome(d, "skipped", f"canary {device} did not take it")
                    for d in devices
                    if d not in {o.device for o in outcomes}
                ]
                return outcomes
        if canaries and not any(o.ok for o in outcomes):
            reason = "no canary took the bundle (all offline)"
            return outcomes + [Outcome(d, "skipped", reason) for d in rest]
        if rest:
            outcomes += self._deploy_to(rest)
        return outcomes

    def _deploy_to(self, devices: list[str]) -> list[Outcome]:
        w = self.watcher
        results: dict[str, Outcome] = {}
        transfers: dict[str, str] = {}
        for device in devices:
            if w.availability.get(device) != ONLINE:
                results[device] = Outcome(
                    device, "offline", f"availability is {w.availability.get(device, 'unknown')!r}"
                )
                continue
            current = w.deploy.get(device, {})
            if current.get("state") == "active" and current.get("sha256") == self.pkg.sha256:
                results[device] = Outcome(device, "unchanged", f"{self.pkg.name} {self.pkg.version} already active")
                continue
            transfer, early = self._send(device)
            if early:
                results[device] = Outcome(device, "timeout", early)
            else:
                transfers[device] = transfer
        deadline = time.monotonic() + self.wait_s
        finals: dict[str, dict[str, Any]] = {}
        while len(finals) < len(transfers) and time.monotonic() < deadline:
            for device, transfer in transfers.items():
                if device in finals:
                    continue
                body = w.wait_final(device, self.pkg.sha256, transfer, min(0.5, max(0.0, deadline - time.monotonic())))
                if body is not None:
                    finals[device] = body
                else:
                    self._resume(device)
        for device in transfers:
            body = finals.get(device)
            if body is None:
                last = w.deploy.get(device, {}).get("state", "nothing")
                results[device] = Outcome(
                    device, "timeout", f"no final state within --wait {self.wait_s:g} s (last: {last})"
                )
            else:
                detail = {k: v for k, v in body.items() if k in _DETAIL and isinstance(v, (int, float))}
                state = "unchanged" if body.get("reason") == "already active: nothing to do" else str(body.get("state"))
                results[device] = Outcome(device, state, str(body.get("reason", "")), detail)
        return [results[d] for d in devices]
