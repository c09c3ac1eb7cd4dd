"""Fake ``cuda.bindings``; see tests/fakes/README.md."""
