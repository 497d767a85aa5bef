"""Deblur the image topics of a recorded bag; copy every other message byte for byte.

One pass over the bag in its stored order, one message at a time: memory holds one frame and
the writer's current chunk, whatever the bag's length. Log times, headers (stamps, frame_id) and
every field but the pixels stay as they were. The output is written into a folder beside OUT and
renamed to OUT at the end (``bag_io.stage_folder``, ``bag_io.publish``).
"""
from __future__ import annotations

import errno
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deblur.robot import bag_io, images
from deblur.runtime.errors import InputError
from deblur.runtime.fileio import disk_full

log = logging.getLogger("deblur")


@dataclass
class BagJob:
    """What to do: IN, OUT, which topics, and how the deblurred ones are named and encoded."""

    src: Path
    out: Path
    topics: list[str]
    replace: bool = False
    storage: str | None = None  # ROS 2 folder output: sqlite3 or mcap (default: the input's)
    jpeg_quality: int = 95


@dataclass
class BagResult:
    out: Path
    frames: int = 0
    copied: int = 0
    seconds: float = 0.0
    topics: dict[str, str] = field(default_factory=dict)  # input topic -> output topic


def deblurred_topic(topic: str, msgtype: str) -> str:
    """``/cam/image_raw`` -> ``/cam/deblurred/image_raw``; a compressed transport keeps its suffix
    (``/cam/image_raw/compressed`` -> ``/cam/deblurred/image_raw/compressed``), as image_proc's nodes name theirs."""
    base, suffix = topic, ""
    if msgtype == images.COMPRESSED and topic.rstrip("/").endswith("/compressed") and topic.count("/") > 1:
        base, suffix = topic.rstrip("/")[: -len("/compressed")], "/compressed"
    ns, _, leaf = base.rstrip("/").rpartition("/")
    return f"{ns}/deblurred/{leaf}{suffix}"


class Plan:
    """The checked plan for one bag: kinds, connections of the chosen topics, output topic names."""

    def __init__(self, job: BagJob, reader: Any, kind: bag_io.BagKind):
        self.job, self.kind = job, kind
        self.out_kind = bag_io.output_kind(job.out, kind, job.storage)
        conns = list(reader.connections)
        by_topic: dict[str, list[Any]] = {}
        for c in conns:
            by_topic.setdefault(c.topic, []).append(c)
        self.selected: dict[int, Any] = {}
        self.names: dict[str, str] = {}
        for topic in job.topics:
            if topic not in by_topic:
                have = sorted(t for t, cs in by_topic.items() if cs[0].msgtype in images.IMAGE_TYPES)
                raise InputError(f"topic {topic} is not in this bag (its image topics: {', '.join(have) or 'none'})",
                                 job.src, hint="name a topic the bag holds with --topic")
            for c in by_topic[topic]:
                if c.msgtype not in images.IMAGE_TYPES:
                    raise InputError(f"topic {topic} holds {c.msgtype}, not sensor_msgs/Image or CompressedImage", job.src,
                                     hint="--topic takes image topics only; the others are copied as they are")
                self.selected[c.id] = c
            self.names[topic] = topic if job.replace else deblurred_topic(topic, by_topic[topic][0].msgtype)
            if not job.replace and self.names[topic] in by_topic:
                raise InputError(f"topic {self.names[topic]} (where {topic} deblurred would go) is already in this bag",
                                 job.src, hint="use --replace, or first rename that topic")
        self.connections = conns
        self.total = sum(max(c.msgcount, 0) for c in self.selected.values())


def check_first_frames(reader: Any, plan: Plan, typestore: Any) -> None:
    """Decode the first message of each chosen topic before any work: an encoding we refuse (Bayer,
    YUV, depth, compressedDepth) fails at once, not after an hour of deblurring."""
    seen: set[str] = set()
    for conn in plan.selected.values():
        if conn.topic in seen:
            continue
        gen = reader.messages(connections=[conn])
        try:
            first = next(iter(gen), None)
        except Exception:  # noqa: BLE001 - the full pass reports a damaged bag with the right words
            first = None
        finally:
            close = getattr(gen, "close", None)
            if close:
                close()
        if first is not None:
            seen.add(conn.topic)
            decode(first[2], conn, plan, typestore, first[1])


def deserialize(raw: bytes, conn: Any, plan: Plan, typestore: Any, stamp: int) -> Any:
    try:
        if plan.kind.ros2:
            return typestore.deserialize_cdr(raw, conn.msgtype)
        return typestore.deserialize_ros1(raw, conn.msgtype)
    except Exception as e:  # noqa: BLE001 - a message that does not parse is a damaged bag
        raise InputError(f"topic {conn.topic}: the message logged at {stamp} ns does not parse as {conn.msgtype} ({e})",
                         plan.job.src, hint="the bag is corrupt; leave this topic out of --topic") from None


def serialize(msg: Any, conn: Any, plan: Plan, typestore: Any) -> bytes:
    if plan.kind.ros2:
        return bytes(typestore.serialize_cdr(msg, conn.msgtype))
    return bytes(typestore.serialize_ros1(msg, conn.msgtype))


