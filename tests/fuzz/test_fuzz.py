"""The decoders that read users' files, on the fuzz seeds, the saved findings, and (slow) under atheris.

Default suite: every seed (tests/fuzz/corpus/<target>/) and every saved finding
(tests/fuzz/regressions/<target>/) through its target, which asserts the contract: a valid result
or a typed, one-line ``DeblurError``. Slow suite: each target fuzzed for a bounded time in a
subprocess (``atheris.Fuzz()`` exits); any finding fails the test and leaves its input in tmp_path.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from targets import TARGETS  # noqa: E402

DICTS = {"contract": "json.dict", "manifest": "json.dict", "config": "yaml.dict"}
SLOW_SECONDS = int(os.environ.get("DEBLUR_FUZZ_SECONDS", "60"))


def _cases(folder: str) -> list:
    cases = []
    for target in sorted(TARGETS):
        d = HERE / folder / target
        if d.is_dir():
            cases += [pytest.param(target, p, id=f"{target}/{p.name}") for p in sorted(d.iterdir()) if p.is_file()]
    return cases


def test_every_target_has_seeds() -> None:
    """A target without seeds would fuzz from empty input only; make_corpus.py writes them all."""
    empty = [t for t in TARGETS if not any((HERE / "corpus" / t).glob("*"))]
    assert not empty, f"no seed corpus for {empty}: run tests/fuzz/make_corpus.py"
    total = sum(p.stat().st_size for p in (HERE / "corpus").rglob("*") if p.is_file())
    assert total < 300_000, f"seed corpus is {total} bytes; keep it small"


@pytest.mark.parametrize(("target", "path"), _cases("corpus"))
def test_seed(target: str, path: Path) -> None:
    TARGETS[target](path.read_bytes())


@pytest.mark.parametrize(("target", "path"), _cases("regressions"))
def test_regression(target: str, path: Path) -> None:
    """An input that once broke the contract: it must now give a result or a typed one-line error."""
    TARGETS[target](path.read_bytes())


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz(target: str, tmp_path: Path) -> None:
    """libFuzzer via atheris for DEBLUR_FUZZ_SECONDS (default 60) on the seeds; fails on any finding."""
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed (pip install atheris; it is in the dev dependency group)")
    work = tmp_path / "corpus"
    work.mkdir()
    cmd = [sys.executable, str(HERE / "run_fuzz.py"), target, str(work), str(HERE / "corpus" / target),
           f"-max_total_time={SLOW_SECONDS}", "-timeout=25", "-rss_limit_mb=4096",
           f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"]
    if target in DICTS:
        cmd.append(f"-dict={HERE / 'dicts' / DICTS[target]}")
    if (HERE / "regressions" / target).is_dir():
        cmd.append(str(HERE / "regressions" / target))
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=SLOW_SECONDS + 300,
                         env={**os.environ, "OPENCV_LOG_LEVEL": "SILENT"})
    log = run.stdout + run.stderr
    done = re.findall(r"#(\d+)\s+DONE\s+cov: (\d+) ft: (\d+)", log)
    runs = re.findall(r"stat::number_of_executed_units: (\d+)", log)
    print(f"{target}: {runs[-1] if runs else '?'} executions; "
          + (f"cov {done[-1][1]} ft {done[-1][2]}" if done else "no DONE line"))
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-")))
    assert run.returncode == 0 and not crashes, (
        f"fuzzing {target} found {crashes or 'a failure'} in {tmp_path} (exit {run.returncode}); keep it in "
        f"tests/fuzz/regressions/{target}/ and fix the decoder:\n{log[-4000:]}")


def test_png_with_a_huge_chunk_length_allocates_nothing() -> None:
    """regressions/image/png_203_bytes_allocates_4gb: its IEND claims 4 GiB; OpenCV 5.1 allocated (and
    touched) that much before returning None, an out-of-memory kill on an 8 GB Jetson. Peak RSS (VmHWM: ru_maxrss
    starts from the forking parent's), in a fresh process, must stay that of an import."""
    code = ("import re, sys; from deblur.runtime.images import read_rgb; assert read_rgb(sys.argv[1]) is None; "
            "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))")  # not ru_maxrss: see PEAK
    path = HERE / "regressions" / "image" / "png_203_bytes_allocates_4gb"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120, check=True)
    assert int(out.stdout.strip()) < 1 << 20, f"peak RSS {int(out.stdout) >> 10} MiB"  # KiB: under 1 GiB
