"""Fake of NVIDIA's cuda-python package (only ``cuda.bindings.runtime``); see tests/fakes/README.md."""
