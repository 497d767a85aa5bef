"""``deblur-video``: deblur a camera, stream, file or the bundled demo in real time.

Prints the source pipeline at start, a status line every few seconds, and the per-stage table at
exit (``--stats-json`` writes it as JSON). Exit codes: 0 at the end of a file or --max-frames,
130 after SIGINT, 143 after SIGTERM, 1 when a source failed for good, 2 for bad input.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deblur.runtime.cli import make_parser, run
from deblur.runtime.errors import DeblurError, InputError
from deblur.runtime.fileio import can_create
from deblur.runtime.tiling import parse_tile
from deblur.runtime.zoo import BUNDLED_HINT
from deblur.video.readers import ReaderOptions
from deblur.video.recorder import CODECS, check_target
from deblur.video.uri import DEMO_CLIP, SourceURI, parse_source, redact
from deblur.video.view import VIEWS

if TYPE_CHECKING:
    from deblur.video.pipeline import Sinks

log = logging.getLogger("deblur")
PROG = "deblur-video"
BAD_FRAME_LIMIT = 0.5  # more undecodable than decodable frames: the file is broken, exit 1
STOP_BUDGET_S = 2.8  # a signal to exit: at most this long, whatever a driver is blocked in

EXAMPLES = """examples:
  deblur-video --demo --headless --output-save demo.mkv      # the bundled clip, bundled model, CPU
  deblur-video --camera 0                                    # /dev/video0, window with side-by-side view
  deblur-video --camera 0 --input-width 1280 --input-height 720 --input-codec mjpg --view split
  deblur-video --input rtsp://user:pass@10.0.0.5:8554/cam --model g_fp16.engine --device cuda:0 --headless
  deblur-video --input clip.mp4 --output-save out.mkv --save-view side-by-side --stats-json stats.json
  deblur-video --input csi://0 --model g_fp16.engine --device cuda:0      # Jetson CSI camera (GStreamer)
