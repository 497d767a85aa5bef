"""Is a path a V4L2 video capture device? Asked before a camera is opened, so ``--camera /dev/null``, a
regular file or a camera's metadata node fail at once with one line instead of reconnecting for ever."""
from __future__ import annotations

import fcntl
import os
import stat
import struct
from pathlib import Path

VIDIOC_QUERYCAP = 0x80685600  # _IOR('V', 0, struct v4l2_capability), 104 bytes
CAP_VIDEO_CAPTURE, CAP_VIDEO_CAPTURE_MPLANE, CAP_DEVICE_CAPS = 0x1, 0x1000, 0x80000000


def not_a_camera(path: str | Path) -> str | None:
    """Why ``path`` cannot be a camera, or None when it may be (or cannot be told: busy, no permission:
    then opening it says). A path that does not exist is not judged here (an unplugged camera)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISCHR(st.st_mode):
        return "is not a capture device (not a character device: a file or folder?)"
    subsystem = Path(f"/sys/dev/char/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}/subsystem")
    if subsystem.exists() and subsystem.resolve().name != "video4linux":
        return f"is not a video device (a {subsystem.resolve().name} device)"
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        buf = bytearray(104)
        fcntl.ioctl(fd, VIDIOC_QUERYCAP, buf)
    except OSError:
        return "is not a V4L2 device (VIDIOC_QUERYCAP refused)"
    finally:
        os.close(fd)
    caps, device_caps = struct.unpack_from("<II", buf, 84)
    node = device_caps if caps & CAP_DEVICE_CAPS else caps
    if not node & (CAP_VIDEO_CAPTURE | CAP_VIDEO_CAPTURE_MPLANE):
        return "is a V4L2 node without video capture (a metadata or output node of the camera? try the next /dev/videoN)"
    return None
