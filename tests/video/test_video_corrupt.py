"""Truncated and corrupt files: the tool ends (no hang), counts what it could not decode, never a traceback."""
from __future__ import annotations

import json

import numpy as np
import pytest
from video_helpers import assert_no_traceback, decode_frames, frame_index, pattern_frame, read_all, run_cli, summary, write_clip

from deblur.video.source import State, VideoSource
from deblur.video.uri import parse_source

av = pytest.importorskip("av", reason="files are read through PyAV (pip install av)")

N = 48
TIMEOUT = 60  # a run that takes longer has hung


def packets(path):
    """The payload bytes of every video packet, in file order."""
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(video=0) if p.size]


def corrupt_payloads(src, dst, which) -> int:
    """Invert every byte of the payloads of packets ``which``; returns how many packets were hit."""
    data = src.read_bytes()
    out = bytearray(data)
    hit = 0
    for k, payload in enumerate(packets(src)):
        if k in which:
            start = data.find(payload)
            assert start > 0
            out[start:start + len(payload)] = bytes(b ^ 0xFF for b in payload)
            hit += 1
    dst.write_bytes(bytes(out))
    return hit


def run(tmp_path, src, *extra):
    stats = tmp_path / f"{src.stem}.json"
    out = tmp_path / f"{src.stem}_out.mkv"
    r = run_cli(["--input", src, "--headless", "--output-save", out, "--stats-json", stats, *extra],
                cwd=tmp_path, timeout=TIMEOUT)
    assert_no_traceback(r.stdout, r.stderr)
    return r, (json.loads(stats.read_text()) if stats.exists() else None), out


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("corrupt")
    write_clip(d / "ffv1.mkv", N, "ffv1", options={"g": "1"})  # every frame a keyframe
    write_clip(d / "h264.mkv", N, "libx264")
    write_clip(d / "h264.mp4", N, "libx264")  # a plain MP4: the index (moov) is at the end
    return d


@pytest.mark.parametrize("name", ["ffv1.mkv", "h264.mkv"])
def test_truncated_mkv_plays_up_to_the_cut(clips, tmp_path, name):
    data = (clips / name).read_bytes()
    cut = tmp_path / f"cut_{name}"
    cut.write_bytes(data[: len(data) * 3 // 4])
    r, stats, out = run(tmp_path, cut)
    assert r.returncode == 0, r.stderr  # a quarter lost: under the bad-frame limit
    s = summary(r.stdout)
    assert s["ended"] == "eos"
    assert 0 < s["read"] < N
    assert s["out"] == s["read"] == stats["counters"]["read"]
    # the lost tail is reported and counted: the file declares more than it holds
    assert "frames are missing (truncated or damaged)" in r.stderr
    assert 0 < stats["counters"]["skipped"] and abs(s["read"] + stats["counters"]["skipped"] - N) <= 3
    recorded = decode_frames(out)
    assert len(recorded) == s["out"]
    src = VideoSource(parse_source(str(cut)))
    got = [frame_index(f.image) for f in read_all(src, timeout=TIMEOUT)]
    assert src.state == State.EOS
    assert len(got) == s["read"]
    # the frames before the cut, in order; with B-frames (H.264) a frame whose packet came after the cut
    # in decode order can be missing just before it
    assert got[0] == 0 and all(b > a for a, b in zip(got, got[1:])) and got[-1] - (len(got) - 1) <= 2, got


def test_a_file_that_lost_most_of_its_frames_exits_1(clips, tmp_path):
    """VI-7: more frames lost than delivered is a broken input, not a success."""
    data = (clips / "ffv1.mkv").read_bytes()
    cut = tmp_path / "quarter.mkv"
    cut.write_bytes(data[: len(data) // 4])
    r, stats, _ = run(tmp_path, cut)
    assert r.returncode == 1, r.stderr
    assert stats["counters"]["skipped"] > stats["counters"]["read"] > 0
    assert "could not be decoded" in r.stderr


def test_truncated_plain_mp4_is_one_clear_error(clips, tmp_path):
    data = (clips / "h264.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # the index was at the end: nothing to play
    r, _, _ = run(tmp_path, cut)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("deblur-video: error:")]
    assert len(errors) == 1 and "cannot open as video" in errors[0] and "cut.mp4" in errors[0]


def test_truncated_fragmented_mp4_recording_plays(tmp_path):
    """The tool's own MP4 recordings are fragmented, so a cut one (a crash) still plays up to the cut."""
    from deblur.video.recorder import Recorder

    rec_path = tmp_path / "rec.mp4"
    rec = Recorder(rec_path, (160, 120), 24, "h264")
    for i in range(N * 2):
        rec.write(pattern_frame(i), i / 24)
    rec.close()
    data = rec_path.read_bytes()
    cut = tmp_path / "cutrec.mp4"
    cut.write_bytes(data[: len(data) // 2])
    r, stats, _ = run(tmp_path, cut)
    assert r.returncode == 0, r.stderr
    assert 24 <= stats["counters"]["read"] < 2 * N  # at least the first fragments
    assert stats["counters"]["out"] == stats["counters"]["read"]


def test_corrupt_packets_are_counted_and_skipped(clips, tmp_path):
    bad = tmp_path / "bad.mkv"
    hit = corrupt_payloads(clips / "ffv1.mkv", bad, {20, 24, 28})
    assert hit == 3
    r, stats, out = run(tmp_path, bad)
    assert r.returncode == 0, r.stderr
    s = summary(r.stdout)
    assert s["skipped"] >= 1, r.stdout
    assert s["skipped"] == stats["counters"]["skipped"]
    assert s["read"] + s["skipped"] <= N and s["read"] >= N - 2 * hit
    assert s["out"] == s["read"] and s["ended"] == "eos"
    assert len(decode_frames(out)) == s["out"]
    assert f"{s['skipped']} undecodable" in r.stdout


def test_mostly_corrupt_file_exits_1(clips, tmp_path):
    bad = tmp_path / "mostly_bad.mkv"
    corrupt_payloads(clips / "ffv1.mkv", bad, set(range(6, N)))
    r, stats, _ = run(tmp_path, bad)
    assert r.returncode == 1, r.stdout + r.stderr
    assert stats["counters"]["skipped"] > stats["counters"]["read"]
    assert "could not be decoded" in r.stderr


@pytest.mark.parametrize("name", ["h264.mp4", "h264.mkv", "ffv1.mkv"])
def test_bytes_flipped_in_the_middle(clips, tmp_path, name):
    data = bytearray((clips / name).read_bytes())
    n = len(data)
    rng = np.random.default_rng(0)
    for off in rng.integers(n // 3, 2 * n // 3, size=max(8, n // 400)):
        data[off] ^= 0xFF
    bad = tmp_path / f"flip_{name}"
    bad.write_bytes(bytes(data))
    r, stats, out = run(tmp_path, bad)
    assert r.returncode in (0, 1), r.stderr
    s = summary(r.stdout)
    assert s["ended"] == "eos"
    assert s["read"] + s["skipped"] <= N + 2 and s["read"] >= 1
    assert stats["counters"]["undecodable"] == s["skipped"]  # the summary's "undecodable"; lost frames are apart
    assert len(decode_frames(out)) == s["out"] == s["read"]


def test_random_bytes_with_a_video_suffix(tmp_path):
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    r, _, _ = run(tmp_path, junk)
    assert r.returncode == 2, r.stderr
    assert "cannot open as video" in r.stderr
