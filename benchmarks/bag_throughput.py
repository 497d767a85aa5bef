"""deblur-bag throughput and memory: does it stream?

Writes a bare MCAP file of ``--frames`` 640x360 bgr8 ``sensor_msgs/Image`` frames (real photos,
shifted per frame) with a ``std_msgs/String`` beside each, runs the real ``deblur-bag`` on it in a
subprocess, and samples the child's RSS (``/proc/PID/status``) against its progress (the size of
the output being written, against the size it ends with). Streaming means the RSS at 25, 50 and 75 %
stays flat; peak RSS is the child's ``ru_maxrss``.

    python benchmarks/bag_throughput.py [--frames 1000] [--threads N] [--workdir DIR] [--keep]
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
W, H = 640, 360


def make_bag(path: Path, frames: int) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.LATEST)
    t = ts.types
    photos = [cv2.resize(cv2.imread(str(p)), (W, H), interpolation=cv2.INTER_AREA)
              for p in sorted((REPO / "train" / "samples" / "sharp").glob("*.png"))]
    folder = path.with_suffix("")
    with Writer(folder, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        cam = w.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        txt = w.add_connection("/status", "std_msgs/msg/String", typestore=ts)
        for i in range(frames):
            stamp = t["builtin_interfaces/msg/Time"](sec=1000 + i // 30, nanosec=(i % 30) * 33_333_333)
            img = np.roll(photos[i % len(photos)], 5 * i, axis=1)
            msg = t["sensor_msgs/msg/Image"](header=t["std_msgs/msg/Header"](stamp=stamp, frame_id="cam"), height=H, width=W,
                                             encoding="bgr8", is_bigendian=0, step=W * 3, data=img.reshape(-1))
            ns = 1_000_000_000 * (1000 + i // 30) + (i % 30) * 33_333_333
            w.write(cam, ns, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
            w.write(txt, ns + 1, ts.serialize_cdr(t["std_msgs/msg/String"](data=f"frame {i}"), "std_msgs/msg/String"))
    (folder / f"{folder.name}.mcap").rename(path)
    shutil.rmtree(folder)


def rss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--threads", type=int, help="passed to deblur-bag --threads")
    ap.add_argument("--model", default="default")
    ap.add_argument("--workdir", type=Path, help="where the bags go (default: a temp folder, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the bags")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="deblur-bag-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    src, out = work / "in.mcap", work / "out.mcap"
    for p in (src, out):
        p.unlink(missing_ok=True)
    t0 = time.perf_counter()
    make_bag(src, args.frames)
    print(f"input: {src} {args.frames} frames {W}x{H}, {src.stat().st_size / 2**20:.0f} MiB, made in {time.perf_counter() - t0:.0f} s")

    cmd = [sys.executable, "-m", "deblur.robot.bag_cli", str(src), "--topic", "/cam/image_raw", "--out", str(out),
           "--model", args.model]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    expected = 2 * src.stat().st_size  # the output holds the input and a deblurred copy of every frame
    samples: list[tuple[float, float]] = []  # (progress 0..1, RSS MiB)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        staged = [p for p in work.glob(".out.mcap.deblur-bag-*.tmp/**/*.mcap")]
        size = sum(p.stat().st_size for p in staged if p.exists()) if staged else 0
        rss = rss_mb(proc.pid)
        if rss is not None:
            samples.append((min(size / expected, 1.0), rss))
        time.sleep(0.05)
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"deblur-bag failed ({proc.returncode}): {err.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    cli_fps = re.search(r"\(([\d.]+) frames/s\)", err)
    print(f"deblur-bag: {args.frames / wall:.2f} frames/s end to end ({wall:.0f} s, model load included); "
          f"{cli_fps.group(1) if cli_fps else '?'} frames/s in the copy loop")
    print(f"peak RSS {peak:.0f} MiB; output {out.stat().st_size / 2**20:.0f} MiB")
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        at = [r for p, r in samples if p >= q]
        print(f"  RSS at {q:4.0%} of the output written: {at[0]:.0f} MiB" if at else f"  RSS at {q:.0%}: no sample")
    if not args.keep and not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
