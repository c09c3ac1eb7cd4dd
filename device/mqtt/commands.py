"""The command table: every verb the device accepts on ``<prefix>/cmd/<verb>``, described as data.

The config's allowed ``[mqtt] commands`` choices, the verbs the link subscribes to and the
daemon's dispatch are all derived from :data:`COMMANDS`, so a verb cannot be subscribed without
a handler or accepted by the config without being documented. Anyone who can publish on the
broker can send a command (see docs/remote-control.md), so the payload is parsed strictly here:
a plain-text argument, or a JSON object whose keys the table names, each a string, and nothing
bigger than :data:`MAX_PAYLOAD_BYTES`.

This module imports nothing from the daemon or the config: ``config`` imports it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..core.errors import EdgesightError

# A command payload is a name or a small JSON object; anything longer is not a command.
MAX_PAYLOAD_BYTES = 4096


class CommandRefused(EdgesightError):
    """A command that is not carried out: ``reply`` goes back on MQTT, ``detail`` only to the local log.

    The split exists because anyone who can publish reads the reply: a reply must never say
    whether a path exists, what a file holds or why exactly a bundle was refused.
    """

    def __init__(self, reply: str, detail: str = "") -> None:
        super().__init__(reply)
        self.reply = reply
        self.detail = detail or reply


Args = dict[str, str]


@dataclass(frozen=True)
class Command:
    """One verb: what it does (the doc shown in docs and config), and the payload it takes.

    ``keys`` are the keys a JSON-object payload may carry (each a string). ``text_key`` names the
    key a plain-text payload fills; with ``text_key`` None a plain-text payload carries nothing and
    is ignored (Home Assistant's MQTT button sends ``PRESS``).
    """

    verb: str
    doc: str
    keys: tuple[str, ...] = ()
    text_key: str | None = None

    def parse(self, text: str) -> Args:
        """The payload as arguments, or :class:`CommandRefused` naming what is wrong with it."""
        text = text.strip()
        if not text:
            return {}
        if not text.startswith("{"):
            return {self.text_key: text} if self.text_key else {}
        try:
            request = json.loads(text)
        except json.JSONDecodeError:
            raise CommandRefused(f"refused: cmd/{self.verb} payload is not valid JSON") from None
        if not isinstance(request, dict):
            raise CommandRefused(f"refused: cmd/{self.verb} payload must be a JSON object")
        unknown = sorted(set(request) - set(self.keys))
        if unknown:
            allowed = ", ".join(self.keys) or "none"
            raise CommandRefused(
                f"refused: cmd/{self.verb} does not take {', '.join(map(repr, unknown))[:200]} (keys: {allowed})"
            )
        for key, value in request.items():
            if not isinstance(value, str):
                raise CommandRefused(f"refused: cmd/{self.verb} key {key!r} must be a string")
        return dict(request)


COMMANDS: tuple[Command, ...] = (
    Command(
        "reload",
        "load a bundle from [model] models_dir, named by its folder name (plain text or "
        '{"bundle": NAME}); an empty payload reloads the configured [model] path. The bundle is '
        "verified and tried in a child process with memory and time limits before it replaces the running model",
        keys=("bundle",),
        text_key="bundle",
    ),
    Command("snapshot", "save the current frame (JPEG) and its result (JSON) under [snapshot] dir"),
)
VERBS: tuple[str, ...] = tuple(c.verb for c in COMMANDS)


def command(verb: str) -> Command:
    """The table entry of ``verb`` (KeyError for a verb not in the table)."""
    for entry in COMMANDS:
        if entry.verb == verb:
            return entry
    raise KeyError(verb)


Handler = Callable[[Args], None]


class Dispatcher:
    """Verb -> handler, checked against the table when built, so a table row cannot lack a handler."""

    def __init__(self, handlers: Mapping[str, Handler]) -> None:
        missing, extra = set(VERBS) - set(handlers), set(handlers) - set(VERBS)
        if missing or extra:
            raise ValueError(
                f"command handlers do not match the table: missing {sorted(missing)}, extra {sorted(extra)}"
            )
        self._handlers = dict(handlers)

    def dispatch(self, verb: str, text: str) -> None:
        """Parse ``text`` by the table and run the handler; :class:`CommandRefused` for a bad payload."""
        self._handlers[verb](command(verb).parse(text))


class RateLimit:
    """A token bucket: ``burst`` commands at once, then one every ``refill_s`` seconds.

    Excess commands are dropped (and counted) rather than queued: a flood must neither fill memory
    nor keep the device busy long after it stopped.
    """

    def __init__(self, burst: int, refill_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.refill_s = max(1, burst), max(0.0, refill_s)
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()
        self._lock = threading.Lock()
        self.dropped = 0

    def allow(self) -> bool:
        with self._lock:
            now = self._clock()
            if self.refill_s > 0:
                self._tokens = min(float(self.burst), self._tokens + (now - self._last) / self.refill_s)
            else:
                self._tokens = float(self.burst)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            self.dropped += 1
            return False