"""


def build_parser() -> argparse.ArgumentParser:
    p = make_parser(PROG, "Deblur live camera video (or a stream, a file, the demo) in real time.", EXAMPLES)
    src = p.add_argument_group("source").add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", metavar="N|PATH", help="V4L2 camera: index (0 = /dev/video0) or device path")
    src.add_argument("--input", metavar="URI", help="/dev/videoN, v4l2://, csi://N, rtsp://..., file://, a video file, an "
                                                      "image folder, or synthetic://demo?fps=30")
    src.add_argument("--demo", action="store_true", help="the bundled clip (real camera-shake blur)")
    s = p.add_argument_group("source options")
    s.add_argument("--input-width", type=int, help="camera: requested width; other sources: resized to it")
    s.add_argument("--input-height", type=int, help="camera: requested height; other sources: resized to it")
    s.add_argument("--input-rate", type=float, help="camera: requested frame rate; image folders: their rate (default 10)")
    s.add_argument("--input-codec", choices=["mjpg", "yuyv", "h264"], help="camera: requested pixel format (FOURCC)")
    s.add_argument("--open-timeout", type=float, default=5.0, help="seconds an open may take (default 5)")
    s.add_argument("--read-timeout", type=float, default=2.0, help="seconds without a frame before STALLED (default 2)")
    s.add_argument("--reconnect-attempts", type=int, default=-1, help="live sources: attempts per outage, -1 = for ever (default)")
    s.add_argument("--reconnect-max-delay", type=float, default=10.0, help="backoff cap in seconds (default 10)")
    s.add_argument("--live-queue", choices=["newest", "fifo"], default="newest",
                   help="live sources: keep the newest frame (default) or queue every frame (latency test only)")
    m = p.add_argument_group("model")
    m.add_argument("--model", default="default",
                   help="any file Deblurrer takes (.pth/.safetensors/.onnx/OpenVINO .xml/.engine) or " + BUNDLED_HINT)
    m.add_argument("--device", default="cpu", help="cpu or cuda:N (default cpu)")
    m.add_argument("--backend", choices=["torch", "onnxruntime", "openvino", "tensorrt"],
                   help="default: from the model file; an ONNX model on the CPU runs on the fastest backend installed "
                        "that passes the parity gate here (decided once, cached)")
    m.add_argument("--precision", choices=["auto", "f32", "bf16", "f16"],
                   help="OpenVINO's compute precision (default: auto, or what the backend choice validated)")
    m.add_argument("--threads", type=int, help="CPU threads per model (default: the CPUs shared between --workers)")
    m.add_argument("--workers", default="auto", help="inference threads, each with its own model; auto: 1 for live "
                                                     "sources and GPUs, 2 for files on a CPU with 2+ cores (default auto)")
    m.add_argument("--tile", default="auto", help="'auto', 0 (never) or a tile side in px")
    o = p.add_argument_group("output")
    o.add_argument("--headless", action="store_true", help="no window")
    o.add_argument("--view", choices=VIEWS, default="side-by-side", help="window view (default side-by-side)")
    o.add_argument("--output-save", metavar="FILE", help="record to FILE.mkv (crash-safe) or FILE.mp4 (fragmented)")
    o.add_argument("--output-codec", choices=list(CODECS), default="h264", help="recording codec (default h264)")
    o.add_argument("--save-view", choices=VIEWS, default="output", help="what to record (default: the deblurred frames)")
    o.add_argument("--output", metavar="URL", help="also stream to rtsp://, rtmp:// or udp:// (srt:// where FFmpeg has it)")
    o.add_argument("--output-timeout", type=float, default=5.0,
                   help="seconds a network output may take to connect, or to take a frame (default 5)")
    o.add_argument("--max-frames", type=int, help="stop after N output frames")
    o.add_argument("--stats-every", type=float, default=5.0, help="seconds between status lines; 0 = only at exit (default 5)")
    o.add_argument("--stats-json", type=Path, metavar="FILE", help="write the stage table and counters as JSON")
    o.add_argument("--stop-timeout", type=float, default=2.0, help="seconds to finish frames in flight after a stop (default 2)")
    return p


def _source(args: argparse.Namespace) -> SourceURI:
    if args.demo:
        if not DEMO_CLIP.is_file():
            raise InputError("the bundled demo clip is missing from this install", DEMO_CLIP, hint="reinstall deblur-edge")
        return SourceURI("file", str(DEMO_CLIP), "demo")
    if args.camera is not None:
        cam = str(args.camera)
        return parse_source(cam if cam.isdigit() or cam.startswith(("/dev/", "v4l2://")) else f"v4l2://{cam}")
    return parse_source(args.input)


def _check(args: argparse.Namespace) -> None:
    from deblur.runtime.device import parse_device

    args.device = parse_device(args.device)
    for name in ("input_width", "input_height", "max_frames", "threads"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
    if min(args.open_timeout, args.read_timeout, args.stop_timeout, args.reconnect_max_delay, args.output_timeout) <= 0:
        raise InputError("--open-timeout, --read-timeout, --stop-timeout, --reconnect-max-delay and --output-timeout must be > 0")
    if args.stats_every < 0 or args.reconnect_attempts < -1 or (args.input_rate is not None and args.input_rate <= 0):
        raise InputError("--stats-every must be >= 0, --reconnect-attempts >= -1 (for ever) and --input-rate > 0")
    if args.stats_json and not can_create(args.stats_json):
        raise InputError(f"cannot write the stats into {Path(args.stats_json).resolve().parent}", args.stats_json,
                         hint="choose a writable folder")
    if args.output_save:
        check_target(args.output_save, args.output_codec)
    if args.output:
        check_target(args.output, "h264")
        from deblur.video.netout import check_reachable

        check_reachable(args.output, args.output_timeout)


def _probe(uri: SourceURI, reader: ReaderOptions) -> None:
    """A file or folder that is not video fails here, as one line, before a model loads and the
    pipeline prints its banner and an empty table."""
    from deblur.video.readers import open_reader

    if uri.kind in ("file", "images"):
        open_reader(uri, reader).close()


def _outputs_are_not_the_input(args: argparse.Namespace, uri: SourceURI) -> None:
    """An output that is the input file (same file, through any link) would truncate it while it is read."""
    from deblur.runtime.fileio import same_file

    if uri.kind != "file":
        return
    for flag, target in (("--output-save", args.output_save), ("--output", args.output), ("--stats-json", args.stats_json)):
        if target and "://" not in str(target) and same_file(target, uri.location):
            raise InputError(f"{flag} is the input video itself", target,
                             hint="write to another file: the input would be overwritten while it is read")


def _workers(args: argparse.Namespace, uri: SourceURI) -> int:
    """``auto``: one for live sources (the lowest latency per frame) and GPUs; for files on a CPU
    with two or more cores, two single-threaded models (about 1.4x the frames per second)."""
    if args.workers != "auto":
        if not args.workers.isdigit() or int(args.workers) < 1:
            raise InputError(f"bad --workers {args.workers!r}", hint="write auto or a count such as 2")
        return int(args.workers)
    from deblur.runtime.ort_options import default_threads

    return 2 if not uri.live and args.device == "cpu" and default_threads() >= 2 else 1


def _models(args: argparse.Namespace, workers: int, stack: ExitStack) -> list[Any]:
    """One Deblurrer per inference thread, the CPU's threads shared between them."""
    from deblur.runtime import Deblurrer
    from deblur.runtime.ort_options import threads_per_worker

    threads = args.threads or threads_per_worker(workers)
    models = [stack.enter_context(Deblurrer(args.model, device=args.device, backend=args.backend, threads=threads,
                                            tile=parse_tile(args.tile), precision=args.precision)) for _ in range(workers)]
    d = models[0]
    log.info("model: %s (%s) on %s %s, %s; %d inference thread(s)%s", d.path.name, d.spec.name, d.backend_name,
             d.info["precision"], args.device, workers, f", {threads} CPU thread(s) each" if threads else "")
    return models


