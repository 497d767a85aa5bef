"""deblur-export's publication (#17): all or nothing, no report claiming success beside nothing, SIGTERM
handled like Ctrl-C, staging folders of killed runs removed, and the engine's build command keeps its profile.

Real exports on CPU (a small generator, real ONNX Runtime sessions, the real gate), real renames
and real signals to a real ``deblur-export`` process.
"""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from deblur.export import staging
from deblur.export.cli import main
from deblur.runtime.spec import ModelSpec
from deblur.train.checkpoint import save_generator
from deblur.train.networks import Generator

SPEC = ModelSpec("t", ngf=8, n_blocks=2)
OLD_REPORT = '{"passed": true, "note": "the previous run"}\n'


def _checkpoint(path: Path, spec: ModelSpec = SPEC) -> Path:
    torch.manual_seed(0)
    return save_generator(path, Generator(spec), spec)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "g.pth")


def _staging_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".deblur-export-*"))


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _previous_run(work: Path) -> None:
    """What an earlier export left: the files a new one would replace."""
    work.mkdir(exist_ok=True)
    (work / "g.onnx").write_bytes(b"OLD ONNX")
    (work / "parity.json").write_text(OLD_REPORT)


def _unchanged(work: Path) -> None:
    assert (work / "g.onnx").read_bytes() == b"OLD ONNX"  # the file replaced first is back
    assert (work / "parity.json").read_text() == OLD_REPORT  # no report of this run claims anything
    assert not (work / "parity.md").exists()
    assert _staging_folders(work) == []


# ------------------------------------------------------------------------ all or nothing (defect 13)


def test_folder_in_the_way_publishes_nothing(ckpt, tmp_path, capsys):
    """A later target (g_fp16.onnx) is a folder: refused before the first rename, nothing published."""
    work = tmp_path / "w"
    _previous_run(work)
    (work / "g_fp16.onnx").mkdir()
    rc = main(["--ckpt", str(ckpt), "--fp16", "--workdir", str(work)])
    _unchanged(work)
    assert sorted(p.name for p in work.iterdir()) == ["g.onnx", "g_fp16.onnx", "parity.json"]
    assert (work / "g_fp16.onnx").is_dir() and not list((work / "g_fp16.onnx").iterdir())
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("deblur-export: error:"), err[-1]
    assert "g_fp16.onnx" in err[-1] and "a folder has its name; nothing was published" in err[-1], err[-1]


@pytest.mark.parametrize("failure", ["folder", "disk full"])
def test_rename_failing_midway_is_undone(ckpt, tmp_path, capsys, monkeypatch, failure):
    """The check passes, then the second rename fails for real (another process makes a folder there
    in between) or with ENOSPC: the first rename is undone, the file it replaced put back."""
    work = tmp_path / "w"
    _previous_run(work)
    real_replace = os.replace

    def racing_replace(src, dst, *args, **kwargs):
        if Path(dst) == work / "g_fp16.onnx" and Path(src).parent.name.startswith(".deblur-export-"):
            if failure == "disk full":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
            Path(dst).mkdir(exist_ok=True)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", racing_replace)
    rc = main(["--ckpt", str(ckpt), "--fp16", "--workdir", str(work)])
    _unchanged(work)
    assert not (work / "g_fp16.onnx").is_file()
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and line.startswith("deblur-export: error:") and "nothing was published" in line, line
    if failure == "disk full":
        assert f"disk full writing {work / 'g_fp16.onnx'}" in line


# -------------------------------------------------------- no report claims success (defect 11, export)


def test_no_passing_report_when_publication_fails(ckpt, tmp_path, capsys):
    """The gate passes but publication cannot happen: no parity.json saying "passed" appears."""
    (tmp_path / "g_fp16.onnx").mkdir()
    rc = main(["--ckpt", str(ckpt), "--fp16", "--workdir", str(tmp_path)])
    report = tmp_path / "parity.json"
    assert not report.exists() or json.loads(report.read_text())["passed"] is False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g_fp16.onnx"]
    assert rc == 2 and "nothing was published" in capsys.readouterr().err


# ---------------------------------------------------------- SIGTERM and killed runs (defect 17, export)


