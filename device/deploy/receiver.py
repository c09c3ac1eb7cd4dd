"""The device side of a transfer: take an offer, collect its chunks, hand the bundle to the take-over.

Messages arrive on paho's network thread; this module only checks and writes them there (a
chunk is hashed and written at its offset in ``<dir>/.incoming/<transfer>.tar``), and the
take-over runs on a thread of its own. Refused here, before anything is written: a retained
offer (it would replay at every connect), an offer over ``max_bundle_mb``, a malformed one, a
second offer while one is being taken over, a chunk whose hash does not match its bytes.
Chunks may arrive more than once (QoS 1 redelivery, a sender resending): each is written once.

Resume: the same offer again (a sender that reconnected after a broker restart) keeps what
arrived and answers with the chunk numbers still ``missing``; so does every reconnect of the
device itself. An offer with a ``url`` is pulled on a thread of its own (:mod:`.pull`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .protocol import MAX_MISSING, Offer, open_chunk, progress
from .pull import PullError, fetch
from .store import Record, Store
from .takeover import NO_KEYS, Takeover

if TYPE_CHECKING:
    from ..mqtt.link import MqttLink

log = logging.getLogger(__name__)


class Transfer:
    """One offer's chunks as they arrive, written into a sparse file."""

    def __init__(self, offer: Offer, path: Path) -> None:
        self.offer, self.path = offer, path
        self.have: set[int] = set()
        with path.open("wb") as handle:
            handle.truncate(offer.size)

    def put(self, number: int, data: bytes) -> bool:
        """Write chunk ``number``; True when every chunk is in."""
        o = self.offer
        if not 0 <= number < o.chunks:
            raise ValueError(f"chunk {number} is outside 0..{o.chunks - 1}")
        expected = o.chunk_size if number < o.chunks - 1 else o.size - o.chunk_size * (o.chunks - 1)
        if len(data) != expected:
            raise ValueError(f"chunk {number} has {len(data)} bytes, expected {expected}")
        if number not in self.have:
            with self.path.open("r+b") as handle:
                handle.seek(number * o.chunk_size)
                handle.write(data)
            self.have.add(number)
        return len(self.have) == o.chunks

    def missing(self) -> list[int]:
        return [n for n in range(self.offer.chunks) if n not in self.have]

    def digest(self) -> str:
        return sha256_of(self.path)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Receiver:
    """Offers and chunks in, one take-over at a time."""

    def __init__(
        self,
        store: Store,
        takeover: Takeover,
        publish: Callable[[dict[str, Any]], None],
        max_bytes: int,
        *,
        pull_dir: str | Path | None = None,
        pull_timeout_s: float = 30.0,
    ) -> None:
        self.store, self.takeover, self.publish = store, takeover, publish
        self.max_bytes = max_bytes
        # file:// offers are read only under this folder (default <[deploy] dir>/drop)
        self.pull_dir = Path(pull_dir) if pull_dir else store.root / "drop"
        self.pull_timeout_s = pull_timeout_s
        self._lock = threading.Lock()
        self._transfer: Transfer | None = None
        self._busy: threading.Thread | None = None
        self._busy_transfer = ""
        self._finished: set[str] = set()
        self.last: dict[str, Any] | None = None
        self._boot_reported = False

    def _say(self, body: dict[str, Any]) -> None:
        self.last = body
        self.publish(body)

    def on_offer(self, payload: bytes, retained: bool) -> None:
        if retained:
            log.warning("deploy: ignoring a retained offer (offers must not be retained)")
            return
        try:
            offer = Offer.parse(payload, self.max_bytes)
        except ValueError as exc:
            log.warning("deploy: offer refused: %s", exc)
            self._say(progress(None, "refused", f"offer refused: {exc}"))
            return
        with self._lock:
            if offer.transfer in self._finished or (
                offer.transfer == self._busy_transfer and self._busy is not None and self._busy.is_alive()
            ):
                return  # a resend of a transfer already taken over: its progress is retained already
            if self._busy is not None and self._busy.is_alive():
                self._say(progress(offer, "refused", "another bundle is being taken over; try again when it is done"))
                return
            if not self.takeover.gate.trusted_keys:
                self._say(progress(offer, "refused", NO_KEYS))
                return
            record = self.store.read()
            if record and record.confirmed and record.active.sha256 == offer.sha256:
                self._say(progress(offer, "active", "already active: nothing to do"))
                return
            current = self._transfer
            if current is not None and current.offer == offer and not offer.url:
                # the same transfer offered again (a resumed send): keep what arrived, say what is missing
                self._say_missing(current)
                return
            if current is not None:
                current.path.unlink(missing_ok=True)
            path = self.store.incoming() / f"{offer.transfer}.tar"
            if offer.url:
                self._transfer = None
                self._busy_transfer = offer.transfer
                self._busy = threading.Thread(target=self._pull, args=(offer, path), name="deploy-pull", daemon=True)
                self._busy.start()
                return
            self._transfer = Transfer(offer, path)
        self._say(
            progress(
                offer, "receiving", f"{offer.chunks} chunks, {offer.size} bytes", received=0, missing_count=offer.chunks
            )
        )

    def _say_missing(self, current: Transfer) -> None:
        offer, missing = current.offer, current.missing()
        self._say(
            progress(
                offer,
                "receiving",
                f"{len(current.have)} of {offer.chunks} chunks already here",
                received=len(current.have),
                missing=missing[:MAX_MISSING],
                missing_count=len(missing),
            )
        )

    def on_connected(self) -> None:
        """After each (re)connect: say which chunks a transfer in progress still needs; report a killed switch."""
        self._report_boot()
        with self._lock:
            current = self._transfer
            if current is not None:
                self._say_missing(current)

    def _report_boot(self) -> None:
        """Once: a record left unconfirmed (killed during the watch) means the previous bundle was booted.

        The record is then rewritten confirmed on that previous bundle, and ``rolled_back`` is
        published naming the bundle that did not survive its watch.
        """
        if self._boot_reported:
            return
        self._boot_reported = True
        record = self.store.read()
        if record is None or record.confirmed:
            return
        failed, booted = record.active, record.boot()
        if booted is not None and booted.path:
            self.store.write(Record(booted, None, confirmed=True))
        self._say(
            progress(
                None,
                "rolled_back",
                f"the device restarted during the watch after the switch; booted the previous bundle "
                f"{(booted.name + ' ' + booted.version).strip() if booted and booted.name else 'from [model] path'}",
                bundle=failed.name,
                version=failed.version,
                sha256=failed.sha256,
            )
        )

    def _pull(self, offer: Offer, path: Path) -> None:
        self._say(progress(offer, "receiving", f"pulling {offer.size} bytes from {offer.url[:200]}", received=0))
        try:
            fetch(offer.url, path, offer.size, allowed_dir=self.pull_dir, timeout_s=self.pull_timeout_s)
        except PullError as exc:
            path.unlink(missing_ok=True)
            self._say(progress(offer, "refused", str(exc)))
            self._finished.add(offer.transfer)
            return
        if sha256_of(path) != offer.sha256:
            path.unlink(missing_ok=True)
            self._say(progress(offer, "refused", "the pulled bundle's sha256 differs from the offer"))
            self._finished.add(offer.transfer)
            return
        self._take_over(offer, path)

    def on_chunk(self, transfer: str, number_text: str, payload: bytes) -> None:
        with self._lock:
            current = self._transfer
            if current is None or current.offer.transfer != transfer:
                return  # an old transfer's redelivery, or chunks without an offer
            offer = current.offer
            try:
                number = int(number_text)
                complete = current.put(number, open_chunk(payload))
            except ValueError as exc:
                current.path.unlink(missing_ok=True)
                self._transfer = None
                self._say(progress(offer, "refused", f"chunk {number_text[:12]}: {exc}"))
                return
            if not complete:
                return
            self._transfer = None
            if current.digest() != offer.sha256:
                current.path.unlink(missing_ok=True)
                self._say(progress(offer, "refused", "the received bundle's sha256 differs from the offer"))
                return
            self._busy_transfer = offer.transfer
            self._busy = threading.Thread(
                target=self._take_over, args=(offer, current.path), name="deploy", daemon=True
            )
            self._busy.start()

    def _take_over(self, offer: Offer, path: Path) -> None:
        try:
            self.takeover.run(offer, path)
        finally:
            self._finished.add(offer.transfer)


def attach(link: MqttLink, topics: Any, receiver: Receiver, on_connect: Callable[[], None]) -> None:
    """Route the deploy topics to ``receiver``; after every connect republish the last progress.

    The link's ``add_subscription`` makes the subscriptions again at each connect.
    """
    offer_topic, chunk_prefix = topics.deploy_offer, topics.deploy_chunks.removesuffix("+/+")

    def offer(_client: Any, _userdata: Any, message: Any) -> None:
        if message.topic == offer_topic:
            receiver.on_offer(message.payload, bool(message.retain))

    def chunk(_client: Any, _userdata: Any, message: Any) -> None:
        transfer, _, number = message.topic.removeprefix(chunk_prefix).partition("/")
        receiver.on_chunk(transfer, number, message.payload)

    def connected_hook() -> None:
        on_connect()
        receiver.on_connected()

    link.add_subscription(topics.deploy_chunks, 1, chunk)
    link.add_subscription(offer_topic, 1, offer, connected_hook)
