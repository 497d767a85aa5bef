"""``sensor_msgs/Image`` <-> model frames for deblur-ros2: the encodings of robot/images.py plus YUV 4:2:2.

The model sees BGR(A) or gray; the output goes back into the input's encoding, ``step`` (row padding
kept) and byte order. YUV 4:2:2 (``yuyv``/``uyvy`` and their deprecated aliases ``yuv422_yuy2``/``yuv422``)
is decoded with OpenCV (BT.601, video range) and encoded back here with the inverse matrix, chroma
averaged over each pixel pair. No rclpy here: the node and the tests share these functions.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from deblur.robot.images import ENCODINGS, frame_to_data, image_to_frame
from deblur.runtime.errors import InputError

# ROS names (sensor_msgs/image_encodings.hpp): "yuv422" is UYVY, "yuv422_yuy2" is YUYV
YUV422 = {"yuyv": "yuyv", "yuv422_yuy2": "yuyv", "uyvy": "uyvy", "yuv422": "uyvy"}
TAKEN = (*ENCODINGS, *YUV422)
_DECODE = {"yuyv": cv2.COLOR_YUV2BGR_YUYV, "uyvy": cv2.COLOR_YUV2BGR_UYVY}
# BT.601 video range, RGB 0..255 -> Y 16..235, U/V 16..240: the inverse of what OpenCV decodes with
_Y = np.array([0.256788, 0.504129, 0.097906], np.float32)
_U = np.array([-0.148223, -0.290993, 0.439216], np.float32)
_V = np.array([0.439216, -0.367788, -0.071427], np.float32)


def refusal(encoding: str) -> str | None:
    """Why ``encoding`` cannot be deblurred (one line for the log), or None when it can."""
    if encoding in TAKEN:
        return None
    if encoding.startswith("bayer_"):
        return (f"Bayer encoding {encoding!r} is not deblurred: debayer first (image_proc's debayer node) and "
                f"remap its image_color output to this node's image")
    return f"encoding {encoding!r} is not deblurred (taken: {', '.join(TAKEN)})"


def to_frame(msg: Any, topic: str) -> np.ndarray:
    """The pixels of ``msg`` as a BGR(A) or gray uint8/uint16 array for the model (a copy)."""
    if msg.encoding not in YUV422:
        return image_to_frame(msg, topic)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if h < 1 or w < 2 or w % 2 or step < 2 * w or data.size < h * step:
        raise InputError(f"topic {topic}: a {w}x{h} {msg.encoding} image with step {step} has {data.size} data bytes "
                         f"(needs an even width, step >= {2 * w} and {h * step} bytes)", hint="the message is corrupt")
    px = np.ascontiguousarray(data[: h * step].reshape(h, step)[:, : 2 * w]).reshape(h, w, 2)
    return cv2.cvtColor(px, _DECODE[YUV422[msg.encoding]])


def to_data(msg: Any, frame: np.ndarray) -> np.ndarray:
    """``msg.data`` with its pixels replaced by ``frame`` (as ``to_frame`` gave it): step, padding and byte order kept."""
    if msg.encoding not in YUV422:
        return frame_to_data(msg, frame)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.array(msg.data, dtype=np.uint8)  # keeps the row padding
    data[: h * step].reshape(h, step)[:, : 2 * w] = bgr_to_yuv422(frame, YUV422[msg.encoding]).reshape(h, 2 * w)
    return data


def bgr_to_yuv422(bgr: np.ndarray, order: str) -> np.ndarray:
    """An HxWx3 uint8 BGR frame (even W) as HxWx2 YUYV or UYVY bytes."""
    rgb = bgr[..., ::-1].astype(np.float32)
    y = rgb @ _Y + 16.0
    pair = (rgb[:, 0::2] + rgb[:, 1::2]) * 0.5
    u, v = pair @ _U + 128.0, pair @ _V + 128.0
    h, w = bgr.shape[:2]
    out = np.empty((h, w, 2), np.float32)
    luma, chroma = (0, 1) if order == "yuyv" else (1, 0)
    out[..., luma] = y
    out[:, 0::2, chroma], out[:, 1::2, chroma] = u, v
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
