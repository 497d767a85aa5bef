"""Every tool on a full disk, a read-only file system and odd output paths (#17 defects 11 and 12).

Real file systems: a small tmpfs (full after a few hundred kB) or a read-only one, mounted in a
private mount namespace (``mountns``). What users expect: one line naming the path and what is
wrong ("disk full writing X"), a non-zero exit, no traceback, and nothing that claims success (no
output under its final name, no report saying "passed").
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mountns
import pytest

BIN = Path(sys.executable).parent
SAMPLES = Path(__file__).resolve().parents[2] / "train" / "samples" / "sharp"
TRAIN = ["--sharp", str(SAMPLES), "--steps", "3", "--set", "spec=deblurgan-pico", "--crop", "32", "--set", "critic_steps=2",
         "--workers", "0", "--set", "val_limit=2", "--set", "val_crop=32", "--content", "l1", "--set", "tensorboard=false"]
VIDEO = ["--demo", "--headless", "--max-frames", "60", "--log-level", "WARNING"]
BENCH = ["--model", "default", "--backends", "onnxruntime", "--runs", "2", "--warmup", "1", "--sizes", "64x64", "--no-peak"]

needs_ns = pytest.mark.skipif(mountns.available() is not None, reason=str(mountns.available()))


def _one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    err = r.stderr.strip().splitlines()
    assert r.returncode not in (0, None), r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr[-2000:]
    last = err[-1]
    for w in words:
        assert w in last, f"{w!r} not in the error line: {last}"
    return last


def _tool(name: str) -> str:
    return str(BIN / name)


FULL = [  # (tool, args with {d} for the tmpfs folder, tmpfs size, what must not exist afterwards)
    ("deblur-video", [*VIDEO, "--output-save", "{d}/rec.mkv"], "300k", ["rec.mkv"]),
    ("deblur-video", [*VIDEO, "--stats-json", "{d}/stats.json"], "4k", ["stats.json"]),
    ("deblur-train", [*TRAIN, "--out", "{d}/run"], "100k", ["run/g.pth"]),
    ("deblur-export", ["--ckpt", "default", "--workdir", "{d}"], "100k", ["default.onnx"]),
    ("deblur-bench", [*BENCH, "--json", "{d}/bench.json"], "4k", ["bench.json"]),
]


@needs_ns
@pytest.mark.parametrize("tool,args,size,absent", FULL, ids=[f"{t}-{a[-1].split('/')[-1]}" for t, a, _, _ in FULL])
def test_disk_full_is_one_line_and_nothing_claims_success(tmp_path, tool, args, size, absent):
    d = tmp_path / "disk"
    d.mkdir()
    prefill = 4096 if size == "4k" else 0  # outputs written only at the end: a disk that is already full
    r = mountns.run([_tool(tool), *[a.format(d=d) for a in args]], d, size, prefill=prefill)
    line = _one_line_error(r, "disk full")
    assert str(d) in line
    # the tmpfs is gone with the namespace: what it held cannot be inspected afterwards, so the tools
    # are checked from inside (below, export's reports); here: nothing was published on the real folder
    assert not any((d / a).exists() for a in absent)


@needs_ns
def test_export_on_a_full_disk_leaves_no_report_saying_passed(tmp_path):
    """Export's reports are looked at inside the namespace, before the tmpfs goes away."""
    d = tmp_path / "disk"
    d.mkdir()
    script = (f'{_tool("deblur-export")} --ckpt default --workdir {d} 2>{d}/../err.txt; rc=$?; '
              f'cat {d}/parity.json 2>/dev/null; ls -a {d} >{d}/../ls.txt 2>&1; exit $rc')
    r = mountns.run(["sh", "-c", script], d, "100k")
    assert r.returncode != 0
    if r.stdout.strip():
        assert json.loads(r.stdout).get("passed") is not True, r.stdout
    assert "disk full" in (tmp_path / "err.txt").read_text().strip().splitlines()[-1]


READ_ONLY = [
    ("deblur-video", [*VIDEO, "--output-save", "{d}/rec.mkv"]),
    ("deblur-video", [*VIDEO, "--stats-json", "{d}/stats.json"]),
    ("deblur-train", [*TRAIN, "--out", "{d}/run"]),
    ("deblur-export", ["--ckpt", "default", "--workdir", "{d}"]),
    ("deblur-bench", [*BENCH, "--json", "{d}/bench.json"]),
]


@needs_ns
@pytest.mark.parametrize("tool,args", READ_ONLY, ids=[f"{t}-{a[-1].split('/')[-1]}" for t, a in READ_ONLY])
def test_read_only_file_system_even_as_root(tmp_path, tool, args):
    """Root ignores permission bits, so a chmod'ed folder proves nothing in CI: a read-only mount does."""
    d = tmp_path / "ro"
    d.mkdir()
    r = mountns.run([_tool(tool), *[a.format(d=d) for a in args]], d, "1m", ro=True)
    _one_line_error(r, str(d))


ODD = [
    ("deblur-train", [*TRAIN, "--out", "/proc/x"], "/proc/x"),
    ("deblur-train", [*TRAIN, "--out", "{file}"], "{file}"),
    ("deblur-export", ["--ckpt", "default", "--workdir", "/proc/x"], "/proc/x"),
    ("deblur-export", ["--ckpt", "default", "--workdir", "{file}"], "{file}"),
    ("deblur-video", [*VIDEO, "--output-save", "/proc/x/rec.mkv"], "/proc/x"),
    ("deblur-video", [*VIDEO, "--stats-json", "{dir}"], "{dir}"),
    ("deblur-bench", [*BENCH, "--json", "{dir}"], "{dir}"),
    ("deblur-bench", [*BENCH, "--json", "/proc/x/b.json"], "/proc/x"),
]


@pytest.mark.parametrize("tool,args,named", ODD, ids=[f"{t}-{a[-1]}" for t, a, _ in ODD])
def test_odd_output_paths(tmp_path, tool, args, named):
    existing = tmp_path / "a_file"
    existing.write_text("keep me\n")
    sub = {"file": str(existing), "dir": str(tmp_path)}
    r = subprocess.run([_tool(tool), *[a.format(**sub) for a in args]], capture_output=True, text=True, timeout=300)
    _one_line_error(r, named.format(**sub))
    assert existing.read_text() == "keep me\n"
