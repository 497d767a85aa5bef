"""``deblur-ros2``: a ROS 2 node that deblurs a camera's ``sensor_msgs/Image`` stream.

    deblur-ros2 --ros-args -r image:=/camera/image_raw -r camera_info:=/camera/camera_info -p model:=g.onnx

Subscribes ``image`` and ``camera_info``; publishes ``deblurred/image_raw`` and ``deblurred/camera_info``
(all relative, so remappable and namespaced like image_proc). The header is copied verbatim and the
output keeps the input's encoding, ``step`` and byte order. The newest frame wins: callbacks only
store the latest message, one worker thread deblurs, and a frame replaced before the worker took it
counts as dropped. Each CameraInfo goes out unchanged with the deblurred image of the same stamp.
Timings and counts go to ``/diagnostics`` once a second.

Parameters (read at start): ``model`` (default ``default``), ``device`` (``cpu``, ``cuda:N``), ``threads``
(0: the CPUs this process may use), ``tile`` (``auto``, 0 or px), ``input_qos`` (``SENSOR_DATA``: best
effort), ``output_qos`` (``DEFAULT``: reliable), each ``SENSOR_DATA``, ``DEFAULT`` or ``SYSTEM_DEFAULT``
with depth 1 (Isaac ROS's names). SIGINT/SIGTERM end it with exit code 0; a bad parameter or model
is one line on stderr and exit code 2. Only this module imports rclpy, when the node starts.
"""
from __future__ import annotations

import array
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from deblur.runtime import tiling
from deblur.runtime.errors import DeblurError, InputError

log = logging.getLogger("deblur")
PROG = "deblur-ros2"
QOS_NAMES = ("SENSOR_DATA", "DEFAULT", "SYSTEM_DEFAULT")
USAGE = f"""usage: {PROG} [--ros-args -p NAME:=VALUE ... -r FROM:=TO ...]

Deblur a sensor_msgs/Image topic: subscribes image (+ camera_info), publishes deblurred/image_raw
(+ deblurred/camera_info), headers and encodings kept; the newest frame wins when the model is slower
than the camera; timings and drops on /diagnostics.

parameters: model (default 'default'), device (cpu | cuda:N), threads (0 = all), tile (auto | 0 | px),
            input_qos (SENSOR_DATA), output_qos (DEFAULT): SENSOR_DATA, DEFAULT or SYSTEM_DEFAULT, depth 1
example:    {PROG} --ros-args -r image:=/camera/image_raw -r camera_info:=/camera/camera_info -p model:=g_fp16.engine -p device:=cuda:0
"""


class Latest:
    """A one-message mailbox: ``put`` replaces what the worker has not taken yet (and counts it dropped)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False
        self.dropped = 0

    def put(self, item: Any) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float) -> Any:
        """The newest item, or None after ``timeout`` seconds or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return None if self._closed else item

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Stats:
    """Counts and per-stage milliseconds of the last diagnostics period (thread-safe)."""

    STAGES = ("convert_ms", "pre_ms", "infer_ms", "post_ms", "latency_ms")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = self.published = self.refused = self.failed = 0
        self._sums = dict.fromkeys(self.STAGES, 0.0)
        self._worst_latency = 0.0
        self._n = 0

    def frame(self, ms: dict[str, float]) -> None:
        with self._lock:
            self.published += 1
            self._n += 1
            for k in self.STAGES:
                self._sums[k] += ms.get(k, 0.0)
            self._worst_latency = max(self._worst_latency, ms.get("latency_ms", 0.0))

    def period(self) -> tuple[int, dict[str, float], float]:
        """Frames, mean ms per stage and the worst latency since the last call; resets them."""
        with self._lock:
            n, sums, worst = self._n, self._sums, self._worst_latency
            self._n, self._sums, self._worst_latency = 0, dict.fromkeys(self.STAGES, 0.0), 0.0
        return n, {k: v / n if n else 0.0 for k, v in sums.items()}, worst


def qos_profile(name: str, rclpy_qos: Any) -> Any:
    """Isaac ROS's QoS names with depth 1: the newest frame is the only one worth sending."""
    base = {"SENSOR_DATA": rclpy_qos.qos_profile_sensor_data, "DEFAULT": rclpy_qos.QoSProfile(depth=1),
            "SYSTEM_DEFAULT": rclpy_qos.qos_profile_system_default}.get(str(name).upper())
    if base is None:
        raise InputError(f"QoS {name!r} is not one of {', '.join(QOS_NAMES)}", hint="e.g. -p input_qos:=SENSOR_DATA")
    return rclpy_qos.QoSProfile(history=rclpy_qos.HistoryPolicy.KEEP_LAST, depth=1, reliability=base.reliability,
                                durability=base.durability)


