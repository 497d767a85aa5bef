"""NOT TensorRT: a stand-in for the ``tensorrt`` module, with only the members our code uses, so the logic
around it (build flags, profile, timing cache, engine I/O and shape checks, error paths) is tested on
machines without a GPU.

Its surface is not invented: the enums come from ``tensorrt_surface.json`` (read from NVIDIA's real
bindings 10.3 and 11.1 by ``trt_surface.py``), every class names the real class it stands for (``REAL``),
and ``trt_surface.standin_problems`` checks every member and parameter list against the real one (in the
default test run; CI also regenerates the snapshot from the real bindings). It builds nothing and runs
nothing: it records what it was asked to do and fails where told to.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from fakes import trt_surface

FAKE_ENGINE = b"NOT-A-TENSORRT-ENGINE:" + bytes(range(256)) + b"\x00" * 7  # arbitrary binary bytes


@dataclass
class Calls:
    """Everything the code asked of the stand-in."""

    network_flags: list[int] = field(default_factory=list)
    parsed: list[str] = field(default_factory=list)
    flags_set: list[str] = field(default_factory=list)
    flags_cleared: list[str] = field(default_factory=list)
    memory_pools: dict[str, int] = field(default_factory=dict)
    profiles: list[dict[str, tuple]] = field(default_factory=list)
    caches_created: list[bytes] = field(default_factory=list)
    cache_set: list[tuple[bytes, bool]] = field(default_factory=list)
    cache_serialized: int = 0
    builds: int = 0
    deserialized: list[int] = field(default_factory=list)  # sizes of the plans given to the runtime
    input_shapes: list[tuple[str, tuple]] = field(default_factory=list)
    addresses: dict[str, int] = field(default_factory=dict)
    executions: list[int] = field(default_factory=list)  # stream handles


@dataclass
class EngineIO:
    """What a stand-in engine reports: (name, mode, dtype) per I/O tensor, and profile 0 of the input."""

    tensors: tuple[tuple[str, str, str], ...] = (("input", "INPUT", "FLOAT"), ("output", "OUTPUT", "FLOAT"))
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] = ((1, 3, 64, 64), (1, 3, 720, 1280),
                                                                          (1, 3, 1088, 1920))


def _enum(name: str, members: dict[str, int]) -> type[enum.IntEnum]:
    return enum.IntEnum(name, members)


class FakeTensorRT:
    """Configure the behaviour, then read ``calls``.

    version: "10.3.0" or "11.1.0" (enums as those versions have them: 11 has no BuilderFlag.FP16).
    parser_errors: descriptions; parse_from_file fails with one error per entry.
    build_log: when not None, build_serialized_network logs these as errors and returns None.
    cache_mismatch: set_timing_cache refuses any non-empty cache (as for one from another GPU).
    cuda_fails: ``Builder``/``Runtime`` raise what real TensorRT raises when CUDA cannot start.
    engine: the engine ``deserialize_cuda_engine`` returns (None: it returns None, as for a corrupt plan).
    shape_fails: ``set_input_shape`` returns False (real TensorRT: a shape outside the profile).
    """

    def __init__(self, version: str = "10.3.0", *, parser_errors: tuple[str, ...] = (),
                 build_log: tuple[str, ...] | None = None, input_name: str = "input",
                 cache_mismatch: bool = False, cuda_fails: bool = False, engine: EngineIO | None = EngineIO(),
                 shape_fails: bool = False) -> None:
        self.__version__ = version
        self.calls = Calls()
        snap = trt_surface.snapshot(int(version.split(".")[0]))
        enums = {name: _enum(name.split(".")[-1], members) for name, members in snap["enums"].items()}
        for name, e in enums.items():
            if "." not in name:
                setattr(self, name, e)
        fake = self

        class ILogger:
            REAL = "ILogger"
            Severity = enums["ILogger.Severity"]

            def __init__(self) -> None:
                pass

            def log(self, severity: Any, msg: str) -> None:
                pass

        class ITensor:
            REAL = "ITensor"

            def __init__(self, name: str) -> None:
                self._name = name

            @property
            def name(self) -> str:
                return self._name

        class ParserError:
            REAL = "ParserError"

            def __init__(self, desc: str, node: int, name: str, op: str) -> None:
                self._desc, self._node, self._name, self._op = desc, node, name, op

            def desc(self) -> str:
                return self._desc

            def node(self) -> int:
                return self._node

            def node_name(self) -> str:
                return self._name

            def node_operator(self) -> str:
                return self._op

        class INetworkDefinition:
            REAL = "INetworkDefinition"

            def __init__(self, flags: int) -> None:
                self._inputs: list[ITensor] = []

            @property
            def num_inputs(self) -> int:
                return len(self._inputs)

            def get_input(self, index: int) -> ITensor:
                return self._inputs[index]

        class OnnxParser:
            REAL = "OnnxParser"

            def __init__(self, network: INetworkDefinition, logger: Any) -> None:
                self._network, self._errors = network, []

            def parse_from_file(self, model: str) -> bool:
                fake.calls.parsed.append(model)
                self._errors = [ParserError(d, i, f"node_{i}", "Conv") for i, d in enumerate(parser_errors)]
                if not self._errors:
                    self._network._inputs.append(ITensor(input_name))
                return not self._errors

            @property
            def num_errors(self) -> int:
                return len(self._errors)

            def get_error(self, index: int) -> ParserError:
                return self._errors[index]

        class IOptimizationProfile:
            REAL = "IOptimizationProfile"

            def set_shape(self, input: str, min: tuple, opt: tuple, max: tuple) -> None:  # noqa: A002 - real names
                fake.calls.profiles.append({"name": input, "min": tuple(min), "opt": tuple(opt), "max": tuple(max)})

        class ITimingCache:
            REAL = "ITimingCache"

            def __init__(self, data: bytes) -> None:
                self._data = bytes(data)

            def serialize(self) -> bytes:
                fake.calls.cache_serialized += 1
                return self._data + b"|timed"

        class IBuilderConfig:
            REAL = "IBuilderConfig"

            def __init__(self) -> None:
                self._cache = None

            def set_flag(self, flag: Any) -> None:
                fake.calls.flags_set.append(flag.name)

            def clear_flag(self, flag: Any) -> None:
                fake.calls.flags_cleared.append(flag.name)

            def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
                fake.calls.memory_pools[pool.name] = pool_size

            def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
                return 0

            def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
                fake.calls.caches_created.append(bytes(serialized_timing_cache))
                return ITimingCache(serialized_timing_cache)

            def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
                fake.calls.cache_set.append((cache._data, ignore_mismatch))
                if cache_mismatch and cache._data:
                    return False
                self._cache = cache
                return True

            def get_timing_cache(self) -> ITimingCache:
                return self._cache

        def _no_cuda() -> None:
            if cuda_fails:  # exactly what pybind11 raises when TensorRT's factory returns NULL
                raise TypeError("pybind11::init(): factory function returned nullptr")

        class Builder:
            REAL = "Builder"

            def __init__(self, logger: Any) -> None:
                _no_cuda()
                self._logger = logger

            def create_network(self, flags: int = 0) -> INetworkDefinition:
                fake.calls.network_flags.append(flags)
                return INetworkDefinition(flags)

            def create_builder_config(self) -> IBuilderConfig:
                return IBuilderConfig()

            def create_optimization_profile(self) -> IOptimizationProfile:
                return IOptimizationProfile()

            def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
                fake.calls.builds += 1
                self._logger.log(ILogger.Severity.INFO, "fake build started")
                if build_log is not None:
                    for msg in build_log:
                        self._logger.log(ILogger.Severity.ERROR, msg)
                    return None
                return FAKE_ENGINE

        class IExecutionContext:
            REAL = "IExecutionContext"

            def __init__(self, io: EngineIO) -> None:
                self._io, self._shape = io, tuple(io.profile[1])

            def set_input_shape(self, name: str, shape: tuple) -> bool:
                fake.calls.input_shapes.append((name, tuple(shape)))
                if shape_fails:
                    return False
                self._shape = tuple(shape)
                return True

            def get_tensor_shape(self, name: str) -> tuple:
                return self._shape

            def set_tensor_address(self, name: str, memory: int) -> bool:
                fake.calls.addresses[name] = memory
                return True

            def execute_async_v3(self, stream_handle: int) -> bool:
                fake.calls.executions.append(stream_handle)
                return True

        class ICudaEngine:
            REAL = "ICudaEngine"

            def __init__(self, io: EngineIO) -> None:
                self._io = io

            @property
            def num_io_tensors(self) -> int:
                return len(self._io.tensors)

            def get_tensor_name(self, index: int) -> str:
                return self._io.tensors[index][0]

            def _tensor(self, name: str) -> tuple[str, str, str]:
                return next(t for t in self._io.tensors if t[0] == name)

            def get_tensor_mode(self, name: str) -> Any:
                return fake.TensorIOMode[self._tensor(name)[1]]

            def get_tensor_dtype(self, name: str) -> Any:
                return fake.DataType[self._tensor(name)[2]]

            def get_tensor_shape(self, name: str) -> tuple:
                lo, _, hi = self._io.profile
                return tuple(a if a == b else -1 for a, b in zip(lo, hi, strict=True))

            def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple]:
                return [tuple(s) for s in self._io.profile]

            def create_execution_context(self, strategy: Any = None) -> IExecutionContext:
                return IExecutionContext(self._io)

        class Runtime:
            REAL = "Runtime"

            def __init__(self, logger: Any) -> None:
                _no_cuda()
                self._logger = logger
                self._host_code = True

            @property
            def engine_host_code_allowed(self) -> bool:
                return self._host_code

            @engine_host_code_allowed.setter
            def engine_host_code_allowed(self, value: bool) -> None:
                self._host_code = bool(value)

            def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
                fake.calls.deserialized.append(len(serialized_engine))
                if engine is None:
                    self._logger.log(ILogger.Severity.ERROR, "stand-in: the plan is not an engine")
                    return None
                return ICudaEngine(engine)

        self.ILogger, self.Builder, self.OnnxParser, self.Runtime = ILogger, Builder, OnnxParser, Runtime
        self._classes = (ILogger, ITensor, ParserError, INetworkDefinition, OnnxParser, IOptimizationProfile,
                         ITimingCache, IBuilderConfig, Builder, IExecutionContext, ICudaEngine, Runtime)

    def standin_classes(self) -> tuple[type, ...]:
        """Every class this stand-in defines (checked member by member against real TensorRT)."""
        return self._classes
