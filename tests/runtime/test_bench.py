"""deblur-bench end to end on a tiny checkpoint: torch vs ONNX Runtime (exported on the fly), JSON, errors;
and its pieces (runtime/bench.py) and the timing helpers (runtime/timing.py)."""
import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from deblur.runtime import bench, bench_cli, timing
from deblur.runtime.spec import ModelSpec
from deblur.train.checkpoint import save_generator
from deblur.train.networks import Generator

SPEC = ModelSpec("t", ngf=4, n_blocks=1)
KEYS = {"backend", "size", "p50_ms", "p99_ms", "fps"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    return save_generator(tmp_path_factory.mktemp("bench") / "g.pth", Generator(SPEC), SPEC)


def test_checkpoint_compares_torch_and_onnxruntime(ckpt, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = bench_cli.main(["--model", str(ckpt), "--sizes", "64x96,36x52", "--runs", "3", "--warmup", "1", "--json", str(out),
                         "--backends", "torch,onnxruntime,tensorrt", "--no-peak"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rows = json.loads(out.read_text())
    assert all(KEYS <= r.keys() for r in rows)
    by = {(r["backend"], r["size"]): r for r in rows}
    for size in ("64x96", "36x52"):
        t, o = by[("torch", size)], by[("onnxruntime", size)]
        assert t["p50_ms"] > 0 and t["p99_ms"] >= t["p50_ms"] and t["fps"] == pytest.approx(1e3 / t["p50_ms"])
        assert o["vs_torch"] == pytest.approx(t["p50_ms"] / o["p50_ms"])
        assert o["max_abs_diff"] < 1e-3 and o["psnr_db"] > 60  # FP32 ONNX vs torch on the real photo
        assert t["max_abs_diff"] == 0 and t["psnr_db"] is None  # inf in JSON is null
        assert by[("pre (cpu)", size)]["p50_ms"] > 0 and by[("post (cpu)", size)]["p50_ms"] > 0
        assert o["e2e_p50_ms"] > o["p50_ms"]
        assert by[("tensorrt", size)]["p50_ms"] is None and by[("tensorrt", size)]["skipped"]
    assert by[("torch", "36x52")]["input_shape"] == [1, 3, 36, 52]  # multiple of 4 already
    table = captured.out
    assert table.startswith("| backend | precision | size | p50 ms") and "| onnxruntime | fp32 | 64x96 |" in table
    assert "skipped:" in table and "| pre (cpu) |" in table


def test_spec_list_times_untrained_models_one_table_each(tmp_path, capsys):
    """--spec: choose a spec by speed before training one (weights do not change the time)."""
    out = tmp_path / "specs.json"
    rc = bench_cli.main(["--spec", "deblurgan-pico,deblurgan-pico-d3", "--backends", "torch,onnxruntime", "--sizes", "48x64",
                         "--runs", "2", "--warmup", "1", "--json", str(out), "--no-peak"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rows = json.loads(out.read_text())
    models = {r["model"] for r in rows}
    assert models == {"deblurgan-pico (untrained)", "deblurgan-pico-d3 (untrained)"}
    for m in models:
        ort_row = next(r for r in rows if r["model"] == m and r["backend"] == "onnxruntime")
        assert ort_row["p50_ms"] > 0 and ort_row["max_abs_diff"] < 1e-3
    assert "deblurgan-pico-d3 (untrained):" in captured.out and captured.out.count("\n| backend | precision | size |") == 2
    assert "| vs deblurgan-pico (untrained) |" in captured.out  # the two specs' ratio, from the same run


def test_two_bundled_models_in_one_run_with_their_ratio(capsys):
    """--model twice: the new default against the old one (pico) in the same run, as a speed budget is stated."""
    rc = bench_cli.main(["--model", "pico", "--model", "default", "--backends", "onnxruntime", "--sizes", "48x64",
                         "--runs", "2", "--warmup", "1", "--no-peak"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "default:" in out and "pico:" in out and "| model | backend | precision | size | p50 ms | vs pico |" in out
    ratios = out[out.index("| model | backend |"):].splitlines()[2:]
    assert [line.split("|")[1:3] for line in ratios] == [[" default ", " onnxruntime "]]  # no pre/post rows
    assert float(ratios[0].split("|")[-2].strip().rstrip("x")) > 0
    assert bench_cli.main(["--model", "default", "--model", "pico", "--engine", "g.engine"]) == 2
    assert "give one --model with it" in capsys.readouterr().err


def test_unknown_spec_is_one_line(capsys):
    assert bench_cli.main(["--spec", "deblurgan-huge", "--sizes", "48x64"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model spec 'deblurgan-huge'" in err[0]


def test_onnx_model_runs_onnxruntime_only(ckpt, tmp_path, capsys):
    from deblur.export.onnx_export import export_onnx
    from deblur.train.checkpoint import load_generator

    g, _ = load_generator(ckpt)
    path = export_onnx(g, tmp_path / "g.onnx")
    rc = bench_cli.main(["--model", str(path), "--sizes", "64x96", "--runs", "2", "--backends", "torch,onnxruntime",
                         "--json", str(tmp_path / "b.json"), "--no-peak"])
    assert rc == 0, capsys.readouterr().err
    rows = {r["backend"]: r for r in json.loads((tmp_path / "b.json").read_text())}
    assert rows["onnxruntime"]["p50_ms"] > 0 and "vs_torch" not in rows["onnxruntime"]
    assert "checkpoint" in rows["torch"]["skipped"]


@pytest.mark.parametrize("argv, needle", [
    (["--model", "missing.pth"], "model not found"),
    (["--sizes", "64by96"], "bad --sizes"),
    (["--sizes", "0x96"], "bad --sizes"),
    (["--backends", "torch,cuda"], "unknown backend"),
    (["--runs", "0"], "--runs must be >= 1"),
])
def test_bad_input_is_one_line_exit_2(ckpt, argv, needle, capsys):
    args = ["--model", str(ckpt), *argv] if argv[0] != "--model" else argv
    rc = bench_cli.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("deblur-bench: error:") and needle in err[0], err


def test_time_step_and_stats():
    ms = timing.time_step(lambda: sum(range(1000)), runs=5, warmup=2)
    assert len(ms) == 5 and all(m >= 0 for m in ms)
    s = timing.stats([1.0, 2.0, 3.0])
    assert s["p50_ms"] == 2.0 and s["fps"] == 500.0 and s["p99_ms"] == pytest.approx(2.98)


def test_pre_post_round_trip():
    frame = bench.photo(36, 52)
    assert frame.shape == (36, 52, 3) and frame.dtype == np.uint8
    x = bench.pre(frame, 8, 16)
    assert x.shape == (1, 3, 40, 56)
    assert np.array_equal(bench.post(x, 36, 52), frame)  # BGR in, BGR out, exact at 8 bits


def test_a_size_a_backend_cannot_run_is_a_row_and_exit_1(ckpt, tmp_path, capsys):
    """A static-shape ONNX at another size: the row says why, the other size still runs."""
    from deblur.export.onnx_export import export_onnx
    from deblur.train.checkpoint import load_generator

    g, _ = load_generator(ckpt)
    path = export_onnx(g, tmp_path / "s.onnx", static_hw=(64, 96))
    rc = bench_cli.main(["--model", str(path), "--sizes", "64x96,32x48", "--runs", "2", "--backends", "onnxruntime",
                         "--json", str(tmp_path / "b.json"), "--no-peak"])
    err = capsys.readouterr().err
    assert rc == 1 and f"1 run(s) failed: {path}: onnxruntime at 32x48" in err
    rows = {r["size"]: r for r in json.loads((tmp_path / "b.json").read_text()) if r["backend"] == "onnxruntime"}
    assert rows["64x96"]["p50_ms"] > 0
    assert rows["32x48"]["p50_ms"] is None and rows["32x48"]["error"].startswith("failed at this size")


def test_bench_modules_import_no_torch_train_or_export():
    """The runtime stays the base layer: deblur-bench imports torch, deblur.train and deblur.export only when a run needs them."""
    import subprocess
    import sys

    code = ("import sys, deblur.runtime.bench_cli, deblur.runtime.timing; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith(('deblur.train', 'deblur.export'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_openvino_beside_onnxruntime_with_gate_gmacs_and_peak(ckpt, tmp_path, capsys):
    """OpenVINO timed in the same run (the ONNX exported from the checkpoint), judged by the gate's bounds against
    torch, with achieved GMAC/s and the share of the peak the probes measured in this run."""
    pytest.importorskip("openvino", reason="OpenVINO not installed (pip install 'deblur-edge[openvino]')")
    from deblur.runtime.macs import macs

    out = tmp_path / "b.json"
    rc = bench_cli.main(["--model", str(ckpt), "--sizes", "64x96", "--runs", "2", "--warmup", "1",
                         "--backends", "torch,onnxruntime,openvino", "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rows = json.loads(out.read_text())
    peaks = [r for r in rows if r["kind"] == "peak"]
    assert {"fp32"} <= {p["precision"] for p in peaks} and all(p["gmacs"] > 0 for p in peaks)
    best = max(p["gmacs"] for p in peaks if p["precision"] == "fp32")
    by = {r["backend"]: r for r in rows if r["kind"] == "model"}
    for name in ("torch", "onnxruntime", "openvino"):
        r = by[name]
        assert r["gmacs"] == pytest.approx(macs(SPEC, 64, 96) / 1e9 / (r["p50_ms"] / 1e3))
        if r["precision"] == "fp32":
            assert r["peak_share"] == pytest.approx(r["gmacs"] / best)
    ov = by["openvino"]
    assert ov["precision"] in ("fp32", "bf16", "fp16") and ov["gate"] == "pass" and ov["parity_ref"] == "torch"
    assert ov["vs_onnxruntime"] == pytest.approx(by["onnxruntime"]["p50_ms"] / ov["p50_ms"])
    assert captured.out.startswith("| peak probe | precision | GMAC/s | when |") and "| openvino |" in captured.out


def test_peaks_take_the_best_probe_per_precision():
    from deblur.runtime.peak import gemm_probe, peaks

    g = gemm_probe()
    assert g["precision"] == "fp32" and g["gmacs"] > 0.1
    assert peaks([{"precision": "fp32", "gmacs": 3.0}, {"precision": "fp32", "gmacs": 5.0}, {"precision": "bf16", "gmacs": 9.0}]) \
        == {"fp32": 5.0, "bf16": 9.0}
