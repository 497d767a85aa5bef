"""NOT TensorRT: a stand-in implementing only the attributes build_engine uses, so its logic (flags,
profile, timing cache, error paths) can be tested on machines without a GPU.

It builds nothing and knows nothing about ONNX; it records what it was asked to do. An instance
stands in for the ``tensorrt`` module: ``build_engine(..., trt=FakeTensorRT("11.0.0"))``. Real
TensorRT behaviour is only checked by the GPU test that skips here.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

FAKE_ENGINE = b"NOT-A-TENSORRT-ENGINE:" + bytes(range(256)) + b"\x00" * 7  # arbitrary binary bytes


@dataclass
class Calls:
    """Everything build_engine asked of the stand-in."""

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


class _Severity(enum.IntEnum):  # values as in nvinfer1::ILogger::Severity
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class _ILogger:
    Severity = _Severity

    def __init__(self) -> None:
        pass


class _ParserError:
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


class FakeTensorRT:
    """Configure the behaviour, then read ``calls``.

    version: "10.3.0" (STRONGLY_TYPED creation flag exists) or "11.0.0" (it and BuilderFlag.FP16 do not).
    parser_errors: descriptions; parse_from_file fails with one error per entry.
    build_log: when not None, build_serialized_network logs these as errors and returns None.
    cache_mismatch: set_timing_cache refuses any non-empty cache (as for one from another GPU).
    """

    def __init__(self, version: str = "10.3.0", *, parser_errors: tuple[str, ...] = (),
                 build_log: tuple[str, ...] | None = None, input_name: str = "input",
                 cache_mismatch: bool = False) -> None:
        self.__version__ = version
        self.calls = Calls()
        major = int(version.split(".")[0])
        self.ILogger = _ILogger
        if major < 11:  # nvinfer1::NetworkDefinitionCreationFlag in 10.x
            self.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag",
                                                              {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
        names = ["TF32", "REFIT", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "STRICT_NANS"]
        self.BuilderFlag = enum.IntEnum("BuilderFlag", (["FP16"] if major < 11 else []) + names)
        self.MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE"])
        fake = self

        class Network:
            def __init__(self, flags: int) -> None:
                self.inputs: list[Any] = []

            @property
            def num_inputs(self) -> int:
                return len(self.inputs)

            def get_input(self, i: int) -> Any:
                return self.inputs[i]

        class Parser:
            def __init__(self, network: Network, logger: Any) -> None:
                self.network, self.errors = network, []

            def parse_from_file(self, path: str) -> bool:
                fake.calls.parsed.append(path)
                self.errors = [_ParserError(d, i, f"node_{i}", "Conv") for i, d in enumerate(parser_errors)]
                if not self.errors:
                    self.network.inputs.append(type("Tensor", (), {"name": input_name})())
                return not self.errors

            @property
            def num_errors(self) -> int:
                return len(self.errors)

            def get_error(self, i: int) -> _ParserError:
                return self.errors[i]

        class Profile:
            def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
                fake.calls.profiles.append({"name": name, "min": tuple(lo), "opt": tuple(opt), "max": tuple(hi)})

        class TimingCache:
            def __init__(self, data: bytes) -> None:
                self.data = bytes(data)

            def serialize(self) -> bytes:
                fake.calls.cache_serialized += 1
                return self.data + b"|timed"

        class Config:
            def __init__(self) -> None:
                self.cache = None

            def set_flag(self, flag: Any) -> None:
                fake.calls.flags_set.append(flag.name)

            def clear_flag(self, flag: Any) -> None:
                fake.calls.flags_cleared.append(flag.name)

            def set_memory_pool_limit(self, pool: Any, size: int) -> None:
                fake.calls.memory_pools[pool.name] = size

            def add_optimization_profile(self, profile: Profile) -> int:
                return 0

            def create_timing_cache(self, data: bytes) -> TimingCache:
                fake.calls.caches_created.append(bytes(data))
                return TimingCache(data)

            def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
                fake.calls.cache_set.append((cache.data, ignore_mismatch))
                if cache_mismatch and cache.data:
                    return False
                self.cache = cache
                return True

            def get_timing_cache(self) -> TimingCache:
                return self.cache

        class Builder:
            def __init__(self, logger: Any) -> None:
                self.logger = logger

            def create_network(self, flags: int = 0) -> Network:
                fake.calls.network_flags.append(flags)
                return Network(flags)

            def create_builder_config(self) -> Config:
                return Config()

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
                fake.calls.builds += 1
                self.logger.log(_Severity.INFO, "fake build started")
                if build_log is not None:
                    for msg in build_log:
                        self.logger.log(_Severity.ERROR, msg)
                    return None
                return FAKE_ENGINE

        self.Builder, self.OnnxParser = Builder, Parser