def decode(raw: bytes, conn: Any, plan: Plan, typestore: Any, stamp: int) -> tuple[Any, np.ndarray]:
    msg = deserialize(raw, conn, plan, typestore, stamp)
    if conn.msgtype == images.IMAGE:
        return msg, images.image_to_frame(msg, conn.topic)
    return msg, images.compressed_to_frame(msg, conn.topic)


def encode(msg: Any, frame: np.ndarray, conn: Any, plan: Plan, typestore: Any) -> bytes:
    if conn.msgtype == images.IMAGE:
        new = images.frame_to_image(msg, frame)
    else:
        new = images.frame_to_compressed(msg, frame, conn.topic, plan.job.jpeg_quality)
    return serialize(new, conn, plan, typestore)


def standard_typestore(kind: bag_io.BagKind) -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.LATEST if kind.ros2 else Stores.ROS1_NOETIC)


def check_image_types(plan: Plan, typestore: Any) -> None:
    """The image topics are parsed with the standard definitions: refuse a bag whose definition differs."""
    for conn in plan.selected.values():
        if not conn.digest:
            continue
        want = typestore.hash_rihs01(conn.msgtype) if plan.kind.ros2 else typestore.generate_msgdef(conn.msgtype)[1]
        if conn.digest != want:
            raise InputError(f"topic {conn.topic}: its {conn.msgtype} definition differs from the standard one "
                             f"(hash {conn.digest}, expected {want})", plan.job.src,
                             hint="the bag was recorded with a modified sensor_msgs; deblur-bag reads the standard one")


def run_bag(job: BagJob, deblur_factory: Callable[[], Callable[[np.ndarray], np.ndarray]],
            progress: bool | None = None) -> BagResult:
    """Deblur ``job``; ``deblur_factory`` makes the model once the bag has been checked (a bad bag fails fast)."""
    kind = bag_io.input_kind(job.src)
    _check_out(job)
    result = BagResult(job.out)
    with bag_io.open_reader(job.src, kind) as reader:
        plan = Plan(job, reader, kind)
        result.topics = dict(plan.names)
        typestore = standard_typestore(kind)
        check_image_types(plan, typestore)
        check_first_frames(reader, plan, typestore)
        log.info("%s (%s) -> %s (%s): %s", job.src, kind, job.out, plan.out_kind,
                 ", ".join(f"{a} -> {b}" for a, b in plan.names.items()))
        deblur = deblur_factory()
        stage = bag_io.stage_folder(job.out)
        try:
            compression = None
            if kind.kind == "ros2":
                compression = (getattr(reader, "compression_mode", None) or "", getattr(reader, "compression_format", None) or "")
            writer, product = bag_io.open_writer(plan.out_kind, stage, job.out.name, compression)
            t0 = time.perf_counter()
            try:
                with writer:
                    _copy(reader, writer, plan, typestore, deblur, result, progress)
                result.seconds = time.perf_counter() - t0
                bag_io.publish(product, job.out)
            except InputError:
                raise
            except Exception as e:  # the reader's failures are InputErrors already: this is the output side
                # sqlite3 ("database or disk is full") and rosbags' WriterError say ENOSPC in their own words
                if not (isinstance(e, OSError) or disk_full(stage)):
                    raise
                what = "disk full" if getattr(e, "errno", None) == errno.ENOSPC or disk_full(stage) else \
                    f"cannot write ({getattr(e, 'strerror', None) or e})"
                raise InputError(f"{what}; nothing was written under this name", job.out,
                                 hint="free space or choose another --out") from None
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            close = getattr(deblur, "close", None)
            if close is not None:
                close()
    return result


def _copy(reader: Any, writer: Any, plan: Plan, typestore: Any, deblur: Callable[[np.ndarray], np.ndarray],
          result: BagResult, progress: bool | None) -> None:
    from tqdm import tqdm

    out_ts = standard_typestore(plan.out_kind) if plan.out_kind.ros2 else typestore
    copy_conn: dict[int, Any] = {}
    deblur_conn: dict[int, Any] = {}
    for c in plan.connections:
        if c.id in plan.selected:
            deblur_conn[c.id] = bag_io.add_connection(writer, c, plan.names[c.topic], out_ts)
            if plan.job.replace:
                continue
        copy_conn[c.id] = bag_io.add_connection(writer, c, c.topic, out_ts)
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=plan.total or None, desc="deblur-bag", unit="frame", disable=not show, leave=False) as bar:
        for conn, stamp, raw in bag_io.messages(reader, plan.job.src, plan.kind):
            if conn.id in copy_conn:
                writer.write(copy_conn[conn.id], stamp, raw)
            if conn.id in deblur_conn:
                msg, frame = decode(raw, conn, plan, typestore, stamp)
                writer.write(deblur_conn[conn.id], stamp, encode(msg, deblur(frame), conn, plan, typestore))
                result.frames += 1
                bar.update(1)
            else:
                result.copied += 1


def _check_out(job: BagJob) -> None:
    from deblur.runtime.fileio import same_file

    out, src = job.out, job.src
    if same_file(out, src):
        raise InputError("--out is the input bag itself", out, hint="write to a new path: the input is read while OUT is written")
    if out.exists() or out.is_symlink():
        raise InputError("exists; deblur-bag never overwrites", out, hint="choose another --out, or delete it first")
    if src.is_dir() and src.resolve() in out.resolve().parents:
        raise InputError("--out is inside the input bag folder", out, hint="write the output beside the input, not in it")
