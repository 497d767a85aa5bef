"""Files and image folders: every frame, in order, nothing dropped; the CLI's recording equals the model's output."""
from __future__ import annotations

import json

import numpy as np
import pytest
from video_helpers import assert_no_traceback, decode_frames, frame_index, read_all, run_cli, summary, write_clip, write_images

from deblur.runtime.errors import InputError
from deblur.video.readers import ReaderOptions
from deblur.video.source import SourceOptions, State, VideoSource
from deblur.video.uri import parse_source

av = pytest.importorskip("av", reason="files are read and written through PyAV (pip install av)")

N = 30


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """An FFV1 MKV (lossless) and an H.264 MP4 of N distinct frames, 160x120 at 24 fps."""
    d = tmp_path_factory.mktemp("clips")
    frames = write_clip(d / "ffv1.mkv", N, "ffv1")
    write_clip(d / "h264.mp4", N, "libx264")
    return {"dir": d, "frames": frames, "ffv1": d / "ffv1.mkv", "h264": d / "h264.mp4"}


# ----------------------------------------------------------------------------------- VideoSource
def test_ffv1_file_every_frame_exact_and_in_order(clips):
    src = VideoSource(parse_source(str(clips["ffv1"])))
    frames = read_all(src)
    assert len(frames) == N
    assert [f.index for f in frames] == list(range(N))
    assert all(np.array_equal(f.image, want) for f, want in zip(frames, clips["frames"]))
    assert [f.pts for f in frames] == pytest.approx([i / 24 for i in range(N)], abs=1e-3)
    assert src.state == State.EOS
    assert (src.delivered, src.dropped, src.skipped, src.reconnects) == (N, 0, 0, 0)
    assert src.info["width"] == 160 and src.info["height"] == 120 and src.info["codec"] == "ffv1"
    assert src.info["fps"] == pytest.approx(24.0)


def test_h264_mp4_every_frame_in_order(clips):
    src = VideoSource(parse_source(f"file://{clips['h264']}"))
    frames = read_all(src)
    assert [frame_index(f.image) for f in frames] == list(range(N))
    assert src.state == State.EOS and src.dropped == 0 and src.skipped == 0
    err = max(float(np.abs(f.image.astype(int) - w.astype(int)).mean()) for f, w in zip(frames, clips["frames"]))
    assert err < 6.0


def test_slow_consumer_of_a_file_loses_nothing(clips):
    """A file never drops: the bounded queue makes the reader wait for a slow consumer."""
    src = VideoSource(parse_source(str(clips["ffv1"])), SourceOptions(file_queue=2))
    frames = read_all(src, delay=0.02)
    assert [f.index for f in frames] == list(range(N))
    assert src.dropped == 0 and src.state == State.EOS


def test_file_resized_on_request(clips):
    src = VideoSource(parse_source(str(clips["h264"])), SourceOptions(ReaderOptions(width=80)))
    frames = read_all(src)
    assert len(frames) == N
    assert all(f.image.shape == (60, 80, 3) for f in frames)  # one side given keeps the aspect
    assert "swscale resize 80x60" in src.info["pipeline"]


def test_image_folder_in_name_order(tmp_path, deblur_log):
    folder = tmp_path / "frames"
    order = [7, 3, 11, 0, 5]
    written = write_images(folder, order, 64, 48, name="img_{k:03d}.png")
    (folder / "img_002b.png").write_bytes(b"not a png")  # sorts between img_002 and img_003
    src = VideoSource(parse_source(str(folder)), SourceOptions(ReaderOptions(rate=5.0)))
    frames = read_all(src)
    assert [frame_index(f.image) for f in frames] == order
    assert all(np.array_equal(f.image, want) for f, want in zip(frames, written))
    assert [f.pts for f in frames] == pytest.approx([k / 5.0 for k in range(len(order))])
    assert src.state == State.EOS and src.dropped == 0
    assert src.skipped == 1
    assert any("img_002b.png" in m and "skipped" in m for m in deblur_log.messages())


