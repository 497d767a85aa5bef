"""--output streams the deblurred frames over the network (FFmpeg's muxers): a real UDP/MPEG-TS
receiver on loopback gets them while the tool also records to a file."""
from __future__ import annotations

import socket
import threading

import pytest
from video_helpers import assert_no_traceback, decode_frames, frame_index, run_cli, summary, write_clip

av = pytest.importorskip("av")


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_udp_output_reaches_a_receiver(tmp_path):
    n = 40
    clip = tmp_path / "in.mkv"
    write_clip(clip, n)
    port = _udp_port()
    received: list[int] = []
    ready = threading.Event()

    def receive() -> None:
        try:
            with av.open(f"udp://127.0.0.1:{port}", timeout=(10, 3)) as c:
                ready.set()
                for frame in c.decode(video=0):
                    received.append(frame_index(frame.to_ndarray(format="bgr24")))
        except av.ExitError:  # UDP has no end of stream: the read deadline after the last packet ends it
            pass

    t = threading.Thread(target=receive, daemon=True)
    t.start()
    # the receiver binds at open, which blocks until data comes: give the socket a moment to exist
    threading.Event().wait(0.5)
    r = run_cli(["--input", clip, "--headless", "--output", f"udp://127.0.0.1:{port}?pkt_size=1316",
                 "--output-save", tmp_path / "rec.mkv"], cwd=tmp_path, timeout=120)
    assert_no_traceback(r.stdout, r.stderr)
    assert r.returncode == 0, r.stderr
    assert summary(r.stdout)["out"] == n
    t.join(15)
    assert ready.is_set(), "the receiver never got a stream"
    # UDP may lose the first packets before the receiver's socket existed, never reorder frames
    assert len(received) >= n // 2 and received == sorted(received)
    assert len(decode_frames(tmp_path / "rec.mkv")) == n  # the file gets every frame regardless
