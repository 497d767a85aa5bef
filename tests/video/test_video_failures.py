"""How the tool ends when something breaks: a model that fails mid-run, a file read that stalls, a
camera unplugged while streaming, and SIGINT while an open with the default 5 s deadline is blocked."""
from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest
from video_helpers import assert_no_traceback, read_all, run_cli, write_clip

from deblur.video.pipeline import Pipeline, PipelineOptions, Sinks
from deblur.video.readers import DeviceLost, StreamTimeout
from deblur.video.source import SourceOptions, State, VideoSource
from deblur.video.uri import SourceURI

torch = pytest.importorskip("torch")


class ScriptedReader:
    """A reader that delivers ``n`` frames and then raises ``error``: the part of a real device or
    file that cannot be provoked on demand here (a file read that stalls, a camera unplugged)."""

    opened = 0

    def __init__(self, n: int, error: Exception):
        type(self).opened += 1
        self.n, self.error, self.k = n, error, 0
        self.width, self.height, self.fps, self.codec, self.describe, self.skipped = 32, 24, 25.0, "test", "scripted", 0

    def read(self):
        if self.k >= self.n:
            raise self.error
        self.k += 1
        return np.zeros((24, 32, 3), np.uint8), None

    def close(self):
        pass


def test_a_file_read_that_stalls_fails_and_is_never_reopened():
    ScriptedReader.opened = 0
    uri = SourceURI("file", "/nonexistent.mkv", "clip.mkv")
    src = VideoSource(uri, SourceOptions(), opener=lambda u, o: ScriptedReader(5, StreamTimeout("no frame within 2 s")))
    assert len(read_all(src, timeout=10)) == 5
    assert src.state == State.FAILED and ScriptedReader.opened == 1  # reopening would replay frames 0..4


def test_a_camera_unplugged_while_streaming_fails_with_exit_code_1():
    uri = SourceURI("camera", "/dev/video99", "99")
    src = VideoSource(uri, SourceOptions(), opener=lambda u, o: ScriptedReader(3, DeviceLost("camera /dev/video99 is gone")))
    assert 1 <= len(read_all(src, timeout=10)) <= 3 and src.delivered == 3  # live: keep-newest may drop some before we read
    assert src.state == State.FAILED and isinstance(src.error, DeviceLost) and src.error.exit_code == 1
    assert src.reconnects == 0  # never re-bound by index


@pytest.mark.parametrize("workers", [1, 2])
def test_a_model_that_fails_mid_run_ends_the_pipeline(tmp_path, workers):
    clip = tmp_path / "c.mkv"
    write_clip(clip, 40)

    class Failing:
        timings: dict = {}

        def __init__(self):
            self.calls = 0

        def __call__(self, img):
            self.calls += 1
            if self.calls == 4:
                raise RuntimeError("out of memory (simulated)")
            return img

    from deblur.video.uri import parse_source

    pipe = Pipeline(VideoSource(parse_source(str(clip))), [Failing() for _ in range(workers)], Sinks(),
                    PipelineOptions(stats_every=0), threading.Event())
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="simulated"):
        pipe.run()
    assert time.monotonic() - t0 < 10 and not pipe.alive


def test_cli_model_that_cannot_take_the_frames_is_one_line(tmp_path):
    """A real failure: a static 64x96 ONNX with tiling off gets 160x120 frames."""
    from deblur.export.onnx_export import export_onnx
    from deblur.runtime.spec import ModelSpec
    from deblur.train.networks import Generator

    spec = ModelSpec("t", ngf=4, n_blocks=1)
    onnx_path = export_onnx(Generator(spec).eval(), tmp_path / "s.onnx", static_hw=(64, 96))
    clip = tmp_path / "c.mkv"
    write_clip(clip, 10)
    r = run_cli(["--input", clip, "--headless", "--model", onnx_path, "--tile", "0", "--workers", "2"], cwd=tmp_path, timeout=60)
    assert_no_traceback(r.stdout, r.stderr)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("deblur-video: error:")]
    assert len(errors) == 1 and "does not fit" in errors[0], r.stderr


def test_sigint_during_an_open_with_the_default_deadline_exits_within_3_s(silent_server, spawn_cli, tmp_path):
    p = spawn_cli("--input", silent_server.url("/cam"), "--headless", "--stats-every", "0", cwd=tmp_path)
    p.wait_for(r"CONNECTING$", timeout=30, which="err")
    time.sleep(1.0)  # inside the 5 s open
    p.stop_with(signal.SIGINT, 130)
    assert_no_traceback(p.text())