def _sinks(args: argparse.Namespace, stop: threading.Event) -> Sinks:
    from deblur.video.netout import StreamRecorder
    from deblur.video.pipeline import Sinks
    from deblur.video.recorder import Recorder

    def recorder(target: str, codec: str) -> Any:
        """Files in this process; network outputs in a child, under deadlines a stop shortens."""
        if "://" in str(target):
            return lambda size, fps: StreamRecorder(target, size, fps or args.input_rate or 30.0, codec, args.output_timeout, stop)
        return lambda size, fps: Recorder(target, size, fps or args.input_rate or 30.0, codec)

    sinks = Sinks()
    if args.output_save:
        sinks.make_recorders.append(recorder(args.output_save, args.output_codec))
    if args.output:
        sinks.make_recorders.append(recorder(args.output, "h264"))
    if not args.headless:
        from deblur.video.view import Window, window_unavailable

        why = window_unavailable()
        if why is None:
            import cv2

            try:
                sinks.window = Window()
            except cv2.error as e:  # DISPLAY set, but no server answers
                why = f"OpenCV cannot open a window ({str(e).strip().splitlines()[-1][:120]})"
        if why:
            log.warning("no window: %s; continuing headless (pass --headless to skip this check)", why)
    return sinks


def _main(args: argparse.Namespace) -> int:
    from deblur.video.pipeline import Pipeline, PipelineOptions
    from deblur.video.signals import StopOnSignal
    from deblur.video.source import SourceOptions, VideoSource

    _check(args)
    uri = _source(args)
    _outputs_are_not_the_input(args, uri)
    reader = ReaderOptions(args.input_width, args.input_height, args.input_rate, args.input_codec,
                           args.open_timeout, args.read_timeout)
    _probe(uri, reader)
    options = SourceOptions(reader, args.reconnect_attempts, backoff_max=args.reconnect_max_delay, live_policy=args.live_queue)
    stop = threading.Event()
    with StopOnSignal(stop) as signals, ExitStack() as stack:
        models = _models(args, _workers(args, uri), stack)
        source = VideoSource(uri, options)
        pipe = Pipeline(source, models, _sinks(args, stop),
                        PipelineOptions(args.view, args.save_view, args.max_frames, args.stats_every, args.stop_timeout,
                                        f"{PROG} | {models[0].spec.name} {models[0].backend_name}"), stop)
        error: DeblurError | None = None
        try:
            code = _report(args, pipe, uri, pipe.run())
        except DeblurError as e:
            error, code = e, e.exit_code
        # A capture thread inside a blocking open or read must not be running when the interpreter
        # shuts down (a daemon thread coming back from FFmpeg during finalisation crashes the
        # process). Wait for it, but after a signal only within the 3 s stop budget; past that,
        # leave the models to the threads still using them and exit without finalisation.
        wait = (signals.t_signal + STOP_BUDGET_S - time.monotonic()) if signals.t_signal else args.open_timeout + args.read_timeout + 1
        source.stop(join=max(0.05, wait))
        code = signals.exit_code if signals.exit_code is not None else code
        if source.alive or pipe.alive:
            stack.pop_all()
            if error is not None:
                print(f"{PROG}: error: {error.line()}", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        if error is not None and signals.exit_code is None:
            raise error
    return code


def _report(args: argparse.Namespace, pipe: Any, uri: SourceURI, ended: str) -> int:
    """Summary and table on stdout, JSON if asked; the exit code from how the source ended."""
    source, stats = pipe.source, pipe.stats
    counters = pipe.counters()
    fps = stats.fps()
    # bad input found before the first frame (not a video, no camera): its one error line says it all
    say = _quiet if source.error is not None and not (counters["read"] or counters["skipped"]) else print
    say(f"{PROG}: {redact(str(uri))}: ended ({ended}); {counters['read']} frames read, {counters['out']} written, "
          f"{counters['dropped']} dropped, {counters.get('undecodable', counters['skipped'])} undecodable, {counters['reconnects']} reconnects; "
          f"{fps:.1f} FPS")
    if counters.get("announced") is not None:  # every frame the file announced, accounted for (#17 defect 21)
        why = ", ".join(f"{n} {reason}" for reason, n in counters["lost_reasons"].items())
        say(f"{PROG}: frames: {counters['announced']} announced = {counters['read']} decoded + "
              f"{counters['undecodable']} undecodable + {counters['lost']} lost{': ' + why if why else ''}")
    if counters["out"]:
        print(stats.table())
    if args.stats_json:
        from deblur.runtime.fileio import atomic_write_text

        data = stats.to_dict(counters)
        data.update(source=redact(str(uri)), source_info=source.info, ended=ended, model=str(args.model))
        atomic_write_text(args.stats_json, json.dumps(data, indent=2) + "\n")
    if source.error is not None:
        raise source.error
    if ended == "failed":
        from deblur.video.source import SourceFailedError

        raise SourceFailedError(f"source {redact(str(uri))} failed: {redact(source.reason)}",
                          hint="check the camera or stream; --reconnect-attempts -1 retries for ever")
    total = counters["read"] + counters["skipped"]
    if total and counters["skipped"] / total > BAD_FRAME_LIMIT:
        log.error("%s: %d of %d frames could not be decoded or were missing", redact(str(uri)), counters["skipped"], total)
        return 1
    return 0


def _quiet(*_args: object) -> None:
    """``print`` that prints nothing."""


def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, build_parser(), _main, argv)


if __name__ == "__main__":
    sys.exit(main())
