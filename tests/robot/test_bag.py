"""deblur-bag end to end: real bags written here with rosbags (ROS 1, ROS 2 sqlite3 and MCAP, a bare
.mcap), the real CLI in a subprocess, the result read back with a second reader (the official
``mcap`` + ``mcap_ros2`` for MCAP; rosbags for the others) and compared with ``Deblurrer`` run here
on the same frames."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rosbags", reason="deblur-bag needs rosbags: pip install 'deblur-edge[bag]'")

from rosbags.typesys import Stores, get_types_from_msg, get_typestore  # noqa: E402

from deblur.runtime.deblurrer import Deblurrer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "train" / "samples" / "sharp"
CUSTOM = "float64 x\nstring label\nint32[] values"
IMG, STR, CUS = "sensor_msgs/msg/Image", "std_msgs/msg/String", "my_pkg/msg/Custom"
CIMG = "sensor_msgs/msg/CompressedImage"
T0 = 1_700_000_000_000_000_000
THREADS = "1"


# ------------------------------------------------------------------------------------------ helpers


def typestore(ros1: bool):
    ts = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.LATEST)
    ts.register(get_types_from_msg(CUSTOM, CUS))
    return ts


def pictures(n: int, w: int = 96, h: int = 64) -> list[np.ndarray]:
    """Real photos (the training samples), cropped and shifted so no two frames are equal."""
    photos = [cv2.imread(str(p)) for p in sorted(SAMPLES.glob("*.png"))]
    return [cv2.resize(np.roll(photos[i % len(photos)], 7 * i, axis=1), (w, h), interpolation=cv2.INTER_AREA) for i in range(n)]


def header(ts, ros1: bool, i: int):
    t = ts.types
    extra = {"seq": i} if ros1 else {}
    return t["std_msgs/msg/Header"](**extra, stamp=t["builtin_interfaces/msg/Time"](sec=1000 + i, nanosec=123 + i), frame_id="cam")


def raw_image(ts, ros1: bool, i: int, frame: np.ndarray, encoding: str, big: int = 0, pad: int = 0):
    """An Image message holding ``frame`` (already in the encoding's channel order) with ``pad`` bytes per row."""
    h, w = frame.shape[:2]
    px = frame.astype(">u2" if big else "<u2") if frame.dtype == np.uint16 else frame
    rows = np.ascontiguousarray(px).view(np.uint8).reshape(h, -1)
    data = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1).reshape(-1)
    return ts.types[IMG](header=header(ts, ros1, i), height=h, width=w, encoding=encoding, is_bigendian=big,
                         step=rows.shape[1] + pad, data=data)


def compressed(ts, ros1: bool, i: int, frame: np.ndarray, kind: str):
    ok, buf = cv2.imencode(".jpg" if kind == "jpeg" else ".png", frame)
    fmt = "bgr8; jpeg compressed bgr8" if kind == "jpeg" else "png"
    return ts.types[CIMG](header=header(ts, ros1, i), format=fmt, data=buf.reshape(-1))


def write_bag(path: Path, kind: str, topics: dict[str, tuple[str, list]]) -> Path:
    """``topics``: name -> (type, messages); every topic also gets /chatter (String) and /custom (an unknown type).
    kind: ros1, sqlite3, mcap (bag folders) or bare (a .mcap file). Messages interleave by log time."""
    ros1 = kind == "ros1"
    ts = typestore(ros1)
    n = max(len(m) for _, m in topics.values())
    extra = {"/chatter": (STR, [ts.types[STR](data=f"hello {i}") for i in range(n)]),
             "/custom": (CUS, [ts.types[CUS](x=i / 3, label=f"n{i}", values=np.arange(i, dtype=np.int32)) for i in range(n)])}
    allt = {**topics, **extra}
    if ros1:
        from rosbags.rosbag1 import Writer

        writer, ser = Writer(path), ts.serialize_ros1
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer

        folder = path.with_suffix("") if kind == "bare" else path
        writer = Writer(folder, version=9, storage_plugin=StoragePlugin.SQLITE3 if kind == "sqlite3" else StoragePlugin.MCAP)
        ser = ts.serialize_cdr
    with writer:
        conns = {t: writer.add_connection(t, typ, typestore=ts) for t, (typ, _) in allt.items()}
        for i in range(n):
            for k, (t, (typ, msgs)) in enumerate(allt.items()):
                if i < len(msgs):
                    writer.write(conns[t], T0 + i * 50_000_000 + k, ser(msgs[i], typ))
    if kind == "bare":
        (folder / f"{folder.name}.mcap").rename(path)
        import shutil

        shutil.rmtree(folder)
    return path


