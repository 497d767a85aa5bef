"""The part of TensorRT's Python API that deblur-edge uses, read from NVIDIA's real bindings.

``USED`` lists, per class of the ``tensorrt`` module, the members our code calls; ``ENUMS`` the enums it
names. ``surface(trt)`` reads them from a real module (enum members and values, whether a member is a
property or a method, and each method's parameter names per pybind11 overload, from its docstring).
``tensorrt_surface.json`` beside this file holds that snapshot for TensorRT 10.3 and 11.1:
``tests/runtime/test_tensorrt_real_api.py`` regenerates it from the real bindings in CI and requires it
to be unchanged, and the hand-written stand-in (``tensorrt_standin.py``) takes its enums from it and is
checked against it (``standin_problems``), so the stand-in cannot claim what real TensorRT contradicts.

Run as a script inside a Python that can import the real bindings (see the test): prints the surface,
the ``trt.`` names our sources use and the ones the real module lacks, as JSON.
"""
from __future__ import annotations

import ast
import inspect
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).with_name("tensorrt_surface.json")
REPO = Path(__file__).resolve().parents[2]
SOURCES = ("runtime", "export")  # where the project's TensorRT code lives
BINDINGS_ROOT = Path(os.environ.get("DEBLUR_TRT_BINDINGS", REPO / ".venv"))  # trt10/, trt11/: pip --target folders


def bindings_folder(major: int) -> Path:
    """Where the README's test command installs NVIDIA's real bindings of one TensorRT major version."""
    return BINDINGS_ROOT / f"trt{major}"

ENUMS = ("ILogger.Severity", "NetworkDefinitionCreationFlag", "BuilderFlag", "MemoryPoolType", "TensorIOMode",
         "DataType")
USED: dict[str, tuple[str, ...]] = {
    "ILogger": ("__init__", "log"),
    "Builder": ("__init__", "create_network", "create_builder_config", "create_optimization_profile",
                "build_serialized_network"),
    "INetworkDefinition": ("num_inputs", "get_input"),
    "ITensor": ("name",),
    "OnnxParser": ("__init__", "parse_from_file", "num_errors", "get_error"),
    "ParserError": ("desc", "node", "node_name", "node_operator"),
    "IOptimizationProfile": ("set_shape",),
    "IBuilderConfig": ("set_flag", "clear_flag", "set_memory_pool_limit", "add_optimization_profile",
                       "create_timing_cache", "set_timing_cache", "get_timing_cache"),
    "ITimingCache": ("serialize",),
    "Runtime": ("__init__", "deserialize_cuda_engine", "engine_host_code_allowed"),
    "ICudaEngine": ("num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_dtype", "get_tensor_shape",
                    "get_tensor_profile_shape", "create_execution_context"),
    "IExecutionContext": ("set_input_shape", "get_tensor_shape", "set_tensor_address", "execute_async_v3"),
}


