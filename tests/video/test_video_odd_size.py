"""Odd-size frames recorded as H.264 (#17 defect 22b): 4:2:0 (yuv420p), which every player decodes, padded
by one edge-repeated column/row, said once in the log; never a silent H.264 4:4:4 that many players refuse."""
from __future__ import annotations

import numpy as np
import pytest
from video_helpers import assert_no_traceback, decode_frames, frame_index, run_cli, summary, write_clip

av = pytest.importorskip("av", reason="recordings are written and read through PyAV (pip install av)")
pytest.importorskip("onnxruntime", reason="the CLI runs the bundled default model")

N = 12


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_an_odd_size_video_is_recorded_as_yuv420p_padded_by_one_pixel(tmp_path, suffix):
    clip = tmp_path / "odd.mkv"
    write_clip(clip, N, w=161, h=121)  # a real odd-size video file (FFV1)
    rec = tmp_path / f"out{suffix}"
    r = run_cli(["--input", clip, "--headless", "--stats-every", "0", "--output-save", rec], cwd=tmp_path, timeout=120)
    assert_no_traceback(r.stdout, r.stderr)
    assert r.returncode == 0, r.stderr
    assert summary(r.stdout)["out"] == N
    with av.open(str(rec)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.name, cc.pix_fmt, cc.width, cc.height) == ("h264", "yuv420p", 162, 122)
    frames = decode_frames(rec)
    assert len(frames) == N
    assert [frame_index(f[:121, :161]) for f in frames] == list(range(N))
    for f in frames:  # the added column and row repeat the edge (up to the codec's error)
        assert np.abs(f[:, 161].astype(int) - f[:, 160].astype(int)).mean() < 6
        assert np.abs(f[121].astype(int) - f[120].astype(int)).mean() < 6
    padded = [line for line in r.stderr.splitlines() if "padded to 162x122" in line]
    assert len(padded) == 1, r.stderr
