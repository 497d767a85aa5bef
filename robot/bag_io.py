"""Opening bags of every kind with rosbags, and writing their copies.

Kinds: ``ros1`` (a ``.bag`` file), ``ros2`` (a bag folder with ``metadata.yaml``, sqlite3 or MCAP
storage), ``mcap`` (a bare ``.mcap`` file) and ``db3`` (a bare sqlite3 file, input only). The
input's kind is told by its first bytes, not its name. Messages are copied as raw serialized bytes
on connections that carry the input's message definition and hash, so types rosbags does not know
survive; ROS 1 <-> ROS 2 is refused (it would re-serialise every message: ``rosbags-convert``).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deblur.runtime.errors import InputError
from deblur.runtime.fileio import fsync_dir, pid_alive

log = logging.getLogger("deblur")

ROS1_MAGIC, MCAP_MAGIC, SQLITE_MAGIC = b"#ROSBAG V2.0\n", b"\x89MCAP", b"SQLite format 3\x00"
STORAGES = ("sqlite3", "mcap")


@dataclass(frozen=True)
class BagKind:
    """What a bag is: ``kind`` (ros1, ros2, mcap, db3) and, for ROS 2, its storage (sqlite3, mcap)."""

    kind: str
    storage: str | None = None

    @property
    def ros2(self) -> bool:
        return self.kind != "ros1"

    def __str__(self) -> str:
        return {"ros1": "ROS 1 bag", "mcap": "MCAP file", "db3": "sqlite3 file"}.get(self.kind, f"ROS 2 bag ({self.storage})")


def input_kind(path: Path) -> BagKind:
    """Tell a bag's kind from its first bytes (or its ``metadata.yaml``); anything else is one InputError."""
    if not path.exists():
        raise InputError("bag not found", path, hint="pass a ROS 1 .bag, a ROS 2 bag folder or an .mcap file")
    if path.is_dir():
        meta = path / "metadata.yaml"
        if not meta.is_file():
            raise InputError("is a folder without metadata.yaml, not a ROS 2 bag", path,
                             hint="pass the bag folder itself, or its .mcap file")
        text = meta.read_text(errors="replace")
        storage = "mcap" if "storage_identifier: mcap" in text else "sqlite3"
        return BagKind("ros2", storage)
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(ROS1_MAGIC):
        return BagKind("ros1")
    if head.startswith(MCAP_MAGIC):
        return BagKind("mcap", "mcap")
    if head.startswith(SQLITE_MAGIC):
        return BagKind("db3", "sqlite3")
    what = "is empty" if not head else "is not a ROS 1 bag, an MCAP file or a ROS 2 bag folder"
    raise InputError(what, path, hint="pass a ROS 1 .bag, a ROS 2 bag folder or an .mcap file")


def output_kind(out: Path, src: BagKind, storage: str | None) -> BagKind:
    """OUT's suffix decides (``.bag``: ROS 1, ``.mcap``: a bare MCAP file), else the input's kind;
    a ROS 2 folder keeps the input's storage unless ``storage`` names one."""
    suffix = out.suffix.lower()
    kind = "ros1" if suffix == ".bag" else "mcap" if suffix == ".mcap" else ("ros1" if src.kind == "ros1" else "ros2")
    if (kind == "ros1") != (src.kind == "ros1"):
        raise InputError(f"cannot write a {'ROS 1 bag' if kind == 'ros1' else 'ROS 2 bag or MCAP file'} from a {src}", out,
                         hint="keep the input's ROS version (convert with rosbags-convert first, or choose another --out)")
    if kind == "ros2":
        return BagKind("ros2", storage or src.storage)
    return BagKind(kind, "mcap" if kind == "mcap" else None)


@contextlib.contextmanager
def open_reader(path: Path, kind: BagKind) -> Iterator[Any]:
    """An open rosbags reader; a bag it cannot open (truncated, corrupt) is one InputError naming it."""
    if kind.kind == "ros1":
        from rosbags.rosbag1 import Reader
    else:
        from rosbags.rosbag2 import Reader
    try:
        reader = Reader(path)
        reader.open()
    except Exception as e:  # noqa: BLE001 - every way a bag fails to open is the bag's problem
        raise InputError(f"cannot read this {kind}: it is truncated or corrupt ({_why(e)})", path, hint=_repair(kind)) from None
    try:
        yield reader
    finally:
        with contextlib.suppress(Exception):
            reader.close()


