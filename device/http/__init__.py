"""The device's HTTP face: status page, JSON API, Prometheus metrics, snapshot/MJPEG preview, upload."""

from .board import StatusBoard
from .server import HttpSettings, StatusServer, check_settings

__all__ = ["HttpSettings", "StatusBoard", "StatusServer", "check_settings"]
