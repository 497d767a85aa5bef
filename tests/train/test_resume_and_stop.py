"""#17 defects 16 and 17 (train): ``--resume`` refusals that keep the files, and SIGTERM handled like Ctrl-C.

Checkpoints are real: a tiny run of the real trainer (deblurgan-pico, 32 px crops, L1) writes them.
"""
import signal
import subprocess
import sys
import time

import pytest

from deblur.train.checkpoint import load_training_state
from deblur.train.train_cli import main

TINY = ["--set", "spec=deblurgan-pico", "--crop", "32", "--set", "critic_steps=2", "--workers", "0", "--content", "l1",
        "--set", "log_every=1", "--set", "tensorboard=false"]


@pytest.fixture(scope="module")
def photos(small_photos):
    """Four small real photos (Kodak24, downscaled to 64 px)."""
    return small_photos(4, 64)


def _run(photos, out, steps, *extra):
    return main(["--sharp", str(photos), "--out", str(out), "--steps", str(steps), *TINY, *extra])


def _snapshot(out):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.rglob("*")) if p.is_file()}


def test_resume_with_every_checkpoint_damaged_refuses_and_keeps_them(tmp_path, photos, capsys):
    out = tmp_path / "r"
    assert _run(photos, out, 2) == 0
    ckpts = sorted(out.glob("ckpt_*.pth"))
    assert [p.name for p in ckpts] == ["ckpt_00000000.pth", "ckpt_00000002.pth"]
    ckpts[0].write_bytes(b"")  # a save that never got its bytes
    ckpts[1].write_bytes(ckpts[1].read_bytes()[:5000])  # a copy cut short
    before = _snapshot(out)
    capsys.readouterr()
    assert _run(photos, out, 4, "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(out) in err[0] and "ckpt_00000000.pth" in err[0] and "ckpt_00000002.pth" in err[0], err
    assert "damaged" in err[0] and "Traceback" not in err[0]
    assert _snapshot(out) == before  # nothing deleted, rewritten or added (no new step-0 checkpoint)


def test_resume_with_one_damaged_checkpoint_uses_the_older_one(tmp_path, photos, capsys):
    out = tmp_path / "r"
    assert _run(photos, out, 2) == 0
    (out / "ckpt_00000002.pth").write_bytes(b"")
    capsys.readouterr()
    assert _run(photos, out, 3, "--resume") == 0
    err = capsys.readouterr().err
    assert "skipping damaged checkpoint" in err and "ckpt_00000000.pth at step 0" in err
    assert load_training_state(out / "ckpt_00000003.pth")["step"] == 3


def test_resume_with_steps_behind_the_checkpoint_refuses(tmp_path, photos, capsys):
    out = tmp_path / "r"
    assert _run(photos, out, 4) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert _run(photos, out, 2, "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "checkpoint is at step 4" in err[0] and "--steps is 2" in err[0] and "--steps > 4" in err[0], err
    assert _snapshot(out) == before  # config.yaml keeps steps 4; no summary or metrics rewritten
    assert _run(photos, out, 5, "--resume") == 0  # the suggested fix works
    assert load_training_state(sorted(out.glob("ckpt_*.pth"))[-1])["step"] == 5


def test_sigterm_saves_a_resumable_checkpoint_and_exits_130(tmp_path, photos, capsys):
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "deblur.train.train_cli", "--sharp", str(photos), "--steps", "500", "--out", str(out), *TINY]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.1)  # the first step is logged
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err[-2000:]
    assert "SIGTERM" in err and "interrupted at step" in err and "Traceback" not in err
    state = load_training_state(sorted(out.glob("ckpt_*.pth"))[-1])
    assert 1 <= state["step"] < 500
    capsys.readouterr()
    assert _run(photos, out, state["step"] + 1, "--resume") == 0
    assert f"at step {state['step']}" in capsys.readouterr().err
    assert load_training_state(sorted(out.glob("ckpt_*.pth"))[-1])["step"] == state["step"] + 1