def messages(reader: Any, path: Path, kind: BagKind) -> Iterator[tuple[Any, int, bytes]]:
    """``reader.messages()``, with a failure while reading turned into one InputError naming the bag."""
    it = iter(reader.messages())
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except Exception as e:  # noqa: BLE001 - only the reader runs inside next(): its failure is the bag's
            raise InputError(f"this {kind} is truncated or corrupt ({_why(e)})", path, hint=_repair(kind)) from None
        yield item


def _repair(kind: BagKind) -> str:
    tool = {"ros1": "rosbag reindex", "mcap": "mcap recover"}.get(kind.kind, "ros2 bag reindex" if kind.storage == "sqlite3"
                                                                       else "mcap recover on its .mcap file")
    return f"a recording that was cut off can often be repaired with {tool}, then run deblur-bag on the result"


def _why(e: BaseException) -> str:
    text = str(e).strip().rstrip(".") or type(e).__name__
    return text.replace("\n", " ")[:200]


# ------------------------------------------------------------------------------------------ writing


def open_writer(kind: BagKind, folder: Path, name: str, compression: tuple[str, str] | None = None) -> tuple[Any, Path]:
    """A rosbags writer (not yet opened) that writes into ``folder``, and the path of what it makes there
    (a file or a bag folder), which the caller renames to OUT once it is closed."""
    if kind.kind == "ros1":
        from rosbags.rosbag1 import Writer as Writer1

        return Writer1(folder / name), folder / name
    from rosbags.rosbag2 import Writer as Writer2
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin

    plugin = StoragePlugin.MCAP if kind.storage == "mcap" else StoragePlugin.SQLITE3
    if kind.kind == "mcap":  # rosbags writes bag folders: write one and keep its .mcap
        stem = Path(name).stem or "bag"
        return Writer2(folder / stem, version=9, storage_plugin=plugin), folder / stem / f"{stem}.mcap"
    writer = Writer2(folder / name, version=9, storage_plugin=plugin)
    if compression and compression[0] in ("file", "message"):
        writer.set_compression(CompressionMode[compression[0].upper()], CompressionFormat[compression[1].upper()])
    return writer, folder / name


def add_connection(writer: Any, conn: Any, topic: str, typestore: Any) -> Any:
    """A connection on ``writer`` for ``topic`` with ``conn``'s type, definition, hash and QoS/callerid.

    A ROS 2 connection whose definition or hash the input lacks (MCAP stores no hash; Humble-era
    sqlite3 bags store neither) gets them from ``typestore`` where it knows the type."""
    from rosbags.interfaces import ConnectionExtRosbag1

    ext = conn.ext
    for have in writer.connections:  # the same topic, type and QoS/callerid twice: one connection
        if have.topic == topic and have.msgtype == conn.msgtype and have.ext == ext:
            return have
    if isinstance(ext, ConnectionExtRosbag1):
        return writer.add_connection(topic, conn.msgtype, msgdef=conn.msgdef.data, md5sum=conn.digest,
                                     callerid=ext.callerid, latching=ext.latching)
    msgdef, digest = conn.msgdef.data, conn.digest
    if not msgdef or not digest:
        known_def, known_digest = ros2_definition(conn, typestore)
        msgdef, digest = msgdef or known_def, digest or known_digest
    if msgdef and digest:
        return writer.add_connection(topic, conn.msgtype, msgdef=msgdef, rihs01=digest,
                                     serialization_format=ext.serialization_format,
                                     offered_qos_profiles=ext.offered_qos_profiles)
    log.warning("%s: type %s has no message definition in the bag and rosbags does not know it; copied without one",
                topic, conn.msgtype)
    return _add_bare_ros2_connection(writer, conn, topic)


