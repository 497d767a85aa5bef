"""A camera and a viewer in one process, for the deblur-ros2 tests and benchmarks/ros2_rate.py.

Run with a Python that imports rclpy (the test venv): ``python ros2_peer.py JOB.pkl RESULT.pkl``.
JOB holds ``frames`` (dicts with the fields of sensor_msgs/Image, ``data`` as bytes), ``mode``
(``lockstep``: publish one frame, wait for its deblurred copy, or 0.3 s where the frame says
``reply: False``; ``rate``: publish at ``hz`` for
``seconds``, cycling the frames), ``ns`` (the node's namespace). Every image goes out with a
CameraInfo of the same stamp; stamps are wall-clock times at publication. RESULT holds what came
back: images (their fields and bytes, receipt time), camera infos, the last /diagnostics values (and those of the last second with frames),
and what was sent.
"""
from __future__ import annotations

import array
import pickle
import sys
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

FIELDS = ("encoding", "height", "width", "step", "is_bigendian")


def main(job_path: str, result_path: str) -> int:
    with open(job_path, "rb") as f:
        job = pickle.load(f)
    rclpy.init()
    node = rclpy.create_node("camera")
    ns = job.get("ns", "/cam")
    best_effort = job.get("pub_qos", "reliable") == "best_effort"
    pub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1 if best_effort else 10,
                         reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(Image, f"{ns}/image_raw", pub_qos)
    info_pub = node.create_publisher(CameraInfo, f"{ns}/camera_info", pub_qos)
    got: list[dict] = []
    infos: list[dict] = []
    diag: dict = {}
    busy: dict = {}

    def on_image(msg: Image) -> None:
        d = {k: getattr(msg, k) for k in FIELDS}
        d.update(data=bytes(msg.data), frame_id=msg.header.frame_id, t_recv=time.time(),
                 stamp=(msg.header.stamp.sec, msg.header.stamp.nanosec))
        got.append(d)

    def on_info(msg: CameraInfo) -> None:
        infos.append({"stamp": (msg.header.stamp.sec, msg.header.stamp.nanosec), "frame_id": msg.header.frame_id,
                      "k": list(msg.k), "width": msg.width, "height": msg.height})

    def on_diag(msg: DiagnosticArray) -> None:
        for s in msg.status:
            if s.name.endswith(": deblur"):
                diag.clear()
                diag.update({kv.key: kv.value for kv in s.values}, _message=s.message, _level=int.from_bytes(s.level, "little")
                            if isinstance(s.level, bytes) else int(s.level))
                if float(diag["frames_per_s"]) > 0:  # the last second that had frames: its stage timings
                    busy.clear()
                    busy.update(diag)

    sink = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
    sub = node.create_subscription(Image, f"{ns}/deblurred/image_raw", on_image, sink)
    node.create_subscription(CameraInfo, f"{ns}/deblurred/camera_info", on_info, sink)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)

    deadline = time.monotonic() + job.get("discovery_s", 30)
    while pub.get_subscription_count() < 1 or sub.get_publisher_count() < 1:  # the node is up and matched
        if time.monotonic() > deadline:
            print("ros2_peer: the node was not discovered", file=sys.stderr)
            return 3
        rclpy.spin_once(node, timeout_sec=0.05)
    sent: list[dict] = []

    def publish(frame: dict) -> tuple[int, int]:
        now = time.time_ns()
        msg = Image(height=frame["height"], width=frame["width"], encoding=frame["encoding"],
                    is_bigendian=frame["is_bigendian"], step=frame["step"])
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        msg.header.frame_id = frame.get("frame_id", "camera_optical_frame")
        msg.data = array.array("B", frame["data"])
        info = CameraInfo(header=msg.header, width=frame["width"], height=frame["height"])
        info.k = [500.0, 0.0, frame["width"] / 2, 0.0, 500.0, frame["height"] / 2, 0.0, 0.0, 1.0]
        pub.publish(msg)
        info_pub.publish(info)
        stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        sent.append({"stamp": stamp, "t_sent": now / 1e9})
        return stamp

    frames = job["frames"]
    if job["mode"] == "lockstep":
        for frame in frames:
            stamp = publish(frame)
            wait = time.monotonic() + (job.get("frame_timeout_s", 30) if frame.get("reply", True) else 0.3)
            while not any(g["stamp"] == stamp for g in got) and time.monotonic() < wait:
                rclpy.spin_once(node, timeout_sec=0.05)
    else:
        period, t0, i = 1.0 / job["hz"], time.monotonic(), 0
        while (now := time.monotonic()) < t0 + job["seconds"]:
            due = t0 + i * period
            if now >= due:
                publish(frames[i % len(frames)])
                i += 1
            else:
                rclpy.spin_once(node, timeout_sec=min(0.005, due - now))
    tail = time.monotonic() + job.get("tail_s", 2.0)  # the last frames and a /diagnostics message or two
    while time.monotonic() < tail:
        rclpy.spin_once(node, timeout_sec=0.05)
    with open(result_path, "wb") as f:
        pickle.dump({"images": got, "infos": infos, "diag": diag, "busy": busy, "sent": sent}, f)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
