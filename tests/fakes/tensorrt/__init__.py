"""Fake of the TensorRT Python API: the subset edgesight calls, with TensorRT 10's names and behaviour.

The builder parses the ONNX model (with onnxruntime), and the serialized "plan" is a header
(TensorRT version, GPU, precision, I/O tensors) followed by the ONNX bytes. Deserializing checks
the header like TensorRT does (another version -> ``None`` and an error through the logger), and
``execute_async_v3`` runs the ONNX model with onnxruntime on the memory bound with
``set_tensor_address``, so an engine built here gives the model's real scores.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
from enum import IntEnum

import numpy as np

__version__ = os.environ.get("FAKE_TENSORRT_VERSION", "10.3.0")
_MAGIC = b"FTRT"


class ILogger:
    """Base class users subclass (``trt.ILogger.__init__(self)`` then override ``log``)."""

    class Severity(IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        pass

    def log(self, severity: "ILogger.Severity", msg: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class Logger(ILogger):
    INTERNAL_ERROR = ILogger.Severity.INTERNAL_ERROR
    ERROR = ILogger.Severity.ERROR
    WARNING = ILogger.Severity.WARNING
    INFO = ILogger.Severity.INFO
    VERBOSE = ILogger.Severity.VERBOSE

    def __init__(self, min_severity: ILogger.Severity = ILogger.Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity: ILogger.Severity, msg: str) -> None:
        if severity <= self.min_severity:
            import sys
            print(f"[TRT] [{severity.name[0]}] {msg}", file=sys.stderr)


class NetworkDefinitionCreationFlag(IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class BuilderFlag(IntEnum):
    FP16 = 0
    INT8 = 1
    DEBUG = 2
    STRICT_TYPES = 5


class MemoryPoolType(IntEnum):
    WORKSPACE = 0


class TensorIOMode(IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5


_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
       DataType.INT32: np.int32, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8}
_ONNX_TYPES = {"tensor(float)": DataType.FLOAT, "tensor(float16)": DataType.HALF, "tensor(uint8)": DataType.UINT8,
               "tensor(int8)": DataType.INT8, "tensor(int32)": DataType.INT32}


def nptype(trt_type: DataType):
    """NumPy type for a TensorRT DataType (as ``tensorrt.nptype``)."""
    return _NP[DataType(trt_type)]


def volume(shape) -> int:
    return int(np.prod(list(shape))) if len(shape) else 1


class Dims(tuple):
    """TensorRT's shape type: a tuple of ints, -1 for a dynamic axis."""


def _session(model_bytes: bytes):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])


class ITensor:
    def __init__(self, name: str, shape, dtype: DataType) -> None:
        self.name = name
        self.shape = Dims(shape)
        self.dtype = dtype


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []
        self._onnx: bytes | None = None

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]


class IParserError:
    def __init__(self, desc: str) -> None:
        self._desc = desc

    def desc(self) -> str:
        return self._desc

    def __str__(self) -> str:
        return f"In node -1 (parseGraph): INVALID_GRAPH: {self._desc}"


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        self.network = network
        self.logger = logger
        self._errors: list[IParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> IParserError:
        return self._errors[index]

    def clear_errors(self) -> None:
        self._errors.clear()

    def parse(self, model: bytes, path: str | None = None) -> bool:
        try:
            session = _session(bytes(model))
        except Exception as exc:
            self._errors.append(IParserError(f"Failed to parse ONNX model: {str(exc).splitlines()[0]}"))
            return False

        def tensor(info) -> ITensor:
            dims = [d if isinstance(d, int) and d > 0 else -1 for d in info.shape]
            return ITensor(info.name, dims, _ONNX_TYPES.get(info.type, DataType.FLOAT))

        self.network._inputs = [tensor(i) for i in session.get_inputs()]
        self.network._outputs = [tensor(o) for o in session.get_outputs()]
        self.network._onnx = bytes(model)
        return True


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, input: str, min, opt, max) -> None:  # noqa: A002 - TensorRT's parameter names
        if not (len(min) == len(opt) == len(max)):
            raise ValueError("min/opt/max must have the same rank")
        self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

    def get_shape(self, input: str):  # noqa: A002
        return self.shapes[input]


