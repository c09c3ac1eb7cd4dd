"""The topic names under one prefix; the rest of the daemon never spells a topic itself.

docs/mqtt.md is the table of what each topic carries, with which QoS and retain flag.
"""

from __future__ import annotations

from dataclasses import dataclass

ONLINE, OFFLINE = "online", "offline"


@dataclass(frozen=True)
class Topics:
    """The topic names under one prefix (docs/mqtt.md's topic table)."""

    prefix: str

    @property
    def availability(self) -> str:
        """Retained ``online``/``offline`` (the Last Will says ``offline``)."""
        return f"{self.prefix}/availability"

    @property
    def result(self) -> str:
        return f"{self.prefix}/result"

    @property
    def state(self) -> str:
        """Retained smoothed state; changes made while offline follow on reconnect with ``"late": true``."""
        return f"{self.prefix}/state"

    @property
    def stats(self) -> str:
        return f"{self.prefix}/stats"

    @property
    def alert(self) -> str:
        """Retained drift alert: ``{"active": true|false, "score", "bound", ...}``."""
        return f"{self.prefix}/alert"

    @property
    def reply(self) -> str:
        """Where command outcomes go (``{"command", "ok", "error"|...}``)."""
        return f"{self.prefix}/reply"

    def cmd(self, verb: str) -> str:
        return f"{self.prefix}/cmd/{verb}"

    @property
    def deploy(self) -> str:
        """Retained deploy progress: ``{"bundle", "version", "state", "reason", ...}`` (docs/fleet.md)."""
        return f"{self.prefix}/deploy"

    @property
    def deploy_offer(self) -> str:
        """Where a sender announces a bundle (QoS 1, never retained); subscribed only with [deploy] enabled."""
        return f"{self.prefix}/deploy/offer"

    def deploy_chunk(self, transfer: str, number: int) -> str:
        """One chunk of a transfer, QoS 1: 64 hex digits of its sha256, then the bytes."""
        return f"{self.prefix}/deploy/in/{transfer}/{number}"

    @property
    def deploy_chunks(self) -> str:
        """The subscription that receives every chunk."""
        return f"{self.prefix}/deploy/in/+/+"
