"""Service life under systemd: sd_notify (READY, WATCHDOG, STATUS, STOPPING) and stop signals.

The notify protocol is one datagram to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a leading
``@`` means the abstract namespace), so it is written here in a few lines rather than pulling in
libsystemd bindings that a Pi venv would have to compile. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Send sd_notify messages when run by systemd with ``Type=notify``."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watched = usec.isdigit() and (not pid or pid == str(os.getpid()))
        # ping at half the interval systemd allows, as sd_watchdog_enabled(3) recommends
        self.watchdog_interval: float | None = int(usec) / 2e6 if watched and int(usec) > 0 else None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False when not under systemd or on failure."""
        if not self.address:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(target)
                sock.sendall("\n".join(fields).encode())
            return True
        except OSError as exc:
            log.debug("sd_notify to %s failed: %s", self.address, exc)
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))


def on_stop_signals(callback: Callable[[str], None]) -> None:
    """Call ``callback(signal name)`` on SIGTERM and SIGINT (main thread only).

    The callback only sets events; the main loop does the stopping, so the handler never runs
    I/O while the interrupted code holds a lock.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame) -> None:  # noqa: ARG001 - the signal module's signature
        callback(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
