"""Run one fuzz target under atheris (libFuzzer): ``run_fuzz.py TARGET [libFuzzer args, corpus dirs]``.

    .venv/bin/python tests/fuzz/run_fuzz.py manifest /tmp/work tests/fuzz/corpus/manifest -max_total_time=120

A separate process because ``atheris.Fuzz()`` never returns (it exits, with 0 when the run ends
clean, non-zero with the input saved as ``crash-*`` where a target raised or crashed). The target's
Python modules are instrumented for coverage; the C decoders under them (protobuf, libpng, FFmpeg)
are not, so those are fuzzed by mutation of the seeds without coverage feedback.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> None:
    import atheris

    if len(argv) < 2:
        raise SystemExit("usage: run_fuzz.py TARGET [libFuzzer args and corpus dirs]")
    target = argv[1]
    sys.path.insert(0, str(HERE))
    import targets

    if target not in targets.TARGETS:
        raise SystemExit(f"unknown target {target!r}; one of {', '.join(targets.TARGETS)}")
    # heavy third-party packages first (uninstrumented), then ours under instrumentation
    for heavy in ("numpy", "cv2", "torch", "av", "onnx", "safetensors"):
        try:
            importlib.import_module(heavy)
        except ImportError:
            pass
    with atheris.instrument_imports(include=targets.INSTRUMENT[target]):
        for name in targets.INSTRUMENT[target]:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
    fn = targets.TARGETS[target]
    atheris.Setup([argv[0], *argv[2:]], fn)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