def _split_params(text: str) -> list[str]:
    """Split ``a: T, b: List[int, int] = x`` at top-level commas."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[(<{":
            depth += 1
        elif ch in "])>}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def overloads(name: str, doc: str) -> list[list[list[Any]]]:
    """Each pybind11 overload of ``name`` as ``[[param, has_default], ...]`` without ``self``."""
    found = []
    for m in re.finditer(rf"^\s*(?:\d+\.\s+)?{re.escape(name)}\((.*)\)\s*->", doc or "", re.M):
        params = []
        for p in _split_params(m.group(1)):
            pname = p.split(":")[0].split("=")[0].strip()
            if pname in ("self", "*args", "**kwargs") or not pname:
                continue
            params.append([pname, "=" in p])
        found.append(params)
    return found


def _resolve(root: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


def surface(trt: Any) -> dict[str, Any]:
    """Enums and used members of a real ``tensorrt`` module."""
    enums = {name: {k: int(v) for k, v in _resolve(trt, name).__members__.items()} for name in ENUMS
             if _has(trt, name)}
    classes: dict[str, Any] = {}
    for cls_name, members in USED.items():
        cls = getattr(trt, cls_name, None)
        if cls is None:
            classes[cls_name] = None
            continue
        entry: dict[str, Any] = {}
        for m in members:
            attr = inspect.getattr_static(cls, m, None)
            if attr is None:
                entry[m] = None
            elif isinstance(attr, property) or type(attr).__name__ == "property":
                entry[m] = "property"
            else:
                entry[m] = overloads(m, getattr(cls, m).__doc__)
        classes[cls_name] = entry
    return {"version": str(trt.__version__), "enums": enums, "classes": classes}


def _has(root: Any, dotted: str) -> bool:
    try:
        _resolve(root, dotted)
        return True
    except AttributeError:
        return False


def project_trt_names(root: Path = REPO) -> list[str]:
    """Every ``trt.X.Y`` chain, and ``getattr(trt.X, "Y", ...)``, in our TensorRT sources."""
    names: set[str] = set()
    for folder in SOURCES:
        for path in sorted((root / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute):
                    chain = _chain(node)
                    if chain and chain[0] == "trt" and len(chain) > 1:
                        names.add(".".join(chain))
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                        and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)):
                    chain = _chain(node.args[0]) if isinstance(node.args[0], ast.Attribute) else None
                    if chain and chain[0] == "trt":
                        names.add(".".join(chain) + "." + str(node.args[1].value) + "?")  # optional by design
    # keep the longest chains only: trt.ILogger.Severity.WARNING covers trt.ILogger
    return sorted(n for n in names if not any(o != n and o.startswith(n.rstrip("?") + ".") for o in names))


def _chain(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id, *reversed(parts)]
    return None


def missing_names(trt: Any, names: list[str]) -> list[str]:
    """The used names the real module lacks (``?``-marked ones are looked up optionally and may be absent)."""
    return [n for n in names if not n.endswith("?") and not _has(trt, n.split(".", 1)[1])]


def snapshot(major: int) -> dict[str, Any]:
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))[str(major)]


def _standin_params(fn: Any) -> list[list[Any]]:
    params = list(inspect.signature(fn).parameters.values())[1:]  # without self
    return [[p.name, p.default is not inspect.Parameter.empty] for p in params]


def _compatible(mine: list[list[Any]], real: list[list[Any]]) -> bool:
    """Same names in the same order; what the stand-in leaves out or defaults, real TensorRT defaults too."""
    if len(mine) > len(real):
        return False
    for (name, default), (rname, rdefault) in zip(mine, real, strict=False):
        if name != rname or (default and not rdefault):
            return False
    return all(rdefault for _, rdefault in real[len(mine):])


def standin_problems(fake: Any) -> list[str]:
    """What a ``FakeTensorRT`` instance claims that the snapshot of its major version contradicts."""
    major = int(str(fake.__version__).split(".")[0])
    snap = snapshot(major)
    problems = []
    for name in ENUMS:
        real = snap["enums"].get(name)
        mine = _resolve(fake, name).__members__ if _has(fake, name) else None
        if (real is None) != (mine is None):
            problems.append(f"{name}: stand-in {'lacks' if mine is None else 'has'} it, TensorRT {major} "
                            f"{'has' if real is not None else 'does not'}")
        elif mine is not None and {k: int(v) for k, v in mine.items()} != real:
            problems.append(f"{name}: stand-in members differ from TensorRT {major}'s")
    for cls in fake.standin_classes():
        real_cls = snap["classes"].get(cls.REAL)
        if real_cls is None:
            problems.append(f"{cls.__name__}: TensorRT {major} has no {cls.REAL}")
            continue
        for member, attr in vars(cls).items():
            if member.startswith("_") and member != "__init__" or member == "REAL" or isinstance(attr, type):
                continue  # nested enums are checked with ENUMS
            if member == "__init__" and member not in real_cls:
                continue  # made only by other TensorRT objects, never constructed by our code
            where = f"{cls.REAL}.{member}"
            if member not in real_cls:
                problems.append(f"{where}: not in the list of members we use (tests/fakes/trt_surface.py USED)")
            elif real_cls[member] is None:
                problems.append(f"{where}: TensorRT {major} has no such member")
            elif isinstance(attr, property) != (real_cls[member] == "property"):
                problems.append(f"{where}: a {'property' if real_cls[member] == 'property' else 'method'} in TensorRT {major}")
            elif not isinstance(attr, property) and not any(_compatible(_standin_params(attr), o)
                                                            for o in real_cls[member]):
                problems.append(f"{where}{inspect.signature(attr)}: no TensorRT {major} overload takes these "
                                f"parameters ({real_cls[member]})")
    return problems


if __name__ == "__main__":
    import importlib

    module = importlib.import_module(sys.argv[1] if len(sys.argv) > 1 else "tensorrt")
    used = project_trt_names()
    print(json.dumps({"surface": surface(module), "used": used, "missing": missing_names(module, used)}))
