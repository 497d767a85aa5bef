"""ROS image messages <-> numpy frames, for ``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage``.

The message objects are rosbags' dataclasses (the same fields in ROS 1 and ROS 2). A raw image
keeps everything but its pixels: encoding, ``step`` with its row padding bytes, ``is_bigendian``
and the header; a compressed image keeps its codec (JPEG or PNG, told by the bytes, not the
``format`` string, which only names the source encoding) and its ``format`` string.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import numpy as np

from deblur.runtime.errors import InputError
from deblur.runtime.images import decode_image

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED)

# encoding -> (channels, bytes per channel, channel order of the data); the frame handed to the model is BGR(A) or gray
ENCODINGS: dict[str, tuple[int, int, str]] = {
    "mono8": (1, 1, "gray"), "bgr8": (3, 1, "bgr"), "rgb8": (3, 1, "rgb"), "bgra8": (4, 1, "bgr"), "rgba8": (4, 1, "rgb"),
    "mono16": (1, 2, "gray"), "bgr16": (3, 2, "bgr"), "rgb16": (3, 2, "rgb"), "bgra16": (4, 2, "bgr"), "rgba16": (4, 2, "rgb"),
}
JPEG_MAGIC, PNG_MAGIC = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"


def check_encoding(topic: str, encoding: str) -> None:
    """Refuse what cannot be deblurred as a colour or gray picture (Bayer, YUV, depth, float): one line."""
    if encoding not in ENCODINGS:
        raise InputError(f"topic {topic}: image encoding {encoding!r} is not supported",
                         hint=f"deblur-bag takes {', '.join(ENCODINGS)}; leave this topic out of --topic (it is copied as it is)")


def image_to_frame(msg: Any, topic: str) -> np.ndarray:
    """The pixels of a raw ``Image`` as a BGR(A) or gray uint8/uint16 array (a copy, native byte order)."""
    check_encoding(topic, msg.encoding)
    ch, nbytes, order = ENCODINGS[msg.encoding]
    h, w, step, data = int(msg.height), int(msg.width), int(msg.step), np.asarray(msg.data, dtype=np.uint8)
    row = w * ch * nbytes
    if h < 1 or w < 1 or step < row or data.size < h * step:
        raise InputError(f"topic {topic}: a {w}x{h} {msg.encoding} image with step {step} has {data.size} data bytes "
                         f"(needs step >= {row} and {h * step} bytes)", hint="the message is corrupt; leave this topic out")
    px = data[: h * step].reshape(h, step)[:, :row]
    if nbytes == 2:
        px = np.ascontiguousarray(px).view(">u2" if msg.is_bigendian else "<u2").astype(np.uint16)
    px = px.reshape((h, w) if ch == 1 else (h, w, ch))
    return _swap_rb(px) if order == "rgb" else np.ascontiguousarray(px)


def frame_to_image(msg: Any, frame: np.ndarray) -> Any:
    """``msg`` with its pixels replaced by ``frame`` (from ``image_to_frame``): same step, padding bytes, byte order."""
    return dataclasses.replace(msg, data=frame_to_data(msg, frame))


def frame_to_data(msg: Any, frame: np.ndarray) -> np.ndarray:
    """The ``data`` bytes of ``msg`` with its pixels replaced by ``frame``; for any message object (rosbags
    dataclasses, rclpy messages) with the fields of ``sensor_msgs/Image``."""
    ch, nbytes, order = ENCODINGS[msg.encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    px = _swap_rb(frame) if order == "rgb" else frame
    if nbytes == 2:
        px = px.astype(">u2" if msg.is_bigendian else "<u2")
    data = np.array(msg.data, dtype=np.uint8)  # keeps the row padding and any bytes past h * step
    data[: h * step].reshape(h, step)[:, : w * ch * nbytes] = np.ascontiguousarray(px).view(np.uint8).reshape(h, -1)
    return data


def codec(msg: Any, topic: str) -> str:
    """``"jpeg"`` or ``"png"`` from the data's first bytes; anything else (compressedDepth, other codecs) refused."""
    head = bytes(np.asarray(msg.data[:8], dtype=np.uint8))
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(PNG_MAGIC):
        return "png"
    raise InputError(f"topic {topic}: compressed image format {msg.format!r} is not JPEG or PNG",
                     hint="deblur-bag decodes JPEG and PNG only (not compressedDepth); leave this topic out of --topic")


def compressed_to_frame(msg: Any, topic: str) -> np.ndarray:
    codec(msg, topic)
    frame = decode_image(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if frame is None:
        raise InputError(f"topic {topic}: a compressed image ({msg.format!r}) does not decode",
                         hint="the message is corrupt; leave this topic out")
    return frame


def frame_to_compressed(msg: Any, frame: np.ndarray, topic: str, jpeg_quality: int) -> Any:
    """``msg`` with ``frame`` encoded in the input's codec; ``format`` kept."""
    kind = codec(msg, topic)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if kind == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(".jpg" if kind == "jpeg" else ".png", frame, params)
    if not ok:  # pragma: no cover - OpenCV encodes every array imdecode gives
        raise InputError(f"topic {topic}: OpenCV could not encode a {frame.shape} {frame.dtype} frame as {kind}")
    return dataclasses.replace(msg, data=buf.reshape(-1))


def _swap_rb(px: np.ndarray) -> np.ndarray:
    """RGB(A) <-> BGR(A): a contiguous copy with channels 0 and 2 exchanged."""
    order = [2, 1, 0, 3][: px.shape[2]]
    return np.ascontiguousarray(px[..., order])