class IInt8EntropyCalibrator2:
    """Base class for INT8 calibrators; TensorRT pulls batches with get_batch until it gets None."""

    def __init__(self) -> None:
        pass


class IBuilderConfig:
    def __init__(self) -> None:
        self.flags: set[BuilderFlag] = set()
        self.pools: dict[MemoryPoolType, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.int8_calibrator = None
        self.calibration_profile = None

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self.pools[pool] = int(pool_size)

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(flag)

    def clear_flag(self, flag: BuilderFlag) -> None:
        self.flags.discard(flag)

    def get_flag(self, flag: BuilderFlag) -> bool:
        return flag in self.flags

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
        self.calibration_profile = profile
        return True


class IHostMemory(bytes):
    """Serialized engine; supports the buffer protocol like the real one."""

    @property
    def nbytes(self) -> int:
        return len(self)


def _device_name() -> str:
    from cuda.bindings import runtime as cudart

    err, props = cudart.cudaGetDeviceProperties(0)
    return props.name.decode() if err == 0 else "none"


def _read_device(pointer: int, nbytes: int) -> bytes:
    from cuda.bindings import runtime as cudart

    if not cudart.device_span(pointer, nbytes):
        raise ValueError(f"address {pointer:#x} (+{nbytes}) is not device memory")
    return ctypes.string_at(pointer, nbytes)


class Builder:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger
        self.platform_has_fast_fp16 = True
        self.platform_has_fast_int8 = True

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory | None:
        severity = ILogger.Severity
        if network._onnx is None:
            self.logger.log(severity.ERROR, "Network must have at least one output")
            return None
        inputs = []
        for tensor in network._inputs:
            shape = list(tensor.shape)
            if -1 in shape:
                profile = next((p for p in config.profiles if tensor.name in p.shapes), None)
                if profile is None:
                    self.logger.log(severity.ERROR, f"Network has dynamic or shape inputs, but no optimization "
                                                    f"profile has been defined. (input {tensor.name})")
                    return None
                shape = list(profile.shapes[tensor.name][1])
            inputs.append({"name": tensor.name, "shape": shape, "dtype": int(tensor.dtype)})
        calibrated = 0
        if BuilderFlag.INT8 in config.flags:
            calibrator = config.int8_calibrator
            if calibrator is None:
                self.logger.log(severity.ERROR, "Calibration failure occurred with no scaling factors detected.")
                return None
            cache = calibrator.read_calibration_cache()
            if not cache:
                batch_size = calibrator.get_batch_size()
                nbytes = volume(inputs[0]["shape"]) * batch_size * 4
                ranges = []
                while True:
                    pointers = calibrator.get_batch([t["name"] for t in inputs])
                    if not pointers:
                        break
                    data = np.frombuffer(_read_device(int(pointers[0]), nbytes), np.float32)
                    ranges.append(float(np.abs(data).max()))
                    calibrated += 1
                if not calibrated:
                    self.logger.log(severity.ERROR, "Calibration failure occurred with no scaling factors detected.")
                    return None
                cache = f"TRT-{__version__}-EntropyCalibration2\ninput: {max(ranges):.6f} ({calibrated} batches)\n"
                calibrator.write_calibration_cache(cache.encode())
        header = {"version": __version__, "device": _device_name(), "inputs": inputs,
                  "outputs": [{"name": t.name, "shape": list(t.shape), "dtype": int(t.dtype)}
                              for t in network._outputs],
                  "fp16": BuilderFlag.FP16 in config.flags, "int8": BuilderFlag.INT8 in config.flags,
                  "calibration_batches": calibrated}
        blob = json.dumps(header).encode()
        self.logger.log(severity.INFO, f"Engine generation completed ({len(network._onnx)} bytes of weights)")
        return IHostMemory(_MAGIC + struct.pack("<I", len(blob)) + blob + network._onnx)


class ICudaEngine:
    def __init__(self, header: dict, onnx: bytes) -> None:
        self._header = header
        self._onnx = onnx
        self._tensors = [(t, TensorIOMode.INPUT) for t in header["inputs"]] + \
                        [(t, TensorIOMode.OUTPUT) for t in header["outputs"]]

    @property
    def num_io_tensors(self) -> int:
        return len(self._tensors)

    def get_tensor_name(self, index: int) -> str:
        return self._tensors[index][0]["name"]

    def _tensor(self, name: str):
        for tensor, mode in self._tensors:
            if tensor["name"] == name:
                return tensor, mode
        raise KeyError(name)

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._tensor(name)[1]

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(self._tensor(name)[0]["shape"])

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType(self._tensor(name)[0]["dtype"])

    def create_execution_context(self) -> "IExecutionContext":
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self._session = _session(engine._onnx)
        self._shapes = {t["name"]: list(t["shape"]) for t in engine._header["inputs"]}
        self._addresses: dict[str, int] = {}
        self.executions = 0

    def set_input_shape(self, name: str, shape) -> bool:
        expected = self.engine._header["inputs"][0]["shape"]
        if list(shape) != list(expected):
            return False  # outside the optimization profile
        self._shapes[name] = list(shape)
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        tensor, mode = self.engine._tensor(name)
        if mode == TensorIOMode.INPUT:
            return Dims(self._shapes[name])
        batch = self._shapes[self.engine._header["inputs"][0]["name"]][0]
        return Dims([batch if d == -1 else d for d in tensor["shape"]])

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self.engine._tensor(name)
        self._addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        from cuda.bindings import runtime as cudart

        if int(stream_handle) not in cudart.streams:
            return False
        feeds = {}
        for tensor in self.engine._header["inputs"]:
            dtype = nptype(DataType(tensor["dtype"]))
            shape = self._shapes[tensor["name"]]
            nbytes = volume(shape) * np.dtype(dtype).itemsize
            feeds[tensor["name"]] = np.frombuffer(_read_device(self._addresses[tensor["name"]], nbytes),
                                                  dtype).reshape(shape)
        results = self._session.run(None, feeds)
        for tensor, value in zip(self.engine._header["outputs"], results):
            if self.engine._header["fp16"]:
                value = value.astype(np.float16).astype(value.dtype)  # FP16 kernels: float16 rounding
            value = np.ascontiguousarray(value, nptype(DataType(tensor["dtype"])))
            address = self._addresses[tensor["name"]]
            if not cudart.device_span(address, value.nbytes):
                return False
            ctypes.memmove(address, value.ctypes.data, value.nbytes)
        self.executions += 1
        return True


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        data = bytes(serialized_engine)
        severity = ILogger.Severity
        if data[:4] != _MAGIC or len(data) < 8:
            self.logger.log(severity.ERROR, "IRuntime::deserializeCudaEngine: Error Code 1: Serialization "
                                            "(Serialization assertion plan->header.magicTag == "
                                            "rt::kPLAN_MAGIC_TAG failed.)")
            return None
        (length,) = struct.unpack("<I", data[4:8])
        header = json.loads(data[8:8 + length])
        if header["version"] != __version__:
            self.logger.log(severity.ERROR, f"IRuntime::deserializeCudaEngine: Error Code 6: API Usage Error "
                                            f"(The engine plan file is not compatible with this version of TensorRT, "
                                            f"expecting library version {__version__} got {header['version']}, "
                                            f"please rebuild.)")
            return None
        if header["device"] != _device_name():
            self.logger.log(severity.WARNING, "Using an engine plan file across different models of devices is "
                                              "not recommended and is likely to affect performance or even "
                                              "cause errors.")
        return ICudaEngine(header, data[8 + length:])
