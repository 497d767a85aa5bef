"""Pipeline throughput vs the model alone: does capture, pre/post and encoding overlap with inference?

In one run, on the bundled demo clip (or ``--clip``) at its own size: the model alone, timed as
deblur-bench times it (the backend's ``infer`` on a preprocessed frame, warm-up, then ``--runs``
calls, p50, ONNX Runtime's default threads), and the whole pipeline on the clip as a file source
(decode -> Deblurrer -> H.264 MKV recording, headless, ``--workers`` inference threads as
``deblur-video`` uses for files), ``--passes`` times. Prints both FPS and their ratio; the target is a
pipeline at >= 95 % of the model's throughput.

    python benchmarks/video_throughput.py
    python benchmarks/video_throughput.py --model default --codec h264 --passes 3 --json throughput.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from deblur.runtime import Deblurrer
from deblur.runtime.fileio import atomic_write_text
from deblur.runtime.frames import preprocess
from deblur.runtime.ort_options import threads_per_worker
from deblur.runtime.timing import stats, time_step
from deblur.video.pipeline import Pipeline, PipelineOptions, Sinks
from deblur.video.recorder import Recorder
from deblur.video.source import VideoSource
from deblur.video.uri import DEMO_CLIP, parse_source


def model_fps(deblur: Deblurrer, frame: np.ndarray, runs: int, warmup: int = 3) -> tuple[float, float]:
    """(FPS, p99 ms) of the backend alone on one preprocessed frame, as deblur-bench measures it."""
    x, _ = preprocess(frame, deblur.backend.multiple, deblur.backend.min_size)
    s = stats(time_step(lambda: deblur.backend.infer(x), runs, warmup))
    return s["fps"], s["p99_ms"]


def pipeline_fps(deblur: list[Deblurrer], clip: Path, codec: str, out_dir: Path) -> tuple[float, dict]:
    """Output frames per second of the whole pipeline on ``clip`` (a file: nothing dropped)."""
    source = VideoSource(parse_source(str(clip)))
    sinks = Sinks(make_recorders=[lambda size, fps: Recorder(out_dir / "out.mkv", size, fps or 24.0, codec)])
    pipe = Pipeline(source, deblur, sinks, PipelineOptions(stats_every=0), threading.Event())
    t0 = time.perf_counter()
    pipe.run()
    wall = time.perf_counter() - t0
    return pipe.stats.frames_out / wall, {"frames": pipe.stats.frames_out, "wall_s": wall,
                                           "stages": pipe.stats.summary()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--clip", type=Path, default=DEMO_CLIP)
    ap.add_argument("--codec", default="h264", choices=["h264", "mjpg", "ffv1"])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--threads", type=int, help="CPU threads of the model alone (default: ONNX Runtime's)")
    ap.add_argument("--workers", type=int, default=2, help="pipeline inference threads, one CPU thread each "
                                                          "(default 2: what deblur-video --workers auto uses for files)")
    ap.add_argument("--json")
    a = ap.parse_args()
    import cv2

    cap = cv2.VideoCapture(str(a.clip))
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise SystemExit(f"cannot read {a.clip}")
    results = []
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        deblur = stack.enter_context(Deblurrer(a.model, threads=a.threads))
        per = threads_per_worker(a.workers, a.threads)
        workers = [stack.enter_context(Deblurrer(a.model, threads=per)) for _ in range(a.workers)]
        for _ in range(a.passes):  # interleaved, so background load hits both alike
            m_fps, m_p99 = model_fps(deblur, frame, a.runs)
            p_fps, detail = pipeline_fps(workers, a.clip, a.codec, Path(tmp))
            results.append({"model_fps": m_fps, "model_p99_ms": m_p99, "pipeline_fps": p_fps, "ratio": p_fps / m_fps, **detail})
    h, w = frame.shape[:2]
    print(f"{a.model} ({deblur.spec.name}, {deblur.backend_name}) on {a.clip.name}, {w}x{h}, recording {a.codec} MKV; "
          f"model alone with {a.threads or 'the default'} thread(s) (as deblur-bench), pipeline with {a.workers} inference "
          f"thread(s) of {per or 'the default'} thread(s) each (as deblur-video --workers auto for files)\n")
    print("| pass | model alone FPS (p50) | pipeline FPS | ratio | frames |\n|---:|---:|---:|---:|---:|")
    for i, r in enumerate(results, 1):
        print(f"| {i} | {r['model_fps']:.1f} | {r['pipeline_fps']:.1f} | {r['ratio']:.1%} | {r['frames']} |")
    med = float(np.median([r["ratio"] for r in results]))
    print(f"\nmedian ratio {med:.1%} (target >= 95%)")
    if a.json:
        atomic_write_text(a.json, json.dumps(results, indent=2) + "\n")
    return 0 if med >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