def parse_tile(value: Any) -> int | str:
    return tiling.parse_tile(value, "tile parameter")


class _RosLogHandler(logging.Handler):
    """Lines of the ``deblur`` logger (the runtime's) go to the node's logger, so to /rosout."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__()
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelno
        fn = self.ros_logger.error if level >= logging.ERROR else self.ros_logger.warning if level >= logging.WARNING \
            else self.ros_logger.info if level >= logging.INFO else self.ros_logger.debug
        fn(self.format(record))


def make_node(rclpy: Any) -> Any:
    """The node (built here so that rclpy is imported only when the node starts)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy import qos as rclpy_qos
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image

    from deblur.robot import ros2_images

    class DeblurNode(Node):
        def __init__(self) -> None:
            super().__init__("deblur")
            any_type = ParameterDescriptor(dynamic_typing=True)
            self.declare_parameter("model", "default")
            self.declare_parameter("device", "cpu")
            self.declare_parameter("threads", 0)
            self.declare_parameter("tile", "auto", any_type)
            self.declare_parameter("input_qos", "SENSOR_DATA")
            self.declare_parameter("output_qos", "DEFAULT")
            p = {name: self.get_parameter(name).value for name in
                 ("model", "device", "threads", "tile", "input_qos", "output_qos")}
            qin, qout = qos_profile(p["input_qos"], rclpy_qos), qos_profile(p["output_qos"], rclpy_qos)
            threads = p["threads"]
            if not isinstance(threads, int) or threads < 0:
                raise InputError(f"bad threads parameter {threads!r}", hint="write 0 (all CPUs) or a count such as 2")

            self._handler = _RosLogHandler(self.get_logger())
            log.addHandler(self._handler)
            log.setLevel(logging.INFO)
            from deblur.runtime.deblurrer import Deblurrer

            self.deblur = Deblurrer(p["model"], device=p["device"], threads=threads or None, tile=parse_tile(p["tile"]))
            info = self.deblur.info
            self.model_line = f"{info['spec']} on {info['backend']} ({info['precision']}, {info['threads']} threads)"

            self.pub = self.create_publisher(Image, "deblurred/image_raw", qout)
            self.info_pub = self.create_publisher(CameraInfo, "deblurred/camera_info", qout)
            self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.create_subscription(Image, "image", self._on_image, qin)
            # CameraInfo is small and each must find its image: the input's reliability, a deeper history
            qinfo = rclpy_qos.QoSProfile(history=qin.history, depth=10, reliability=qin.reliability, durability=qin.durability)
            self.create_subscription(CameraInfo, "camera_info", self._on_info, qinfo)
            self.topic = self.resolve_topic_name("image")
            self.mailbox, self.stats = Latest(), Stats()
            self._infos: deque[Any] = deque(maxlen=16)     # CameraInfos waiting for their image
            self._sent: deque[tuple[int, int]] = deque(maxlen=16)  # stamps of published images
            self._info_lock = threading.Lock()
            self._logged: set[str] = set()
            self._last_diag = time.monotonic()
            self.create_timer(1.0, self._diagnostics)
            self.worker = threading.Thread(target=self._work, name="deblur-worker", daemon=True)
            self.worker.start()
            self.get_logger().info(f"deblurring {self.topic} -> {self.resolve_topic_name('deblurred/image_raw')}: "
                                   f"{self.model_line}; input QoS {p['input_qos']}, output QoS {p['output_qos']}")

        # callbacks: cheap, never block the executor
        def _on_image(self, msg: Any) -> None:
            self.stats.received += 1
            why = ros2_images.refusal(msg.encoding)
            if why is not None:
                self.stats.refused += 1
                self._once(f"encoding:{msg.encoding}", f"{self.topic}: {why}")
                return
            self.mailbox.put((msg, time.monotonic()))

        def _on_info(self, msg: Any) -> None:
            stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            with self._info_lock:
                if stamp in self._sent:  # its image went out already
                    self.info_pub.publish(msg)
                else:
                    self._infos.append(msg)

        # the worker thread
        def _work(self) -> None:
            while not self.mailbox.closed:
                item = self.mailbox.take(timeout=0.5)
                if item is None:
                    continue
                msg, t_in = item
                try:
                    self._deblur_one(msg, t_in)
                except Exception as e:  # noqa: BLE001 - the worker must outlive one bad frame
                    if not self.context.ok():  # SIGINT/SIGTERM shut rclpy down during this frame: not an error
                        return
                    self.stats.failed += 1  # a corrupt message: counted, said once
                    line = e.line() if isinstance(e, DeblurError) else f"{type(e).__name__}: {e}"
                    self._once(f"error:{type(e).__name__}", f"{self.topic}: {line}")

        def _deblur_one(self, msg: Any, t_in: float) -> None:
            t0 = time.perf_counter()
            frame = ros2_images.to_frame(msg, self.topic)
            t1 = time.perf_counter()
            sharp = self.deblur(frame)
            t2 = time.perf_counter()
            out = Image(header=msg.header, height=msg.height, width=msg.width, encoding=msg.encoding,
                        is_bigendian=msg.is_bigendian, step=msg.step)
            out.data = array.array("B", ros2_images.to_data(msg, sharp).tobytes())
            self.pub.publish(out)
            stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            with self._info_lock:
                self._sent.append(stamp)
                for info in [i for i in self._infos if (i.header.stamp.sec, i.header.stamp.nanosec) == stamp]:
                    self._infos.remove(info)
                    self.info_pub.publish(info)
            t3 = time.perf_counter()
            ms = dict(self.deblur.timings)
            ms["convert_ms"] = ((t1 - t0) + (t3 - t2)) * 1e3
            ms["latency_ms"] = (time.monotonic() - t_in) * 1e3
            self.stats.frame(ms)

        def _once(self, key: str, line: str) -> None:
            if key not in self._logged:
                self._logged.add(key)
                self.get_logger().error(line + " (said once; counted on /diagnostics)")

        def _diagnostics(self) -> None:
            now = time.monotonic()
            n, mean, worst = self.stats.period()
            seconds, self._last_diag = now - self._last_diag, now
            s = self.stats
            warn = s.refused or s.failed
            values = {"frames_per_s": f"{n / seconds:.2f}" if seconds > 0 else "0", "received": s.received,
                      "published": s.published, "dropped": self.mailbox.dropped, "refused": s.refused,
                      "failed": s.failed, "worst_latency_ms": f"{worst:.1f}", "model": self.model_line,
                      **{k: f"{v:.2f}" for k, v in mean.items()}}
            status = DiagnosticStatus(
                level=DiagnosticStatus.WARN if warn else DiagnosticStatus.OK,
                name=f"{self.get_fully_qualified_name()}: deblur", hardware_id=str(self.get_parameter("device").value),
                message=(f"{n / seconds:.1f} frames/s, {self.mailbox.dropped} dropped" if seconds > 0 else "starting")
                + (f", {s.refused} refused, {s.failed} failed" if warn else ""),
                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
            self.diag_pub.publish(DiagnosticArray(header=_header(self), status=[status]))

        def stop(self) -> None:
            """Let the worker finish the frame in hand (it never starts another), then free the model."""
            self.mailbox.close()
            self.worker.join(timeout=2.0)
            log.removeHandler(self._handler)
            if not self.worker.is_alive():
                self.deblur.close()

    def _header(node: Any) -> Any:
        from std_msgs.msg import Header

        return Header(stamp=node.get_clock().now().to_msg())

    return DeblurNode()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the node until SIGINT/SIGTERM (exit code 0); bad parameters or model: one line, exit code 2."""
    argv = list(sys.argv if argv is None else [PROG, *argv])
    user_args = argv[1:argv.index("--ros-args")] if "--ros-args" in argv else argv[1:]
    if "-h" in user_args or "--help" in user_args:
        print(USAGE, end="")
        return 0
    try:
        import rclpy
        from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
        from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    except ImportError as e:
        print(f"{PROG}: error: rclpy is not importable ({e}): source your ROS 2 setup "
              "(e.g. . /opt/ros/jazzy/setup.bash) before running it", file=sys.stderr)
        return 2
    rclpy.init(args=argv)  # installs rclpy's SIGINT/SIGTERM handlers: they end spin() below
    node = None
    try:
        node = make_node(rclpy)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except DeblurError as e:
        print(f"{PROG}: error: {e.line()}", file=sys.stderr)
        return e.exit_code
    except (InvalidParameterTypeException, InvalidParameterValueException) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - one line, as every deblur-* command
        if not rclpy.ok():  # SIGINT/SIGTERM while the model loaded: rclpy's context is gone, the setup fails on it
            return 0
        print(f"{PROG}: internal error: {type(e).__name__}: {e} (report it)", file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