def read_bag(path: Path) -> list[tuple[str, str, int, bytes]]:
    """(topic, type, log time, raw bytes) of every message, in the stored order, with rosbags."""
    from rosbags.rosbag1 import Reader as R1
    from rosbags.rosbag2 import Reader as R2

    reader = R1(path) if path.suffix == ".bag" else R2(path)
    with reader:
        return [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]


def read_mcap(path: Path) -> tuple[list[tuple[str, int, bytes, object]], dict[str, bytes]]:
    """With the official reader: (topic, log time, raw, decoded) per message, and the schema data per topic."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out, schemas = [], {}
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            out.append((channel.topic, message.log_time, bytes(message.data), decoded))
            schemas[channel.topic] = schema.data
    return out, schemas


def by_topic(msgs):
    d: dict[str, list] = {}
    for m in msgs:
        d.setdefault(m[0], []).append(m)
    return d


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deblur.robot.bag_cli", *args, "--threads", THREADS],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def error_line(p: subprocess.CompletedProcess) -> str:
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


@pytest.fixture(scope="module")
def deblur():
    """The reference: the same bundled model with the same thread count as the CLI runs (its backend choice is cached
    for this test session and shared with the subprocesses)."""
    with Deblurrer("default", threads=int(THREADS)) as d:
        yield d


@pytest.fixture(scope="module")
def deblur_rgb():
    with Deblurrer("default", threads=int(THREADS), rgb=True) as d:
        yield d


# ------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("kind", ["ros1", "sqlite3", "mcap"])
def test_bag_formats_deblur_images_and_copy_the_rest(tmp_path, deblur, kind):
    ros1 = kind == "ros1"
    ts = typestore(ros1)
    frames = pictures(3)
    src = write_bag(tmp_path / ("in.bag" if ros1 else "in"), kind,
                    {"/cam/image_raw": (IMG, [raw_image(ts, ros1, i, f, "bgr8") for i, f in enumerate(frames)])})
    out = tmp_path / ("out.bag" if ros1 else "out")
    p = cli(str(src), "--topic", "/cam/image_raw", "--out", str(out))
    assert p.returncode == 0, p.stderr
    a, b = by_topic(read_bag(src)), by_topic(read_bag(out))
    assert set(b) == {"/cam/image_raw", "/cam/deblurred/image_raw", "/chatter", "/custom"}
    for t in ("/cam/image_raw", "/chatter", "/custom"):  # byte for byte, same log times, same types
        assert b[t] == a[t], t
    got = b["/cam/deblurred/image_raw"]
    assert [m[2] for m in got] == [m[2] for m in a["/cam/image_raw"]]  # log times
    for (_, typ, _, raw), (_, _, _, raw_in), frame in zip(got, a["/cam/image_raw"], frames):
        msg = ts.deserialize_ros1(raw, typ) if ros1 else ts.deserialize_cdr(raw, typ)
        msg_in = ts.deserialize_ros1(raw_in, typ) if ros1 else ts.deserialize_cdr(raw_in, typ)
        assert msg.header == msg_in.header  # stamps, frame_id (and ROS 1 seq) untouched
        assert (msg.encoding, msg.height, msg.width, msg.step) == ("bgr8", 64, 96, 288)
        want = deblur(frame)
        assert not np.array_equal(want, frame)
        np.testing.assert_array_equal(np.asarray(msg.data).reshape(64, 96, 3), want)
    if not ros1:  # the unknown type's definition is carried into the copy
        with_def = {c.topic: c.msgdef.data for c in _connections(out)}
        assert "int32[] values" in with_def["/custom"]


def _connections(path: Path):
    from rosbags.rosbag2 import Reader

    with Reader(path) as r:
        return list(r.connections)


def test_bare_mcap_read_back_with_the_official_reader(tmp_path, deblur):
    pytest.importorskip("mcap_ros2", reason="the second MCAP reader: pip install mcap mcap-ros2-support")
    ts = typestore(False)
    frames = pictures(3)
    src = write_bag(tmp_path / "in.mcap", "bare",
                    {"/cam/image_raw": (IMG, [raw_image(ts, False, i, f, "bgr8") for i, f in enumerate(frames)])})
    out = tmp_path / "out.mcap"
    p = cli(str(src), "--topic", "/cam/image_raw", "--out", str(out))
    assert p.returncode == 0, p.stderr
    a, schemas_in = read_mcap(src)
    b, schemas_out = read_mcap(out)
    a, b = by_topic(a), by_topic(b)
    for t in ("/cam/image_raw", "/chatter", "/custom"):
        assert [(m[1], m[2]) for m in b[t]] == [(m[1], m[2]) for m in a[t]], t
        assert schemas_out[t] == schemas_in[t]
    assert [m[3].label for m in b["/custom"]] == ["n0", "n1", "n2"]  # decodes with the definition the file carries
    got = b["/cam/deblurred/image_raw"]
    assert [m[1] for m in got] == [m[1] for m in a["/cam/image_raw"]]
    for m, m_in, frame in zip(got, a["/cam/image_raw"], frames):
        msg, msg_in = m[3], m_in[3]
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == \
               (msg_in.header.stamp.sec, msg_in.header.stamp.nanosec, "cam")
        np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(64, 96, 3), deblur(frame))


def test_replace_and_compressed_jpeg_png(tmp_path, deblur):
    ts = typestore(True)
    frames = pictures(3)
    src = write_bag(tmp_path / "in.bag", "ros1", {
        "/cam/image_raw/compressed": (CIMG, [compressed(ts, True, i, f, "jpeg") for i, f in enumerate(frames)]),
        "/side/image/compressed": (CIMG, [compressed(ts, True, i, f, "png") for i, f in enumerate(frames)]),
    })
    out = tmp_path / "out.bag"
    p = cli(str(src), "--topic", "/cam/image_raw/compressed", "--topic", "/side/image/compressed", "--out", str(out), "--replace")
    assert p.returncode == 0, p.stderr
    a, b = by_topic(read_bag(src)), by_topic(read_bag(out))
    assert set(b) == set(a)  # replaced in place: no new topics
    for t in ("/chatter", "/custom"):
        assert b[t] == a[t]
    for t, codec, magic in (("/cam/image_raw/compressed", ".jpg", b"\xff\xd8\xff"), ("/side/image/compressed", ".png", b"\x89PNG")):
        assert [m[2] for m in b[t]] == [m[2] for m in a[t]]
        for m, m_in in zip(b[t], a[t]):
            msg, msg_in = ts.deserialize_ros1(m[3], CIMG), ts.deserialize_ros1(m_in[3], CIMG)
            assert msg.header == msg_in.header and msg.format == msg_in.format
            data = bytes(np.asarray(msg.data))
            assert data.startswith(magic) and data != bytes(np.asarray(msg_in.data))
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if codec == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
            want = deblur(cv2.imdecode(np.asarray(msg_in.data), cv2.IMREAD_UNCHANGED))
            assert data == cv2.imencode(codec, want, params)[1].tobytes()


def test_default_names_for_compressed_topics(tmp_path):
    from deblur.robot.bag import deblurred_topic

    assert deblurred_topic("/cam/image_raw", IMG) == "/cam/deblurred/image_raw"
    assert deblurred_topic("/cam/image_raw/compressed", CIMG) == "/cam/deblurred/image_raw/compressed"
    assert deblurred_topic("/image", IMG) == "/deblurred/image"


ENCODINGS = [("bgr8", 3, 0), ("rgb8", 3, 0), ("mono8", 1, 0), ("bgra8", 4, 0), ("rgba8", 4, 0),
             ("mono16", 1, 1), ("bgr16", 3, 1), ("rgb16", 3, 0)]


def test_encodings_step_and_endianness_round_trip(tmp_path, deblur, deblur_rgb):
    """Every encoding in one ROS 2 bag, rows padded (step > width * bytes), 16-bit in both byte orders; the output
    keeps encoding, step, padding bytes and byte order, and its pixels are Deblurrer's on the same frame."""
    ts = typestore(False)
    base = pictures(2, 40, 24)
    topics, inputs = {}, {}
    for enc, ch, big in ENCODINGS:
        fr = []
        for f in base:
            g = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) if ch == 1 else f
            if ch == 4:
                g = np.dstack([f, np.arange(f.shape[0] * f.shape[1], dtype=np.uint8).reshape(f.shape[:2])])
            if enc.startswith("rgb"):
                g = g[..., [2, 1, 0, 3][:ch]]
            if "16" in enc:
                g = g.astype(np.uint16) * 257 + 3
            fr.append(np.ascontiguousarray(g))
        inputs[enc] = fr
        topics[f"/e/{enc}"] = (IMG, [raw_image(ts, False, i, g, enc, big=big, pad=8) for i, g in enumerate(fr)])
    src = write_bag(tmp_path / "in", "mcap", topics)
    out = tmp_path / "out"
    p = cli(str(src), *[a for enc, _, _ in ENCODINGS for a in ("--topic", f"/e/{enc}")], "--out", str(out), "--storage", "sqlite3")
    assert p.returncode == 0, p.stderr
    assert (out / "out.db3").is_file()  # --storage: MCAP in, sqlite3 out
    b = by_topic(read_bag(out))
    for enc, ch, big in ENCODINGS:
        for i, (m, frame) in enumerate(zip(b[f"/e/deblurred/{enc}"], inputs[enc])):
            msg = ts.deserialize_cdr(m[3], IMG)
            h, w = frame.shape[:2]
            nb = 2 if "16" in enc else 1
            assert (msg.encoding, msg.is_bigendian, msg.step) == (enc, big, w * ch * nb + 8)
            rows = np.asarray(msg.data).reshape(h, -1)
            assert (rows[:, -8:] == 0xAB).all()  # padding bytes kept
            px = rows[:, :-8].copy().view((">u2" if big else "<u2") if nb == 2 else np.uint8).astype(frame.dtype)
            px = px.reshape(frame.shape)
            want = (deblur_rgb if enc.startswith("rgb") else deblur)(frame)
            np.testing.assert_array_equal(px, want, err_msg=f"{enc} frame {i}")
            assert not np.array_equal(px, frame)


