"""Bad input: one clear line and exit code 2, never a traceback; no display: say so and go on headless."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from video_helpers import assert_no_traceback, cli_env, decode_frames, run_cli, summary, write_clip

pytest.importorskip("av", reason="the CLI reads files through PyAV (pip install av)")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    p = tmp_path_factory.mktemp("cli") / "clip.mkv"
    write_clip(p, 10)
    return p


def assert_one_clear_error(r, *words: str, hint: bool = True) -> str:
    assert r.returncode == 2, f"rc {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert_no_traceback(r.stdout, r.stderr)
    errors = [line for line in r.stderr.splitlines() if line.startswith("deblur-video: error: ")]
    assert len(errors) == 1, r.stderr
    for w in words:
        assert w in errors[0], errors[0]
    if hint:
        assert ";" in errors[0]  # the message, then what to do
    return errors[0]


def test_missing_file(tmp_path):
    r = run_cli(["--input", tmp_path / "nope.mp4", "--headless"], cwd=tmp_path)
    assert_one_clear_error(r, "nope.mp4", "not found")
    assert r.stderr.strip().count("\n") == 0  # found before anything else starts: the only line


@pytest.mark.parametrize("name", ["out.avi", "out.txt", "out"])
def test_unsupported_recording_suffix(clip, tmp_path, name):
    r = run_cli(["--input", clip, "--headless", "--output-save", tmp_path / name], cwd=tmp_path)
    line = assert_one_clear_error(r, "cannot record to", ".mkv")
    assert not (tmp_path / name).exists()
    assert "suffix-less" in line if name == "out" else Path(name).suffix in line


def test_camera_that_does_not_exist(tmp_path):
    if os.path.exists("/dev/video9"):
        pytest.skip("/dev/video9 exists on this machine")
    r = run_cli(["--camera", "9", "--headless"], cwd=tmp_path, timeout=30)
    assert_one_clear_error(r, "/dev/video9")
    assert "FAILED" in r.stderr and "RECONNECTING" not in r.stderr  # a missing device is not retried


@pytest.mark.parametrize("name, content, words", [
    ("movie.mp4", b"just some text, not a video\n" * 100, ["cannot open as video"]),
    ("empty.mkv", b"", []),
], ids=["text-file-renamed-mp4", "empty-file"])
def test_not_a_video(tmp_path, name, content, words):
    fake = tmp_path / name
    fake.write_bytes(content)
    r = run_cli(["--input", fake, "--headless"], cwd=tmp_path, timeout=30)
    assert_one_clear_error(r, name, *words)


@pytest.mark.parametrize("args, words, hint", [
    (["--input", "bogus://cam"], ["unknown source scheme"], True),
    (["--input", "synthetic://demo?fps=0"], ["bad fps"], True),
    (["--input", "csi://front"], ["bad CSI camera"], True),
    (["--input", "rtsp://"], ["no host"], True),
    (["--demo", "--max-frames", "0"], ["--max-frames must be at least 1"], False),
    (["--demo", "--input-width", "0"], ["--input-width"], False),
    (["--demo", "--open-timeout", "0"], ["--open-timeout", "> 0"], False),
    (["--demo", "--tile", "big"], ["bad --tile"], True),
    (["--demo", "--model", "/no/such/model.onnx"], ["model not found"], True),
])
def test_bad_values(tmp_path, args, words, hint):
    r = run_cli([*args, "--headless"], cwd=tmp_path, timeout=30)
    assert_one_clear_error(r, *words, hint=hint)


def test_recording_to_an_unusable_place(clip, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    r = run_cli(["--input", clip, "--headless", "--output-save", blocker / "sub" / "out.mkv"], cwd=tmp_path)
    assert_one_clear_error(r, "out.mkv")


def test_codec_the_container_cannot_hold(clip, tmp_path):
    r = run_cli(["--input", clip, "--headless", "--output-save", tmp_path / "o.mov", "--output-codec", "ffv1"],
                cwd=tmp_path)
    assert_one_clear_error(r, "ffv1", "o.mov")


def test_argparse_errors_are_exit_2(tmp_path):
    r = run_cli(["--headless"], cwd=tmp_path)  # no source at all
    assert r.returncode == 2 and "one of the arguments" in r.stderr
    assert_no_traceback(r.stderr)


def test_no_display_continues_headless(clip, tmp_path):
    env = {k: v for k, v in cli_env().items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = tmp_path / "nowin.mkv"
    r = run_cli(["--input", clip, "--output-save", out], cwd=tmp_path, env=env)  # no --headless
    assert r.returncode == 0, r.stderr
    assert_no_traceback(r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if "no window" in line]
    assert len(lines) == 1, r.stderr  # said once
    assert "continuing headless" in lines[0]
    assert "no display" in lines[0] or "no GUI" in lines[0]
    assert summary(r.stdout)["out"] == 10
    assert len(decode_frames(out)) == 10


@pytest.mark.parametrize("camera, words", [
    ("/dev/null", "is not a video device (a mem device)"),
    ("FILE", "is not a capture device"),
])
def test_a_camera_path_that_cannot_be_a_camera_fails_at_once(tmp_path, camera, words):
    """#17 defect 10: `--camera /dev/null` (or a regular file) reconnected for ever with OpenCV warnings."""
    import time

    if camera == "FILE":
        camera = tmp_path / "not_a_camera"
        camera.write_bytes(b"x")
    t0 = time.monotonic()
    r = run_cli(["--camera", camera, "--headless"], cwd=tmp_path, timeout=30)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and words in err[0] and str(camera) in err[0], err
    assert time.monotonic() - t0 < 20


def test_a_recording_into_a_folder_that_does_not_exist_is_refused(tmp_path):
    """#17 defect 22: `--output-save /nonexistent/dir/x.mkv` created the folders (anywhere a typo pointed)."""
    target = tmp_path / "no" / "such" / "out.mkv"
    r = run_cli(["--demo", "--headless", "--output-save", target], cwd=tmp_path, timeout=60)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "the folder for the recording does not exist" in err[0] and "mkdir -p" in err[0], err
    assert not (tmp_path / "no").exists()
