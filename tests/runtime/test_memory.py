"""``tile="auto"`` bounds host memory on dynamic-shape models (#17 defect 9: 8000x8000 passed 10 GB)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from deblur.runtime import memory
from deblur.runtime.errors import InputError
from deblur.runtime.spec import get_spec

PEAK = """
import json, re, sys
import numpy as np
from deblur.runtime.deblurrer import Deblurrer
backend, side, tile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
d = Deblurrer("default", backend=backend, threads=2, tile=tile if tile == "auto" else int(tile))
d(np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8))  # a forward (flat frames skip it)
def hwm():  # this process's peak RSS; ru_maxrss would start from the forking parent's (pytest's)
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
before = hwm()
calls = []
infer = d.backend.infer
d.backend.infer = lambda x: calls.append(x.shape) or infer(x)
frame = np.random.default_rng(0).integers(0, 256, (side, side, 3), np.uint8)
d(frame)
peak = hwm()
print(json.dumps({"before": before, "peak": peak, "calls": [list(c) for c in calls]}))
"""


def _default_spec():
    """The spec of the model ``PEAK`` runs (the bundled default), from its file: the estimate is per spec."""
    from deblur.runtime.contract import read_onnx_contract
    from deblur.runtime.zoo import MODELS_DIR

    return read_onnx_contract(MODELS_DIR / "default.onnx").spec


def _peak(backend: str, side: int, tile: str = "auto", limit: str | None = None) -> dict:
    env = {**os.environ}
    env.pop(memory.ENV, None)
    if limit:
        env[memory.ENV] = limit
    out = subprocess.run([sys.executable, "-c", PEAK, backend, str(side), tile], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_estimate_from_the_spec():
    pico = get_spec("deblurgan-pico")  # ngf=8: the widest level is the full-resolution one, 8 channels
    assert memory.activation_bytes_per_px(pico) == 4 * memory.LIVE_TENSORS * 8
    assert memory.activation_bytes_per_px(get_spec("deblurgan")) == 4 * memory.LIVE_TENSORS * 64


def test_parse_size():
    assert memory.parse_size("2GiB") == 2 << 30
    assert memory.parse_size("512 MiB") == 512 << 20
    assert memory.parse_size("1500000000") == 1_500_000_000
    for bad in ("", "lots", "-1G", "0", "2 parsecs", "__import__('os')"):
        with pytest.raises(InputError, match=memory.ENV):
            memory.parse_size(bad)


def test_tile_side_none_when_whole_fits_and_refusal_names_numbers():
    spec = get_spec("deblurgan-pico")
    assert memory.tile_side(spec, 1, 360, 640, 1 << 30) is None
    side = memory.tile_side(spec, 1, 8000, 8000, 8 << 30)
    assert side is not None and 256 < side < 8000
    with pytest.raises(InputError, match=r"8000x8000 need about 3\.1 GiB .* 1\.0 GiB is the budget"):
        memory.tile_side(spec, 1, 8000, 8000, 1 << 30)


def test_budget_is_capped_by_the_environment(monkeypatch):
    monkeypatch.setenv(memory.ENV, "100MiB")
    assert memory.budget() == 100 << 20
    monkeypatch.setenv(memory.ENV, "eval(1)")
    with pytest.raises(InputError):
        memory.budget()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_estimate_bounds_the_measured_peak(backend):
    """Calibration: the measured peak RSS growth per pixel of a whole-frame forward stays below the
    estimate (model activations + frame buffers) that ``tile="auto"`` budgets with."""
    pytest.importorskip(backend)
    small, large = _peak(backend, 1000, tile="0"), _peak(backend, 2000, tile="0")
    per_px = (large["peak"] - small["peak"]) / (2000 * 2000 - 1000 * 1000)
    estimate = memory.activation_bytes_per_px(_default_spec()) + memory.FRAME_BYTES_PER_PX
    assert 0 < per_px <= estimate, f"{backend}: {per_px:.0f} B/px measured, {estimate} B/px estimated"


def test_auto_tiles_a_frame_over_the_budget_and_stays_inside_it():
    """2000x2000 whole needs ~750 MiB in ONNX Runtime; with a 400 MiB budget "auto" tiles and the peak
    stays within budget (before the fix: one whole-frame call, peak ~750 MiB)."""
    r = _peak("onnxruntime", 2000, limit="400MiB")
    assert len(r["calls"]) > 1 and all(c[2] < 2000 and c[3] < 2000 for c in r["calls"]), r["calls"]
    assert r["peak"] - r["before"] < 400 << 20, f"grew {(r['peak'] - r['before']) >> 20} MiB"
    whole = _peak("onnxruntime", 2000)  # no limit: this machine has the memory, one call
    assert len(whole["calls"]) == 1


def test_auto_refuses_before_allocating(monkeypatch):
    from deblur.runtime.deblurrer import Deblurrer

    monkeypatch.setenv(memory.ENV, "1GiB")
    d = Deblurrer("default", backend="onnxruntime")
    frame = np.zeros((8000, 8000, 3), np.uint8)
    frame[::2] = 255  # not flat (flat frames come back unchanged without a forward)
    with pytest.raises(InputError, match="need about .* budget"):
        d(frame)
    assert d.timings == {}  # nothing ran


def test_explicit_tile_and_engines_unchanged(monkeypatch):
    """The budget applies to tile="auto" only: an explicit tile size is the user's."""
    from deblur.runtime.deblurrer import Deblurrer

    monkeypatch.setenv(memory.ENV, "1MiB")
    d = Deblurrer("default", backend="onnxruntime", tile=0)
    out = d(np.zeros((64, 64, 3), np.uint8))
    assert out.shape == (64, 64, 3)