def _bag_with_image(tmp_path: Path, kind: str, n: int = 3, w: int = 96, h: int = 64, encoding: str = "bgr8") -> Path:
    ros1 = kind == "ros1"
    ts = typestore(ros1)
    name = {"ros1": "in.bag", "bare": "in.mcap"}.get(kind, "in")
    return write_bag(tmp_path / name, kind, {"/cam/image_raw": (IMG, [raw_image(ts, ros1, i, f, encoding)
                                                                      for i, f in enumerate(pictures(n, w, h))])})


@pytest.mark.parametrize("kind", ["ros1", "sqlite3", "mcap", "bare"])
def test_truncated_bag_is_one_line_exit_2(tmp_path, kind):
    src = _bag_with_image(tmp_path, kind)
    data = src if src.is_file() else next(p for p in src.iterdir() if p.suffix in (".db3", ".mcap"))
    os.truncate(data, data.stat().st_size * 6 // 10)
    out = tmp_path / ("out.bag" if kind == "ros1" else "out.mcap" if kind == "bare" else "out")
    p = cli(str(src), "--topic", "/cam/image_raw", "--out", str(out))
    assert p.returncode == 2, p.stderr
    line = error_line(p)
    assert str(src) in line and "truncated or corrupt" in line
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_user_errors_are_one_line_exit_2(tmp_path):
    src = _bag_with_image(tmp_path, "ros1")
    junk = tmp_path / "junk.bag"
    junk.write_bytes(os.urandom(4096))
    existing = tmp_path / "exists.bag"
    existing.write_bytes(b"keep")
    cases = [
        ((str(src), "--topic", "/nope", "--out", str(tmp_path / "o1.bag")), ["/nope", str(src), "/cam/image_raw"]),
        ((str(src), "--topic", "/chatter", "--out", str(tmp_path / "o2.bag")), ["/chatter", "std_msgs/msg/String"]),
        ((str(junk), "--topic", "/cam/image_raw", "--out", str(tmp_path / "o3.bag")), [str(junk), "not a ROS 1 bag"]),
        ((str(src), "--topic", "/cam/image_raw", "--out", str(existing)), [str(existing), "exists"]),
        ((str(src), "--topic", "/cam/image_raw", "--out", str(src)), [str(src), "input bag itself"]),
        ((str(src), "--topic", "/cam/image_raw", "--out", str(tmp_path / "o4")), []),  # ROS 1 -> ROS 1 file named o4: fine
        ((str(src), "--topic", "/cam/image_raw", "--out", str(tmp_path / "o5.mcap")), ["ROS 1", str(tmp_path / "o5.mcap")]),
    ]
    for args, words in cases:
        p = cli(*args)
        if not words:
            assert p.returncode == 0, p.stderr
            continue
        assert p.returncode == 2, (args, p.stderr)
        line = error_line(p)
        for w in words:
            assert w in line, (w, line)
    assert existing.read_bytes() == b"keep"
    assert not (tmp_path / "o1.bag").exists() and not (tmp_path / "o5.mcap").exists()


def test_unsupported_encoding_names_topic_and_encoding(tmp_path):
    ts = typestore(False)
    f = cv2.cvtColor(pictures(1)[0], cv2.COLOR_BGR2GRAY)
    src = write_bag(tmp_path / "in", "sqlite3", {"/cam/image_raw": (IMG, [raw_image(ts, False, 0, f, "bayer_rggb8")])})
    p = cli(str(src), "--topic", "/cam/image_raw", "--out", str(tmp_path / "out"))
    assert p.returncode == 2
    line = error_line(p)
    assert "/cam/image_raw" in line and "bayer_rggb8" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_run_leaves_no_out_and_a_rerun_cleans_up(tmp_path, sig):
    """The run is frozen (SIGSTOP) as soon as its staged bag has data, so "mid-way" does not depend on how fast
    this machine deblurs (an AMX machine finished a 60-frame bag in 0.4 s, inside the old fixed sleep)."""
    src = _bag_with_image(tmp_path, "mcap", n=60, w=640, h=480)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "deblur.robot.bag_cli", str(src), "--topic", "/cam/image_raw", "--out", str(out),
           "--threads", THREADS]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stage = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        stage = next(iter(tmp_path.glob(".out.deblur-bag-*.tmp/out/*.mcap")), None)
        if stage is not None and stage.stat().st_size > 0:
            proc.send_signal(signal.SIGSTOP)
            break
        time.sleep(0.005)
    assert stage is not None and proc.poll() is None, "the run ended before it could be stopped mid-way"
    try:
        assert not out.exists()  # frozen before its end
    finally:
        proc.send_signal(sig)
        proc.send_signal(signal.SIGCONT)  # a stopped process takes SIGTERM only once it runs again
    _, err = proc.communicate(timeout=30)
    assert not out.exists()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        assert list(tmp_path.glob(".out.deblur-bag-*.tmp"))  # what a killed run leaves: only the stage folder
    else:
        assert proc.returncode == 130 and "interrupted" in err
        assert not list(tmp_path.glob(".out.deblur-bag-*.tmp"))
    p = cli(str(src), "--topic", "/cam/image_raw", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert not list(tmp_path.glob(".out.deblur-bag-*.tmp"))
    assert len(by_topic(read_bag(out))["/cam/deblurred/image_raw"]) == 60
