"""deblur-ros2 under a camera: output rate, stamp-to-receipt latency and drops.

    .venv/bin/python benchmarks/ros2_rate.py [--size 640x360] [--hz 30] [--seconds 10] [--threads 0] [--model default]

The node and a camera+viewer process (tests/robot/ros2_peer.py) run as two processes in a private
network namespace (root), rclpy from the Jazzy wheels in the tests' venv (tests/robot/ros2_env.py).
Latency is the wall-clock time from the frame's header stamp (set when the camera published it) to its
deblurred copy arriving at the viewer: transport both ways, the wait in the node and the model.
"""
from __future__ import annotations

import argparse
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "robot"))
from ros2_env import Netns, ros_env, venv_python  # noqa: E402
from test_ros2 import message, picture  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--hz", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--model", default="default")
    ap.add_argument("--encoding", default="bgr8")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    py = venv_python()
    tmp = Path(tempfile.mkdtemp(prefix="deblur-ros2-rate-"))
    env = ros_env(tmp)
    frames = [message(a.encoding, np.roll(picture(w, h), 7 * i, axis=1), frame_id=f"f{i}") for i in range(4)]
    (tmp / "job.pkl").write_bytes(pickle.dumps({"ns": "/cam", "mode": "rate", "hz": a.hz, "seconds": a.seconds,
                                                "frames": frames, "pub_qos": "best_effort", "tail_s": 2.0}))
    with Netns() as ns, open(tmp / "node.log", "w") as log:
        node = subprocess.Popen(ns.wrap([str(py), "-m", "deblur.robot.ros2_node", "--ros-args", "-r", "__ns:=/cam",
                                         "-r", "image:=image_raw", "-p", f"threads:={a.threads}", "-p", f"model:={a.model}"]),
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        while "deblurring /" not in (tmp / "node.log").read_text():
            if node.poll() is not None:
                sys.exit(f"the node ended: {(tmp / 'node.log').read_text()[-2000:]}")
            time.sleep(0.1)
        subprocess.run(ns.wrap([str(py), str(REPO / "tests" / "robot" / "ros2_peer.py"), str(tmp / "job.pkl"),
                                str(tmp / "res.pkl")]), env=env, check=True)
        t0 = time.monotonic()
        node.send_signal(signal.SIGTERM)
        rc = node.wait(timeout=10)
        stop_s = time.monotonic() - t0
    res = pickle.loads((tmp / "res.pkl").read_bytes())
    got = res["images"]
    lat = np.array([g["t_recv"] - (g["stamp"][0] + g["stamp"][1] / 1e9) for g in got]) * 1e3
    span = (got[-1]["t_recv"] - got[0]["t_recv"]) if len(got) > 1 else float("nan")
    d = res["diag"]
    print(f"{a.encoding} {w}x{h} at {a.hz:g} Hz for {a.seconds:g} s, threads {a.threads or 'all'}: {d.get('model')}")
    print(f"sent {len(res['sent'])}, node received {d.get('received')}, dropped in the node {d.get('dropped')}, "
          f"deblurred and received {len(got)} ({(len(got) - 1) / span:.1f} frames/s)")
    print(f"latency stamp->receipt: p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, "
          f"max {lat.max():.1f} ms")
    b = res["busy"]
    print(f"node stages (mean ms, last busy second): convert {b.get('convert_ms')}, pre {b.get('pre_ms')}, "
          f"infer {b.get('infer_ms')}, post {b.get('post_ms')}, in-node latency {b.get('latency_ms')}; "
          f"SIGTERM -> exit {rc} in {stop_s:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
