"""The Recorder on its own: every container and codec, odd sizes, size changes, time stamps, crash safety."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
from video_helpers import decode_frames, decode_times, frame_index, pattern_frame

from deblur.runtime.errors import InputError

av = pytest.importorskip("av", reason="the recorder writes through PyAV (pip install av)")
from deblur.video.recorder import Recorder  # noqa: E402

N = 24


@pytest.mark.parametrize("size", [(160, 120), (161, 121)], ids=["160x120", "161x121"])
@pytest.mark.parametrize("codec", ["h264", "mjpg", "ffv1"])
@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_record_and_read_back(tmp_path, suffix, codec, size):
    w, h = size
    frames = [pattern_frame(i, w, h) for i in range(N)]
    path = tmp_path / f"out{suffix}"
    rec = Recorder(path, size, 24.0, codec)
    for i, img in enumerate(frames):
        rec.write(img, i / 24)
    rec.close()
    rec.close()  # twice is fine
    assert rec.frames == N
    back = decode_frames(path)
    assert len(back) == N
    cw, ch = (w + w % 2, h + h % 2) if codec == "h264" else (w, h)  # H.264 4:2:0: odd sides padded by one pixel
    assert all(f.shape == (ch, cw, 3) for f in back)
    back = [f[:h, :w] for f in back]
    assert [frame_index(f) for f in back] == list(range(N))
    errors = [float(np.abs(a.astype(int) - b.astype(int)).mean()) for a, b in zip(frames, back)]
    if codec == "ffv1":
        assert all(np.array_equal(a, b) for a, b in zip(frames, back)), "FFV1 (bgr0) must be lossless"
    else:
        assert max(errors) < 6.0, errors
    times = decode_times(path)
    assert times == pytest.approx([i / 24 for i in range(N)], abs=0.0011)  # ms time stamps
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == {"h264": "h264", "mjpg": "mjpeg", "ffv1": "ffv1"}[codec]
        assert (stream.codec_context.width, stream.codec_context.height) == (cw, ch)


def test_frame_size_change_is_resized_with_one_warning(tmp_path, deblur_log):
    path = tmp_path / "change.mkv"
    rec = Recorder(path, (160, 120), 24.0, "ffv1")
    for i in range(8):
        rec.write(pattern_frame(i, 160, 120), i / 24)
    for i in range(8, 16):
        rec.write(pattern_frame(i, 200, 150), i / 24)  # the source changed its size
    for i in range(16, 20):
        rec.write(pattern_frame(i, 96, 72), i / 24)  # and again
    rec.close()
    warnings = [r for r in deblur_log.records if r.level == logging.WARNING]
    assert len(warnings) == 1, [r.message for r in warnings]
    assert "200x150" in warnings[0].message and "160x120" in warnings[0].message
    back = decode_frames(path)
    assert len(back) == 20
    assert all(f.shape == (120, 160, 3) for f in back)
    assert [frame_index(f) for f in back] == list(range(20))


def test_grayscale_frames_are_recorded_as_bgr(tmp_path):
    path = tmp_path / "gray.mkv"
    rec = Recorder(path, (64, 48), 10, "ffv1")
    gray = np.arange(64 * 48, dtype=np.uint16).reshape(48, 64).astype(np.uint8)
    rec.write(gray, 0.0)
    rec.close()
    (back,) = decode_frames(path)
    assert np.array_equal(back, np.repeat(gray[:, :, None], 3, axis=2))


def test_live_time_stamps_with_gaps_and_clock_steps(tmp_path):
    """Dropped frames leave gaps, and the recording keeps real time; a clock that stands still or steps
    back still gives strictly increasing time stamps."""
    path = tmp_path / "live.mkv"
    rec = Recorder(path, (64, 48), 30, "mjpg")
    stamps = [0.0, 0.033, 0.2, 0.2, 0.1, 1.5, None]
    for i, t in enumerate(stamps):
        rec.write(pattern_frame(i, 64, 48), t)
    rec.close()
    times = decode_times(path)
    assert len(times) == len(stamps)
    assert times[:3] == pytest.approx([0.0, 0.033, 0.2], abs=1e-3)
    assert times[5] == pytest.approx(1.5, abs=1e-3)
    assert all(b > a for a, b in zip(times, times[1:]))


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_open_recording_is_readable_before_close(tmp_path, suffix):
    """What a SIGKILL leaves: the file as it is on disk while the recorder is still open."""
    path = tmp_path / f"live{suffix}"
    rec = Recorder(path, (160, 120), 24, "h264")
    n = 24 * 4  # 4 s of video
    for i in range(n):
        rec.write(pattern_frame(i), i / 24)
    snapshot = tmp_path / f"snapshot{suffix}"
    shutil.copyfile(path, snapshot)  # no close, no trailer
    rec.close()
    back = decode_frames(snapshot)
    assert len(back) >= n - int(1.5 * 24), f"only {len(back)} of {n} frames survive without a close"
    assert [frame_index(f) for f in back] == list(range(len(back)))
    assert len(decode_frames(path)) == n


@pytest.mark.parametrize("target, codec, match", [
    ("a.mkv", "vp9", "unknown output codec"),
    ("a.avi", "h264", "cannot record to a .avi file"),
    ("a", "h264", "suffix-less"),
    ("ftp://host/x", "h264", "cannot stream to"),
], ids=["unknown-codec", "avi-suffix", "no-suffix", "ftp-url"])
def test_recorder_rejects(tmp_path, target, codec, match):
    with pytest.raises(InputError, match=match):
        Recorder(target if "://" in target else tmp_path / target, (64, 48), 24, codec)


@pytest.mark.parametrize("target, codec, words", [
    # .mov takes no FFV1: a clear InputError, not a ValueError from deep inside PyAV
    ("a.mov", "ffv1", ["ffv1"]),
    ("file/sub/out.mkv", "h264", []),  # "file" is a file, not a folder
], ids=["codec-the-container-cannot-hold", "unwritable-folder"])
def test_recorder_input_error_with_a_hint(tmp_path, target, codec, words):
    (tmp_path / "file").write_text("a file, not a folder")
    with pytest.raises(InputError) as e:
        Recorder(tmp_path / target, (64, 48), 24, codec)
    assert all(w in str(e.value) for w in words) and e.value.hint


def test_recorder_zero_fps_falls_back_to_30(tmp_path):
    rec = Recorder(tmp_path / "z.mkv", (64, 48), 0, "mjpg")
    assert rec.fps == 30.0
    for i in range(3):
        rec.write(pattern_frame(i, 64, 48))  # no time stamps: the nominal rate
    rec.close()
    assert decode_times(tmp_path / "z.mkv") == pytest.approx([0, 1 / 30, 2 / 30], abs=1e-3)
