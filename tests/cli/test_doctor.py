"""``deblur-doctor`` run for real on this machine (subprocesses, real NVRTC, export, backends and PyAV).

On a machine without a GPU: every CPU row passes (or skips because its package is not installed),
every GPU row skips with its reason, exit 0, well under a minute; ``--json`` carries the same rows
as the table. A real failure (a corrupt checkpoint) exits 1 naming the check on the last line; with
torch blocked the export rows skip with the install hint and the rest still pass. The GPU branches
the CI cannot reach are driven in-process: NVRTC really compiles for a named architecture, and the
kernel comparison runs against a CPU stand-in for ``CudaPrePost`` (clearly named; the real kernels
run on a GPU machine, in this check and in tests/runtime/test_nvrtc.py).
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deblur.runtime import doctor
from deblur.runtime.doctor_env import Gpu, gpus

CLI = [sys.executable, "-m", "deblur.runtime.doctor_cli"]
NO_GPU = not gpus()[0]
TORCH_HINT = "torch not installed (pip install 'deblur-edge[export]')"
# The wrapper that runs the doctor with torch unimportable, as on a robot without it: a meta-path
# finder refuses torch before anything is imported, and the end asserts torch never loaded.
NO_TORCH = """
import importlib.abc, sys
class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, BlockTorch())
from deblur.runtime.doctor_cli import main
rc = main(sys.argv[1:])
loaded = [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
print("torch modules loaded:", loaded)
sys.exit(rc)
"""


def _run(args: list[str], cwd: Path, cmd: list[str] = CLI, timeout: int = 300) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    r = subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    return r, time.perf_counter() - t0


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _table_rows(stdout: str) -> dict[str, tuple[str, str]]:
    """check name -> (status, detail) as the table prints them."""
    lines = stdout.splitlines()
    start = lines.index("checks") + 2  # the title, then the column header
    out = {}
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        status, name, _seconds, detail = line.split(None, 3)
        out[name] = (status, detail)
    return out


@pytest.fixture
def empty_cwd(tmp_path: Path) -> Path:
    d = tmp_path / "cwd"
    d.mkdir()
    return d


def test_cpu_machine_every_cpu_row_passes_every_gpu_row_skips(empty_cwd, tmp_path):
    out = tmp_path / "doctor.json"
    r, wall = _run(["--json", str(out)], empty_cwd)
    print(f"deblur-doctor took {wall:.1f} s\n{r.stdout}\n{r.stderr[-2000:]}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert wall < 90, f"deblur-doctor took {wall:.1f} s (the budget on a CPU-only machine is one minute)"
    assert list(empty_cwd.iterdir()) == [], "the doctor wrote into the current folder"
    doc = json.loads(out.read_text())
    rows = {row["name"]: row for row in doc["checks"]}
    assert list(rows) == doctor.NAMES and doc["exit_code"] == 0 and doc["failed"] == []
    for row in rows.values():
        assert row["status"] in ("pass", "skip"), row
        assert row["detail"].strip(), row
        if row["needs"] == "gpu" and NO_GPU:
            assert row["status"] == "skip", row
            assert "GPU" in row["detail"] or "TensorRT" in row["detail"], row
        elif row["status"] == "skip":  # a CPU row may skip only because its package is missing here
            assert "not installed" in row["detail"], row
    # the dev environment has these: they must really have run
    must_pass = ["export-onnx", "export-fp16", "time-onnxruntime", "time-torch"]
    must_pass += ["nvrtc"] if _installed("cuda.bindings") else []
    must_pass += ["time-openvino"] if _installed("openvino") else []
    must_pass += ["video-h264"] if _installed("av") else []
    assert {n: rows[n]["status"] for n in must_pass} == dict.fromkeys(must_pass, "pass")
    if NO_GPU and _installed("cuda.bindings"):
        assert "PTX for compute_87" in rows["nvrtc"]["detail"]
    assert "parity gate passed" in rows["export-onnx"]["detail"]
    assert rows["time-onnxruntime"]["data"]["p50_ms"] > 0
    # the table says the same as the JSON, and the last line says nothing failed
    assert _table_rows(r.stdout) == {n: (row["status"], row["detail"]) for n, row in rows.items()}
    assert r.stdout.strip().splitlines()[-1].startswith("deblur-doctor: all checks passed or skipped")
    for key in ("python", "cpu", "cpu flags", "memory", "gpu", "onnxruntime", "opencv"):
        assert doc["environment"].get(key), key
        assert f"  {key} " in r.stdout


def test_json_on_stdout_and_skips_by_group(empty_cwd):
    r, _ = _run(["--json", "-", "--skip", "export,time,video-h264"], empty_cwd)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # JSON only: no table on stdout
    by = {row["name"]: row for row in doc["checks"]}
    skipped = [n for n in doctor.NAMES if n.startswith(("export-", "time-")) or n == "video-h264"]
    assert all(by[n]["status"] == "skip" and by[n]["detail"] == "skipped by --skip" for n in skipped)
    assert "all checks passed or skipped" in r.stderr.strip().splitlines()[-1]
    assert list(empty_cwd.iterdir()) == []


def test_a_failing_check_exits_1_and_is_named_on_the_last_line(empty_cwd, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00this is not a checkpoint" * 8)
    out = tmp_path / "doctor.json"
    r, _ = _run(["--model", str(bad), "--json", str(out)], empty_cwd)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("deblur-doctor: FAILED export-onnx"), last
    doc = json.loads(out.read_text())
    rows = {row["name"]: row for row in doc["checks"]}
    assert doc["exit_code"] == 1 and "export-onnx" in doc["failed"] and set(doc["failed"]) <= {"export-onnx", "time-torch"}
    assert rows["export-onnx"]["status"] == "fail" and "broken.safetensors" in rows["export-onnx"]["detail"]
    assert rows["export-fp16"]["status"] == "skip" and "export-onnx failed" in rows["export-fp16"]["detail"]
    assert rows["time-onnxruntime"]["status"] == "skip"  # nothing to time: the export made no ONNX
    assert list(empty_cwd.iterdir()) == []


def test_without_torch_the_export_rows_skip_with_the_install_hint(empty_cwd):
    r, wall = _run([], empty_cwd, cmd=[sys.executable, "-c", NO_TORCH])
    print(f"without torch: {wall:.1f} s\n{r.stdout}")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "torch modules loaded: []" in r.stdout
    rows = _table_rows(r.stdout)
    assert rows["export-onnx"] == ("skip", TORCH_HINT)
    assert rows["export-fp16"] == ("skip", TORCH_HINT)
    assert rows["time-torch"] == ("skip", TORCH_HINT)
    for name, (status, detail) in rows.items():
        if name in ("export-onnx", "export-fp16", "time-torch"):
            continue
        gpu_row = next(c for c in doctor.CHECKS if c.name == name).needs == "gpu"
        assert status == ("skip" if gpu_row and NO_GPU else "pass") or "not installed" in detail, (name, status, detail)
    assert rows["time-onnxruntime"][0] == "pass"  # the bundled ONNX runs without torch


@pytest.mark.parametrize("args,words", [
    (["--skip", "nope"], "unknown check(s) nope"),
    (["--runs", "0"], "--runs must be >= 1"),
    (["--model", "missing.pth"], "missing.pth: model not found"),
    (["--json", "."], "cannot write the JSON here"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
], ids=["skip", "runs", "model", "json", "flag"])
def test_bad_arguments_are_one_line_and_exit_2(empty_cwd, args, words):
    r, _ = _run(args, empty_cwd)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("deblur-doctor: error:"), r.stderr
    assert r.stdout == ""


# ------------------------------------------------------------------------- GPU branches, in-process


def _ctx(tmp_path: Path, sm: int) -> doctor.Context:
    return doctor.Context(tmp_path, gpus=[Gpu(0, "stand-in GPU (no real device)", sm, 0)], gpu_reason=None)


@pytest.mark.parametrize("sm,expect", [(90, "CUBIN for sm_90"), (200, "PTX for compute_"), (50, None)],
                         ids=["known-arch", "newer-than-nvrtc", "older-than-nvrtc"])
def test_nvrtc_targets_the_gpu_it_is_given(tmp_path, sm, expect):
    pytest.importorskip("cuda.bindings", reason="cuda-python not installed")
    row = doctor.run_check(next(c for c in doctor.CHECKS if c.name == "nvrtc"), _ctx(tmp_path, sm))
    if expect is None:
        assert row.status == "fail" and "cannot generate code for compute 5.0" in row.detail, row
    else:
        assert row.status == "pass" and expect in row.detail and "4 kernels" in row.detail, row


class CpuStandInPrePost:
    """A stand-in for ``CudaPrePost`` computed by the CPU reference: it checks the doctor's comparison
    (bit patterns, FP16, BGR, padding, the rounding edges), never the GPU. ``post_round_half_up``
    plants the classic kernel bug (roundf instead of rintf) so the check must fail."""

    post_round_half_up = False

    def __init__(self, device: int = 0):
        self.memory: dict[int, np.ndarray] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def _keep(self, a: np.ndarray) -> int:
        self.memory[len(self.memory) + 1] = a
        return len(self.memory)

    def preprocess(self, frame, bgr=True, padded_hw=None, fp16=False):
        from deblur.runtime.prepost import to_tensor

        x = to_tensor(np.ascontiguousarray(frame[..., ::-1] if bgr else frame), 4, size=padded_hw)
        return self._keep(x.astype(np.float16) if fp16 else x)

    def download(self, ptr, shape, dtype):
        return self.memory[ptr].astype(dtype).reshape(shape)

    def upload(self, a, name=""):
        return self._keep(np.array(a))

    def postprocess(self, ptr, h, w, padded_hw=None, fp16=False, bgr=True):
        from deblur.runtime.prepost import to_uint8

        y = self.memory[ptr].astype(np.float32)
        if self.post_round_half_up:
            v = (y[0, :, :h, :w].transpose(1, 2, 0).astype(np.float64) * 127.5 + 127.5).astype(np.float32)
            out = np.floor(np.clip(v, 0, 255) + 0.5).astype(np.uint8)
        else:
            out = to_uint8(y, h, w)
        return out[..., ::-1] if bgr else out


@pytest.mark.parametrize("planted_bug", [False, True], ids=["reference", "round-half-up"])
def test_kernel_check_compares_bit_for_bit(tmp_path, monkeypatch, planted_bug):
    pytest.importorskip("cuda.bindings", reason="cuda-python not installed")
    from deblur.runtime.cuda import prepost_gpu

    stand_in = type("StandIn", (CpuStandInPrePost,), {"post_round_half_up": planted_bug})
    monkeypatch.setattr(prepost_gpu, "CudaPrePost", stand_in)
    row = doctor.run_check(next(c for c in doctor.CHECKS if c.name == "cuda-kernels"), _ctx(tmp_path, 90))
    if planted_bug:
        assert row.status == "fail" and "differ from the CPU reference" in row.detail and "post fp32" in row.detail, row
        assert "pre " not in row.detail  # the pre kernels were right: only post is named
    else:
        assert row.status == "pass" and "16 cases bit-exact" in row.detail, row
