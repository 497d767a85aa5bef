"""Latency must not grow: a live source at twice the model's rate, keep-newest vs a plain FIFO.

Measures the model's rate on the clip's frames first (median of a few calls), starts a synthetic
live source (``synthetic://``) at twice that rate, runs the real pipeline headless for
``--seconds`` with each policy, and prints the p99 end-to-end latency of the first and last
``--window`` seconds with the verdict. The FIFO run is the
negative control: it must fail.

    python benchmarks/video_latency.py --seconds 60 --window 10
    python benchmarks/video_latency.py --model default --size 640x360 --json latency.json
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from deblur.runtime import Deblurrer
from deblur.runtime.fileio import atomic_write_text
from deblur.video.latency import latency_report, model_rate, run_live
from deblur.video.uri import DEMO_CLIP


def measure(model: str, size: tuple[int, int], seconds: float, window: float, threads: int | None = None) -> dict[str, Any]:
    import cv2

    cap = cv2.VideoCapture(str(DEMO_CLIP))
    ok, frame = cap.read()
    cap.release()
    frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    out: dict[str, Any] = {"model": model, "size": f"{size[0]}x{size[1]}", "seconds": seconds, "window_s": window}
    with Deblurrer(model, threads=threads) as deblur:
        rate = model_rate(deblur, frame)
        out["model_fps"], out["source_fps"] = rate, 2 * rate
        for policy in ("newest", "fifo"):
            pipe = run_live(deblur, policy, 2 * rate, size, seconds)
            rep = latency_report(pipe.stats, window, 2 * rate)
            out[policy] = {**rep.to_dict(), "dropped": pipe.source.dropped, "read": pipe.source.delivered,
                           "out": pipe.stats.frames_out}
    return out


def table(r: dict[str, Any]) -> str:
    lines = [f"model {r['model']} at {r['size']}: {r['model_fps']:.1f} FPS alone; live source at {r['source_fps']:.1f} FPS "
             f"for {r['seconds']:g} s, windows of {r['window_s']:g} s",
             "", "| policy | p99 first window ms | p99 last window ms | inference p99 ms | frame period ms | dropped | "
             "grows by > 1 period | below infer p99 + 2 periods | verdict |", "|---|---:|---:|---:|---:|---:|---|---|---|"]
    for policy in ("newest", "fifo"):
        p = r[policy]
        lines.append(f"| {policy} | {p['first_p99_ms']:.1f} | {p['last_p99_ms']:.1f} | {p['infer_p99_ms']:.1f} | "
                     f"{p['period_ms']:.1f} | {p['dropped']} | {'yes' if p['grows'] else 'no'} | "
                     f"{'yes' if p['bounded'] else 'no'} | {'pass' if p['passed'] else 'FAIL'} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--size", default="640x360", help="WxH of the frames (default 640x360)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.lower().split("x"))
    r = measure(a.model, (w, h), a.seconds, a.window, a.threads)
    print(table(r))
    if a.json:
        atomic_write_text(a.json, json.dumps(r, indent=2) + "\n")
    ok = r["newest"]["passed"] and not r["fifo"]["passed"]
    print(f"\nkeep-newest {'passes' if r['newest']['passed'] else 'FAILS'}; the FIFO negative control "
          f"{'fails, as it must' if not r['fifo']['passed'] else 'PASSES: the check cannot tell them apart'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
