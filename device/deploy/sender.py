"""The workstation side: pack a bundle, offer it, send its chunks, follow each device's progress.

One paho client watches ``<root>/+/availability`` and ``<root>/+/deploy`` (both retained), so
the sender knows before sending which devices are online and what they already run. A rollout
is canaries first, then the rest; a canary that ends in anything but ``active`` stops it there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
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
        self._lock = threading.Condition()
        self._ready = threading.Event()
        self.error = ""
        topics = ["availability", "deploy", *extra]
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"edgesight-deploy-{secrets.token_hex(4)}"
        )
        if broker.username:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set(ca_certs=broker.ca_file, certfile=broker.cert_file, keyfile=broker.key_file)

        def connected(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
            if rc.is_failure:
                self.error = f"broker refused the connection: {rc}"
                self._ready.set()
                return
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
                        or (body.get("sha256") == sha256 and body.get("state") == "active")
                    )
                ):
                    return body
                if body and body.get("state") == "refused" and not body.get("sha256"):
                    return body  # the offer itself was refused (malformed, too big)
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
        self, watcher: Watcher, pkg: Package, *, wait_s: float = 300.0, chunk_bytes: int = CHUNK_BYTES
    ) -> None:
        self.watcher, self.pkg, self.wait_s, self.chunk_bytes = watcher, pkg, wait_s, chunk_bytes
        self.bytes_sent = 0

    def _send(self, device: str) -> tuple[str, str]:
        """Offer and stream the chunks to ``device``; return the transfer id and an early outcome ('' = sent)."""
        topics = Topics(f"{self.watcher.root}/{device}")
        pkg, client = self.pkg, self.watcher.client
        chunks = -(-len(pkg.data) // self.chunk_bytes)
        offer = Offer(secrets.token_hex(8), pkg.name, pkg.version, pkg.sha256, len(pkg.data), self.chunk_bytes, chunks)
        client.publish(topics.deploy_offer, offer.to_json(), qos=1).wait_for_publish(10)
        started = self.watcher.wait_started(device, offer.transfer, min(self.wait_s, 30.0))
        if started is None:
            return offer.transfer, "no answer to the offer (is [deploy] enabled on the device?)"
        if started.get("state") != "receiving":
            return offer.transfer, ""
        infos = []
        for n in range(chunks):
            part = pkg.data[n * self.chunk_bytes : (n + 1) * self.chunk_bytes]
            infos.append(client.publish(topics.deploy_chunk(offer.transfer, n), chunk_payload(part), qos=1))
            self.bytes_sent += len(part)
        for info in infos:
            info.wait_for_publish(60)
        return offer.transfer, ""

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
        for device, transfer in transfers.items():
            body = w.wait_final(device, self.pkg.sha256, transfer, max(0.0, deadline - time.monotonic()))
            if body is None:
                last = w.deploy.get(device, {}).get("state", "nothing")
                results[device] = Outcome(
                    device, "timeout", f"no final state within --wait {self.wait_s:g} s (last: {last})"
                )
            else:
                detail = {k: body[k] for k in ("agreement", "latency_ms") if isinstance(body.get(k), (int, float))}
                state = "unchanged" if body.get("reason") == "already active: nothing to do" else str(body.get("state"))
                results[device] = Outcome(device, state, str(body.get("reason", "")), detail)
        return [results[d] for d in devices]