def ros2_definition(conn: Any, typestore: Any) -> tuple[str, str]:
    """``(msgdef, rihs01)`` for ``conn``'s type: from the bag's own definition where it has one (registered
    into ``typestore``), else from the types ``typestore`` ships; ``("", "")`` when neither knows it."""
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    try:
        if conn.msgtype not in typestore.fielddefs and conn.msgdef.data:
            if conn.msgdef.format == MessageDefinitionFormat.MSG:
                typestore.register(get_types_from_msg(conn.msgdef.data, conn.msgtype))
            else:
                sep = "=" * 80 + "\n"
                parts = [p.split("\n", 1)[1] for p in conn.msgdef.data.split(sep)[1:]] or [conn.msgdef.data]
                for idl in parts:
                    typestore.register(get_types_from_idl(idl))
        msgdef, _ = typestore.generate_msgdef(conn.msgtype, ros_version=2)
        return msgdef, typestore.hash_rihs01(conn.msgtype)
    except Exception as e:  # noqa: BLE001 - an unparsable or unknown definition: the caller copies without one
        log.debug("no definition for %s: %s", conn.msgtype, e)
        return "", ""


def _add_bare_ros2_connection(writer: Any, conn: Any, topic: str) -> Any:
    """What ``rosbags.rosbag2.Writer.add_connection`` does, without the definition and hash it insists on
    (which a Humble-era bag of a custom type does not have, and which cannot be made up)."""
    from io import StringIO

    from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinition, MessageDefinitionFormat
    from rosbags.rosbag2.metadata import dump_qos_v9
    from ruamel.yaml import YAML

    new = Connection(id=len(writer.connections) + 1, topic=topic, msgtype=conn.msgtype,
                     msgdef=MessageDefinition(MessageDefinitionFormat.NONE, ""), digest="", msgcount=0,
                     ext=ConnectionExtRosbag2(conn.ext.serialization_format, list(conn.ext.offered_qos_profiles)),
                     owner=writer)
    dumped = dump_qos_v9(list(conn.ext.offered_qos_profiles))
    if not isinstance(dumped, str):
        stream = StringIO()
        yaml = YAML(typ="safe")
        yaml.default_flow_style = False
        yaml.dump(dumped, stream)
        dumped = stream.getvalue().strip()
    if conn.msgtype not in writer.added_types:
        writer.storage.add_msgtype(new)
        writer.added_types.add(conn.msgtype)
    writer.storage.add_connection(new, dumped)
    writer.connections.append(new)
    writer.counts[new.id] = 0
    return new


# ------------------------------------------------------------------------------------------ staging

STAGE_MARK = ".deblur-bag-"


def stage_folder(out: Path) -> Path:
    """A fresh folder beside OUT to write into (``.OUT.deblur-bag-PID.tmp``), after removing the ones that
    runs which no longer exist left behind (killed, power cut): a killed run never leaves a half bag
    under OUT's name, and the next run cleans its remains."""
    parent = out.parent
    prefix = f".{out.name}{STAGE_MARK}"
    for stale in parent.glob(f"{_glob_escape(prefix)}*.tmp"):
        pid = stale.name[len(prefix):-len(".tmp")]
        if pid.isdigit() and not pid_alive(int(pid)):
            log.info("removing %s, left by a run that was stopped", stale)
            shutil.rmtree(stale, ignore_errors=True)
    folder = parent / f"{prefix}{os.getpid()}.tmp"
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.mkdir(parents=True)
    except OSError as e:
        raise InputError(f"cannot write beside this path ({e.strerror})", out, hint="choose a writable --out folder") from None
    return folder


def publish(product: Path, out: Path) -> None:
    """fsync what was written, then rename it to OUT (refusing an OUT that appeared meanwhile)."""
    files = [product] if product.is_file() else [p for p in product.rglob("*") if p.is_file()]
    for f in files:
        with open(f, "rb+") as fh:
            os.fsync(fh.fileno())
    if out.exists() or out.is_symlink():
        raise InputError("exists (it appeared while deblur-bag ran); nothing was replaced", out, hint="choose another --out")
    os.rename(product, out)
    fsync_dir(out.parent)


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)
