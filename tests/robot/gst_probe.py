"""In-process GStreamer checks for tests/robot/test_gst.py, run by the SYSTEM python3 (the one GStreamer's
plugin loader embeds), in the environment ``deblur-gst-env`` prints. What gst-launch-1.0 cannot show:

- ``stride OUT_DIR``: appsrc pushes BGRx frames whose rows are padded (``GstVideoMeta`` stride and offset
  that differ from ``GstVideoInfo``'s) through ``deblur`` to appsink; saves the input frames, the output
  frames and the output padding bytes as .npy files.
- ``live``: a live 640x360 source at 1000 frames/s into ``deblur`` and a synchronised sink; prints JSON with
  the frames rendered, the element's QoS drop count, the per-frame times seen by pad probes, and the
  latency the element's src pad answers next to upstream's.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

# isort: off
import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
# GStreamer before numpy: the other way round, OpenVINO's C++ exceptions unwind through GStreamer's libunwind
# and compile_model aborts or segfaults (measured; LD_PRELOAD=libgcc_s.so.1 also avoids it)
from gi.repository import Gst, GstVideo  # noqa: E402

import numpy as np  # noqa: E402 (the venv's numpy, through PYTHONPATH)
# isort: on

W, H, PAD, OFFSET, FRAMES = 161, 121, 52, 24, 3


def _run(pipeline: Gst.Pipeline, timeout_s: float = 30.0) -> None:
    pipeline.set_state(Gst.State.PLAYING)
    msg = pipeline.get_bus().timed_pop_filtered(int(timeout_s * Gst.SECOND), Gst.MessageType.EOS | Gst.MessageType.ERROR)
    if msg is None or msg.type == Gst.MessageType.ERROR:
        detail = msg.parse_error() if msg is not None else "timeout"
        pipeline.set_state(Gst.State.NULL)
        sys.exit(f"pipeline failed: {detail}")


def stride(out_dir: Path) -> None:
    stride_bytes = W * 4 + PAD
    rng = np.random.default_rng(0)
    pipeline = Gst.parse_launch(
        f"appsrc name=src format=time caps=video/x-raw,format=BGRx,width={W},height={H},framerate=10/1 "
        "! deblur threads=1 ! appsink name=sink sync=false emit-signals=false max-buffers=0")
    src, sink = pipeline.get_by_name("src"), pipeline.get_by_name("sink")
    inputs = []
    for i in range(FRAMES):
        frame = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
        padded = np.full((H, stride_bytes), 7, np.uint8)
        padded[:, : W * 4] = frame.reshape(H, W * 4)
        data = b"\x05" * OFFSET + padded.tobytes()
        buf = Gst.Buffer.new_wrapped(data)
        buf.pts, buf.duration = i * Gst.SECOND // 10, Gst.SECOND // 10
        GstVideo.buffer_add_video_meta_full(buf, GstVideo.VideoFrameFlags.NONE, GstVideo.VideoFormat.BGRX, W, H, 1,
                                            [OFFSET, 0, 0, 0], [stride_bytes, 0, 0, 0])
        inputs.append(frame)
        src.emit("push-buffer", buf)
    src.emit("end-of-stream")
    pipeline.set_state(Gst.State.PLAYING)
    outputs, pads = [], []
    for _ in range(FRAMES):
        sample = sink.emit("try-pull-sample", 30 * Gst.SECOND)
        if sample is None:
            sys.exit("appsink gave no sample")
        buf = sample.get_buffer()
        meta = GstVideo.buffer_get_video_meta(buf)
        ok, info = buf.map(Gst.MapFlags.READ)
        raw = np.frombuffer(bytes(info.data), np.uint8)
        buf.unmap(info)
        off, st = (meta.offset[0], meta.stride[0]) if meta else (0, W * 4)
        rows = raw[off : off + st * H].reshape(H, st)
        outputs.append(rows[:, : W * 4].reshape(H, W, 4).copy())
        pads.append(np.concatenate([raw[:off], rows[:, W * 4 :].ravel()]))
    pipeline.set_state(Gst.State.NULL)
    np.save(out_dir / "in.npy", np.stack(inputs))
    np.save(out_dir / "out.npy", np.stack(outputs))
    np.save(out_dir / "pad.npy", np.stack(pads))
    print(json.dumps({"meta_stride": st, "meta_offset": off}))


def live() -> None:
    n = 40
    pipeline = Gst.parse_launch(
        f"videotestsrc is-live=true num-buffers={n} pattern=ball ! video/x-raw,format=BGR,width=640,height=360,framerate=1000/1 "
        "! deblur name=d ! fakesink name=sink sync=true qos=true max-lateness=20000000")
    element, sink = pipeline.get_by_name("d"), pipeline.get_by_name("sink")
    entered: dict[int, float] = {}
    spent: list[float] = []
    rendered = [0]

    def on_in(pad, info):
        entered[info.get_buffer().pts] = time.perf_counter()
        return Gst.PadProbeReturn.OK

    def on_out(pad, info):
        t = entered.pop(info.get_buffer().pts, None)
        if t is not None:
            spent.append(time.perf_counter() - t)
        return Gst.PadProbeReturn.OK

    def on_render(pad, info):
        rendered[0] += 1
        return Gst.PadProbeReturn.OK

    element.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, on_in)
    element.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_out)
    sink.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, on_render)
    dropped = [0]

    def on_message(bus, msg):
        if msg.type == Gst.MessageType.QOS and msg.src == element:
            dropped[0] = max(dropped[0], msg.parse_qos_stats()[2])

    bus = pipeline.get_bus()
    bus.enable_sync_message_emission()
    bus.connect("sync-message", on_message)
    _run(pipeline)
    ours, upstream = Gst.Query.new_latency(), Gst.Query.new_latency()
    answered = element.get_static_pad("src").query(ours)
    element.get_static_pad("sink").peer_query(upstream)
    print(json.dumps({"frames": n, "rendered": rendered[0], "dropped": dropped[0], "qos": element.get_property("qos"),
                      "answered": answered, "latency": ours.parse_latency(), "upstream": upstream.parse_latency(),
                      "spent_s": spent}))
    pipeline.set_state(Gst.State.NULL)


if __name__ == "__main__":
    Gst.init(None)
    if sys.argv[1] == "stride":
        stride(Path(sys.argv[2]))
    else:
        live()