def test_not_a_video_fails_with_an_input_error(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is a text file\n" * 50)
    src = VideoSource(parse_source(str(bad)))
    assert read_all(src, timeout=15) == []
    assert src.state == State.FAILED
    assert isinstance(src.error, InputError)
    assert "cannot open as video" in src.error.message


# ----------------------------------------------------------------------------------- the CLI
def test_cli_ffv1_recording_equals_the_model_output(clips, tmp_path, deblurrer):
    out, stats = tmp_path / "out.mkv", tmp_path / "s.json"
    r = run_cli(["--input", clips["ffv1"], "--headless", "--output-save", out, "--output-codec", "ffv1",
                 "--stats-json", stats], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert_no_traceback(r.stdout, r.stderr)
    s = summary(r.stdout)
    assert (s["ended"], s["read"], s["out"], s["dropped"], s["skipped"]) == ("eos", N, N, 0, 0)
    data = json.loads(stats.read_text())
    assert data["frames_out"] == N and data["ended"] == "eos"
    assert data["counters"] == {"read": N, "out": N, "dropped": 0, "skipped": 0, "reconnects": 0, "state": "EOS",
                                "undecodable": 0, "lost": 0, "lost_reasons": {}, "announced": N}
    assert data["stages"]["latency"]["n"] == N and data["stages"]["infer"]["n"] == N
    assert data["source_info"]["codec"] == "ffv1"
    recorded = decode_frames(out)
    assert len(recorded) == N
    inputs = decode_frames(clips["ffv1"])
    # lossless in, lossless out: the recording is exactly what the model gives for each decoded frame
    for i, (img, rec) in enumerate(zip(inputs, recorded)):
        want = deblurrer(img)
        assert rec.shape == want.shape
        assert np.array_equal(rec, want), f"frame {i}: max diff {np.abs(rec.astype(int) - want.astype(int)).max()}"
    assert "pipeline: PyAV" in r.stderr and "recording: PyAV" in r.stderr and "ffv1 bgr0" in r.stderr
    assert "| end-to-end latency |" in r.stdout


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_cli_h264_file_to_h264_recording(clips, tmp_path, suffix):
    out, stats = tmp_path / f"out{suffix}", tmp_path / "s.json"
    r = run_cli(["--input", clips["h264"], "--headless", "--output-save", out, "--stats-json", stats], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(stats.read_text())
    assert data["counters"]["read"] == N and data["counters"]["out"] == N and data["counters"]["skipped"] == 0
    recorded = decode_frames(out)
    assert len(recorded) == N
    assert all(f.shape == (120, 160, 3) for f in recorded)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert float(c.streams.video[0].average_rate or 24) == pytest.approx(24, abs=0.5)


def test_cli_side_by_side_recording(clips, tmp_path, deblurrer):
    out = tmp_path / "sbs.mkv"
    r = run_cli(["--input", clips["ffv1"], "--headless", "--output-save", out, "--output-codec", "ffv1",
                 "--save-view", "side-by-side"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    recorded = decode_frames(out)
    assert len(recorded) == N
    assert all(f.shape == (120, 320, 3) for f in recorded)  # twice the width
    inputs = decode_frames(clips["ffv1"])
    for img, rec in zip(inputs[:5], recorded[:5]):
        # below the labels: the input on the left, the model's output on the right
        assert np.array_equal(rec[40:, :160], img[40:])
        assert np.array_equal(rec[40:, 160:], deblurrer(img)[40:])


def test_cli_max_frames(clips, tmp_path, deblurrer):
    out, stats = tmp_path / "seven.mkv", tmp_path / "s.json"
    r = run_cli(["--input", clips["ffv1"], "--headless", "--output-save", out, "--output-codec", "ffv1",
                 "--max-frames", "7", "--stats-json", stats], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert summary(r.stdout)["ended"] == "max-frames"
    data = json.loads(stats.read_text())
    assert data["frames_out"] == 7 and data["counters"]["out"] == 7
    recorded = decode_frames(out)
    assert len(recorded) == 7
    inputs = decode_frames(clips["ffv1"])[:7]
    assert all(np.array_equal(rec, deblurrer(img)) for img, rec in zip(inputs, recorded))  # the first seven


def test_cli_image_folder(tmp_path):
    folder = tmp_path / "imgs"
    write_images(folder, range(6), 96, 64)
    out = tmp_path / "imgs.mkv"
    r = run_cli(["--input", folder, "--headless", "--output-save", out, "--input-rate", "12"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    s = summary(r.stdout)
    assert (s["read"], s["out"]) == (6, 6)
    with av.open(str(out)) as c:
        times = [float(f.time) for f in c.decode(video=0)]
    assert times == pytest.approx([k / 12 for k in range(6)], abs=1e-3)


def test_cli_demo(tmp_path):
    out = tmp_path / "demo.mp4"
    r = run_cli(["--demo", "--headless", "--input-width", "160", "--max-frames", "6", "--output-save", out], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert summary(r.stdout)["out"] == 6
    frames = decode_frames(out)
    assert len(frames) == 6 and frames[0].shape == (90, 160, 3)  # 640x360 resized, aspect kept


def test_cli_logs_pipeline_once(clips, tmp_path):
    r = run_cli(["--input", clips["h264"], "--headless", "--max-frames", "3", "--log-level", "WARNING"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "CONNECTING" not in r.stderr  # --log-level is honoured
    r = run_cli(["--input", clips["h264"], "--headless", "--max-frames", "3"], cwd=tmp_path)
    assert r.stderr.count("pipeline: PyAV") == 1
    assert r.stderr.count("STREAMING") == 1 and "EOS" not in r.stderr  # stopped by --max-frames, not the end


@pytest.mark.parametrize("how", ["same path", "symlink", "hard link", "stats into the input"])
def test_an_output_that_is_the_input_is_refused_and_the_input_kept(tmp_path, how):
    """#17 defect 2: --output-save onto the input (directly or through a link) truncated the source while it
    was read. The same file, not the same string: refused before a model loads, exit 2, input untouched."""
    import os

    clip = tmp_path / "in.mkv"
    write_clip(clip, 12, "ffv1")
    before = clip.read_bytes()
    target = {"same path": clip, "symlink": tmp_path / "link.mkv", "hard link": tmp_path / "hard.mkv",
              "stats into the input": clip}[how]
    if how == "symlink":
        target.symlink_to(clip)
    elif how == "hard link":
        os.link(clip, target)
    flag = "--stats-json" if how == "stats into the input" else "--output-save"
    r = run_cli(["--input", clip, "--headless", flag, target], cwd=tmp_path)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert f"{flag} is the input video itself" in err[-1] and err[-1].startswith("deblur-video: error:")
    assert clip.read_bytes() == before
