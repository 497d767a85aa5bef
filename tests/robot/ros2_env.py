"""A Python with rclpy for the deblur-ros2 tests, and a private network namespace to run ROS 2 in.

rclpy comes from the unofficial PyPI wheels of ROS 2 Jazzy (x86_64 only, Fast DDS). They go into a
venv of their own, layered over this project's environment (a ``.pth`` adds its site-packages, so
deblur, numpy, OpenCV and ONNX Runtime are not installed twice); numpy is pinned to this
environment's version so that the layer above cannot shadow it with another. The venv is built once
per requirement set and Python (~15 s, ~250 MB) under the temp folder, or at ``$DEBLUR_ROS_VENV``.
"""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROS_PACKAGES = ["ros-jazzy-rclpy==7.1.6", "ros-jazzy-rmw-fastrtps-cpp==8.4.3", "ros-jazzy-sensor-msgs==5.3.6",
                "ros-jazzy-diagnostic-msgs==5.3.6"]


class Unavailable(Exception):
    """Why ROS 2 cannot run here (the tests skip with it)."""


def venv_python() -> Path:
    """The venv's python, built if missing; raises Unavailable with the reason when it cannot be built."""
    import numpy

    reqs = [*ROS_PACKAGES, f"numpy=={numpy.__version__}"]
    key = hashlib.sha256("\n".join([*reqs, sys.version, sys.prefix]).encode()).hexdigest()[:12]
    root = Path(os.environ.get("DEBLUR_ROS_VENV") or Path(tempfile.gettempdir()) / f"deblur-ros2-venv-{key}")
    py = root / "bin" / "python"
    if (root / ".deblur-ready").exists():
        return py
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        raise Unavailable("the rclpy wheels on PyPI are for Linux x86_64 only")
    tmp = root.with_name(f"{root.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    try:
        subprocess.run([str(base), "-m", "venv", str(tmp)], check=True, capture_output=True, text=True, timeout=120)
        pip = subprocess.run([str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", "--no-input",
                              "--disable-pip-version-check", *reqs], capture_output=True, text=True, timeout=600)
        if pip.returncode:
            lines = [ln for ln in (pip.stderr + pip.stdout).splitlines() if ln.strip() and "is ignored" not in ln]
            raise Unavailable(f"pip could not install the ROS 2 Jazzy wheels: {lines[-1] if lines else pip.returncode}")
        site = Path(sysconfig.get_path("purelib", vars={"base": str(tmp), "platbase": str(tmp)}))
        (site / "zz_deblur_layer.pth").write_text(f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n")
        check = subprocess.run([str(tmp / "bin" / "python"), "-c", "import rclpy, sensor_msgs.msg, diagnostic_msgs.msg, "
                                "deblur.runtime.deblurrer; rclpy.init(); rclpy.shutdown()"],
                               capture_output=True, text=True, timeout=120)
        if check.returncode:
            raise Unavailable(f"rclpy does not load: {check.stderr.strip().splitlines()[-1:]}")
        (tmp / ".deblur-ready").write_text("\n".join(reqs) + "\n")
        try:
            tmp.rename(root)
        except OSError:  # another run finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except (OSError, subprocess.SubprocessError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise Unavailable(f"could not build the rclpy venv: {e}") from e
    except Unavailable:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return py


class Netns:
    """A private network namespace with only ``lo`` (up), held open by a ``sleep`` process; ``wrap`` puts a
    command into it. DDS discovery and data stay inside: nothing reaches any other interface."""

    def __enter__(self) -> Netns:
        if os.geteuid() != 0:
            raise Unavailable("a private network namespace needs root (unshare -n)")
        for tool in ("unshare", "nsenter", "ip"):
            if shutil.which(tool) is None:
                raise Unavailable(f"{tool} is not installed (util-linux, iproute2)")
        self.holder = subprocess.Popen(["unshare", "-n", "sleep", "3600"])
        own = os.readlink("/proc/self/ns/net")
        self.path = f"/proc/{self.holder.pid}/ns/net"
        deadline = time.monotonic() + 5
        while True:
            try:
                if os.readlink(self.path) != own:
                    break
            except OSError:
                pass
            if self.holder.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise Unavailable("unshare -n did not make a network namespace here")
            time.sleep(0.01)
        up = subprocess.run(self.wrap(["ip", "link", "set", "lo", "up"]), capture_output=True, text=True)
        if up.returncode:
            self.__exit__()
            raise Unavailable(f"cannot bring lo up in the namespace: {up.stderr.strip()}")
        return self

    def wrap(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net={self.path}", *argv]

    def __exit__(self, *exc: object) -> None:
        if self.holder.poll() is None:
            self.holder.send_signal(signal.SIGKILL)
        self.holder.wait()


def ros_env(log_dir: Path) -> dict[str, str]:
    """Our environment with DDS kept on this host, a domain of its own, and ROS logs in ``log_dir``."""
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(random.randint(1, 100)), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               RMW_IMPLEMENTATION="rmw_fastrtps_cpp", ROS_LOG_DIR=str(log_dir), ROS_HOME=str(log_dir),
               PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    return env
