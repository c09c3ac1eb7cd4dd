"""Fake of cuda-python's CUDA runtime API (``from cuda.bindings import runtime as cudart``).

Same calling convention as the real bindings: every call returns a tuple whose first item is a
``cudaError_t``. "Device" allocations are host buffers registered here, and copies are checked
against the direction and size of those allocations, so a host/device mix-up or an overrun is
an error here as it would be on a GPU.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from enum import IntEnum


class cudaError_t(IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevicePointer = 17


class cudaMemcpyKind(IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class cudaStream_t:
    """Opaque stream handle; ``int(stream)`` is what TensorRT's execute_async_v3 takes."""

    _next = 0x5000

    def __init__(self) -> None:
        cudaStream_t._next += 1
        self._handle = cudaStream_t._next

    def __int__(self) -> int:
        return self._handle

    def getPtr(self) -> int:
        return self._handle


@dataclass
class cudaDeviceProp:
    name: bytes
    major: int
    minor: int
    totalGlobalMem: int


_ok = cudaError_t.cudaSuccess
# device pointer -> (ctypes buffer, size); what a test can inspect
allocations: dict[int, tuple[ctypes.Array, int]] = {}
streams: set[int] = set()


def _devices() -> int:
    return int(os.environ.get("FAKE_CUDA_DEVICES", "1"))


def cudaGetDeviceCount():
    count = _devices()
    return (_ok, count) if count else (cudaError_t.cudaErrorNoDevice, 0)


def cudaGetDeviceProperties(device: int):
    if device >= _devices():
        return (cudaError_t.cudaErrorInvalidValue, None)
    name = os.environ.get("FAKE_CUDA_DEVICE_NAME", "Orin").encode()
    return (_ok, cudaDeviceProp(name=name, major=8, minor=7, totalGlobalMem=8 << 30))


def cudaGetErrorName(error):
    return (_ok, cudaError_t(int(error)).name.encode())


def cudaMalloc(size: int):
    if size <= 0:
        return (cudaError_t.cudaErrorInvalidValue, 0)
    buffer = ctypes.create_string_buffer(int(size))
    pointer = ctypes.addressof(buffer)
    allocations[pointer] = (buffer, int(size))
    return (_ok, pointer)


def cudaFree(pointer):
    if allocations.pop(int(pointer), None) is None:
        return (cudaError_t.cudaErrorInvalidDevicePointer,)
    return (_ok,)


def device_span(pointer: int, count: int) -> bool:
    """True when [pointer, pointer+count) lies inside one device allocation."""
    pointer = int(pointer)
    for base, (_, size) in allocations.items():
        if base <= pointer and pointer + count <= base + size:
            return True
    return False


def cudaMemcpy(dst, src, count: int, kind: cudaMemcpyKind):
    dst_device = kind in (cudaMemcpyKind.cudaMemcpyHostToDevice, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
    src_device = kind in (cudaMemcpyKind.cudaMemcpyDeviceToHost, cudaMemcpyKind.cudaMemcpyDeviceToDevice)
    if (dst_device and not device_span(dst, count)) or (src_device and not device_span(src, count)):
        return (cudaError_t.cudaErrorInvalidValue,)
    if (not dst_device and device_span(dst, 1)) or (not src_device and device_span(src, 1)):
        return (cudaError_t.cudaErrorInvalidValue,)  # a device pointer passed as a host one
    ctypes.memmove(int(dst), int(src), int(count))
    return (_ok,)


def cudaMemcpyAsync(dst, src, count: int, kind: cudaMemcpyKind, stream):
    if int(stream) not in streams:
        return (cudaError_t.cudaErrorInvalidValue,)
    return cudaMemcpy(dst, src, count, kind)


def cudaStreamCreate():
    stream = cudaStream_t()
    streams.add(int(stream))
    return (_ok, stream)


def cudaStreamSynchronize(stream):
    return (_ok,) if int(stream) in streams else (cudaError_t.cudaErrorInvalidValue,)


def cudaStreamDestroy(stream):
    if int(stream) not in streams:
        return (cudaError_t.cudaErrorInvalidValue,)
    streams.discard(int(stream))
    return (_ok,)