def test_sigterm_mid_export_cleans_up_and_exits_130(tmp_path):
    spec = ModelSpec("b", ngf=32, n_blocks=6)  # slow enough to be caught mid-run
    ckpt = _checkpoint(tmp_path / "big.pth", spec)
    work = tmp_path / "w"
    work.mkdir()
    p = subprocess.Popen([sys.executable, "-m", "deblur.export.cli", "--ckpt", str(ckpt), "--fp16", "--workdir", str(work)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(work.glob(".deblur-export-*/*.onnx")) and p.poll() is None:
        time.sleep(0.05)
    assert p.poll() is None, "the export ended before it could be signalled"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, (p.returncode, err)
    assert err.strip().splitlines()[-1] == "deblur-export: interrupted", err
    assert list(work.iterdir()) == []  # no staging folder, no final file


def test_signal_during_publication_waits_until_it_is_done(tmp_path, monkeypatch):
    """SIGTERM (handled as Ctrl-C) between two renames: both finish, then the interrupt is raised."""
    from deblur.runtime.interrupts import sigterm_as_interrupt

    work, stage_dir = tmp_path / "w", tmp_path / "w" / ".deblur-export-1-x"
    stage_dir.mkdir(parents=True)
    files = {}
    for name in ("a.onnx", "b.onnx"):
        (stage_dir / name).write_text(name)
        files[name] = stage_dir / name
    real_replace, sent = os.replace, []

    def replace_then_signal(src, dst, *args, **kwargs):
        real_replace(src, dst, *args, **kwargs)
        if not sent:
            sent.append(dst)
            os.kill(os.getpid(), signal.SIGTERM)  # after the first rename, before the second

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(os, "replace", replace_then_signal)
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        staging.publish(files, work, stage_dir)
    assert sent == [work / "a.onnx"]
    assert (work / "a.onnx").read_text() == "a.onnx" and (work / "b.onnx").read_text() == "b.onnx"
    assert signal.getsignal(signal.SIGTERM) == before


def test_next_run_removes_staging_folders_of_dead_exports(ckpt, tmp_path, caplog):
    dead = tmp_path / f".deblur-export-{_dead_pid()}-k1ll3d"  # a run killed with SIGKILL
    (dead / ".replaced").mkdir(parents=True)
    (dead / "g.onnx").write_bytes(b"half an export")
    running = tmp_path / f".deblur-export-{os.getppid()}-running"  # its owner (our parent) runs
    running.mkdir()
    other = tmp_path / ".deblur-export-notours"  # no owner PID in its name: not ours to judge
    other.mkdir()
    assert main(["--ckpt", str(ckpt), "--workdir", str(tmp_path)]) == 0
    assert _staging_folders(tmp_path) == sorted([running.name, other.name])
    assert {"g.onnx", "parity.json", "parity.md"} <= {p.name for p in tmp_path.iterdir()}


def test_stale_folder_puts_back_a_file_moved_aside(tmp_path):
    """Killed between moving an old file aside and renaming its successor in: the old file goes back
    (where nothing stands; never over a file)."""
    dead = tmp_path / f".deblur-export-{_dead_pid()}-k1ll3d"
    (dead / staging.REPLACED).mkdir(parents=True)
    (dead / staging.REPLACED / "g.onnx").write_bytes(b"OLD ONNX")
    (dead / staging.REPLACED / "g_fp16.onnx").write_bytes(b"OLD FP16")
    (tmp_path / "g_fp16.onnx").write_bytes(b"NEW FP16")
    assert staging.remove_stale(tmp_path) == [dead]
    assert (tmp_path / "g.onnx").read_bytes() == b"OLD ONNX"
    assert (tmp_path / "g_fp16.onnx").read_bytes() == b"NEW FP16"
    assert _staging_folders(tmp_path) == []


# ------------------------------------------------------------ the engine's profile (defect 19, rest)

PROFILE_2 = ["--max-shape", "2x3x720x1280"]
FIXED_N2 = ["--min-shape", "2x3x64x64", "--opt-shape", "2x3x64x64", "--max-shape", "2x3x64x64"]
EXPECTED = {
    "max": "--min-shape 1x3x64x64 --opt-shape 1x3x720x1280 --max-shape 2x3x720x1280 --require-engine",
    "fixed N=2": "--min-shape 2x3x64x64 --opt-shape 2x3x64x64 --max-shape 2x3x64x64 --require-engine",
}


@pytest.mark.parametrize("flags, expected", [(PROFILE_2, EXPECTED["max"]), (FIXED_N2, EXPECTED["fixed N=2"])],
                         ids=["max-shape", "fixed-N2"])
def test_skipped_engine_command_keeps_the_profile(ckpt, tmp_path, capsys, monkeypatch, flags, expected):
    """Printed on stdout (not only in the log) and kept in parity.json, with the user's profile."""
    from deblur.export import tensorrt_build

    monkeypatch.setattr(tensorrt_build, "tensorrt_unavailable_reason", lambda: "no TensorRT in this test")
    assert main(["--ckpt", str(ckpt), "--fp16", "--workdir", str(tmp_path), "--log-level", "WARNING", *flags]) == 0
    command = f"deblur-export --onnx {tmp_path / 'g_fp16.onnx'} --fp16 {expected}"
    out = capsys.readouterr().out
    assert "TensorRT engine: skipped (no TensorRT in this test); on the target run:" in out
    assert command in out, out
    assert json.loads((tmp_path / "parity.json").read_text())["engine_command"] == command


@pytest.mark.parametrize("flags, expected", [(PROFILE_2, EXPECTED["max"]), (FIXED_N2, EXPECTED["fixed N=2"])],
                         ids=["max-shape", "fixed-N2"])
def test_manifest_rebuild_hint_keeps_the_profile(ckpt, tmp_path, monkeypatch, flags, expected):
    """The engine path with the TensorRT stand-in (NOT TensorRT: placeholder bytes, run as the ONNX it
    was built from); the hint a mismatching machine gets rebuilds the same profile."""
    from test_export_cli import use_tensorrt_standin

    from deblur.runtime.contract import check_manifest, read_manifest
    from deblur.runtime.errors import ManifestError

    use_tensorrt_standin(monkeypatch)
    assert main(["--ckpt", str(ckpt), "--fp16", "--workdir", str(tmp_path), "--require-engine", *flags]) == 0
    engine = tmp_path / "g_fp16.engine"
    m = read_manifest(engine)
    with pytest.raises(ManifestError) as e:
        check_manifest(m, engine, tensorrt_version=m.tensorrt_version, compute_capability="0.1")
    assert e.value.line().endswith(f"rebuild on this machine: deblur-export --onnx g_fp16.onnx --fp16 {expected}")
    assert _staging_folders(tmp_path) == []
