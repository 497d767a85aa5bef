"""The GStreamer element ``deblur`` end to end: real ``gst-launch-1.0`` pipelines in subprocesses, in the
environment ``deblur-gst-env`` prints (this venv is an editable install), frames dumped before and after
the element with a ``tee`` and compared with ``Deblurrer`` run here on the same input frames.
In-process checks (GstVideoMeta strides, QoS, latency) run in the system python3 through gst_probe.py."""
from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deblur.robot import gst_env
from deblur.runtime.deblurrer import Deblurrer

if shutil.which("gst-launch-1.0") is None or gst_env.missing():
    pytest.skip("GStreamer pieces missing: " + "; ".join(gst_env.missing()), allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "video" / "demo" / "shake_street.mp4"
PROBE = Path(__file__).with_name("gst_probe.py")
SYSTEM_PYTHON = "/usr/bin/python3"
W, H = 161, 121
# format -> (channels, dtype, RGB order)
LAYOUT = {"BGR": (3, np.uint8, False), "RGB": (3, np.uint8, True), "BGRx": (4, np.uint8, False),
          "RGBx": (4, np.uint8, True), "GRAY8": (1, np.uint8, False), "GRAY16_LE": (1, np.dtype("<u2"), False)}


# ------------------------------------------------------------------------------------------ helpers


def env_from(command: list[str], base: dict[str, str]) -> dict[str, str]:
    """``base`` plus what ``eval "$(deblur-gst-env)"`` would export."""
    done = subprocess.run(command, env=base, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    env = dict(base)
    for line in done.stdout.splitlines():
        word, assignment = shlex.split(line)
        assert word == "export"
        name, _, value = assignment.partition("=")
        env[name] = value
    return env


def gst_env_command() -> list[str]:
    script = Path(sys.executable).with_name("deblur-gst-env")
    return [str(script)] if script.exists() else [sys.executable, "-m", "deblur.robot.gst_env"]


def launch(pipeline: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["gst-launch-1.0", "-q", *shlex.split(pipeline)], env=env, capture_output=True, text=True,
                          timeout=120)


def read_raw(path: Path, fmt: str, w: int, h: int) -> np.ndarray:
    """Raw video/x-raw frames as GStreamer lays them out by default: every row rounded up to 4 bytes."""
    ch, dtype, _ = LAYOUT[fmt]
    row = w * ch * np.dtype(dtype).itemsize
    stride = -(-row // 4) * 4
    raw = np.fromfile(path, np.uint8)
    assert raw.size and raw.size % (stride * h) == 0, f"{path}: {raw.size} bytes is not whole {w}x{h} {fmt} frames"
    rows = raw.reshape(-1, h, stride)[:, :, :row].copy()
    frames = rows.view(dtype).reshape(-1, h, w, ch)
    return frames[..., 0] if ch == 1 else frames


@pytest.fixture(scope="module")
def ref() -> dict[bool, Deblurrer]:
    """Reference deblurrers (BGR and RGB). Made first: the backend choice they cache is the one the element reads."""
    refs = {rgb: Deblurrer("default", threads=1, rgb=rgb) for rgb in (False, True)}
    yield refs
    for d in refs.values():
        d.close()


@pytest.fixture(scope="module")
def env(ref, tmp_path_factory) -> dict[str, str]:
    base = {**os.environ, "GST_REGISTRY": str(tmp_path_factory.mktemp("gst") / "registry.bin")}
    return env_from(gst_env_command(), base)


def assert_deblurred(d: Deblurrer, before: np.ndarray, after: np.ndarray) -> None:
    assert before.shape == after.shape and before.dtype == after.dtype
    for i, (a, b) in enumerate(zip(before, after)):
        want = d(a)
        diff = np.abs(want.astype(np.int64) - b.astype(np.int64)).max()
        assert diff <= 1, f"frame {i}: element and Deblurrer differ by {diff} levels"
    changed = np.abs(before.astype(np.int64) - after.astype(np.int64)).max()
    assert changed > 1, "the element passed the frames through unchanged"


# ------------------------------------------------------------------------------------------ frames


@pytest.mark.parametrize("fmt", list(LAYOUT))
def test_formats_odd_size(fmt, env, ref, tmp_path):
    """161x121: rows padded to 4 bytes in BGR, RGB, GRAY8 and GRAY16_LE (GstVideoInfo strides)."""
    src, out = tmp_path / "in.raw", tmp_path / "out.raw"
    done = launch(f"videotestsrc num-buffers=2 pattern=smpte ! video/x-raw,format={fmt},width={W},height={H} "
                  f"! tee name=t ! queue ! filesink location={src} t. ! queue ! deblur threads=1 ! filesink location={out}", env)
    assert done.returncode == 0, done.stderr
    before, after = read_raw(src, fmt, W, H), read_raw(out, fmt, W, H)
    assert len(before) == len(after) == 2
    assert_deblurred(ref[LAYOUT[fmt][2]], before, after)


def test_video_meta_stride_and_offset(env, ref, tmp_path):
    """BGRx buffers whose GstVideoMeta says 52 padding bytes a row and a 24-byte offset: read and written in place."""
    done = subprocess.run([SYSTEM_PYTHON, str(PROBE), "stride", str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"meta_stride": W * 4 + 52, "meta_offset": 24}
    before, after = np.load(tmp_path / "in.npy"), np.load(tmp_path / "out.npy")
    assert_deblurred(ref[False], before, after)
    pad = np.load(tmp_path / "pad.npy")
    assert (pad[:, :24] == 5).all() and (pad[:, 24:] == 7).all(), "the element wrote outside the picture"


def test_demo_clip(env, ref, tmp_path):
    """The bundled H.264 clip through decodebin, 640x360 BGR, first 5 frames."""
    src, out = tmp_path / "in.raw", tmp_path / "out.raw"
    done = launch(f"filesrc location={DEMO} ! decodebin ! videoconvert ! video/x-raw,format=BGR ! identity eos-after=5 "
                  f"! tee name=t ! queue ! filesink location={src} t. ! queue ! deblur threads=1 ! filesink location={out}", env)
    assert done.returncode == 0, done.stderr
    before, after = read_raw(src, "BGR", 640, 360), read_raw(out, "BGR", 640, 360)
    # identity's eos-after ends the stream, but frames already decoded may pass first (41 once in CI): at least 5,
    # and the deblurred branch holds exactly the frames the tee's other branch saw
    assert len(before) >= 5 and len(after) == len(before), (len(before), len(after))
    assert_deblurred(ref[False], before[:8], after[:8])


# ------------------------------------------------------------------------------------------ live: QoS and latency


def test_live_qos_drops_and_latency(env):
    """A 1000 frames/s live source outruns the model: the element drops late frames (QoS) and its latency answer
    is upstream's plus its measured per-frame time."""
    done = subprocess.run([SYSTEM_PYTHON, str(PROBE), "live"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout.splitlines()[-1])
    assert r["qos"] is True
    assert r["dropped"] > 0 and r["rendered"] + r["dropped"] == r["frames"], r
    assert r["answered"] and r["latency"][0] is True
    added_s = (r["latency"][1] - r["upstream"][1]) / 1e9
    spent = sorted(r["spent_s"][1:])  # the first frame includes the backend's warm-up
    median = spent[len(spent) // 2]
    assert 0.5 * median <= added_s <= 2 * median + 0.005, (added_s, median, r["spent_s"])


# ------------------------------------------------------------------------------------------ errors and environments


def test_bad_model_is_an_element_error(env, tmp_path):
    missing = tmp_path / "no_such_model.onnx"
    done = launch(f"videotestsrc num-buffers=2 ! video/x-raw,format=BGR ! deblur model={missing} ! fakesink", env)
    assert done.returncode != 0
    assert f"{missing}: model not found" in done.stderr + done.stdout
    assert "not-negotiated" not in done.stderr + done.stdout


def test_import_failure_names_the_cause(env):
    """Without the venv on the embedded Python's path: an element error naming the missing module and the fix."""
    bare = {k: v for k, v in env.items() if k not in ("PYTHONPATH", gst_env.SITE_ENV)}
    done = launch("videotestsrc num-buffers=2 ! video/x-raw,format=BGR ! deblur ! fakesink", bare)
    text = done.stderr + done.stdout
    assert done.returncode != 0
    assert "No module named" in text and "deblur-gst-env" in text, text
    assert "not-negotiated" not in text


def test_editable_install_needs_its_finder(env):
    """An editable install is a .pth finder the embedded Python never reads: the element runs it from
    $DEBLUR_GST_SITE_PACKAGES (without it: "No module named 'deblur'", as measured)."""
    sites = env[gst_env.SITE_ENV].split(os.pathsep)
    if not any(glob.glob(os.path.join(s, "__editable__*deblur*")) for s in sites):
        pytest.skip("deblur-edge is not an editable install in this environment")
    without = {k: v for k, v in env.items() if k != gst_env.SITE_ENV}
    done = launch("videotestsrc num-buffers=2 ! video/x-raw,format=BGR,width=64,height=48 ! deblur ! fakesink", without)
    assert done.returncode != 0 and "No module named 'deblur'" in done.stderr + done.stdout
    done = launch("videotestsrc num-buffers=2 ! video/x-raw,format=BGR,width=64,height=48 ! deblur ! fakesink", env)
    assert done.returncode == 0, done.stderr


def test_activated_venv(tmp_path):
    """An activated venv puts its python3 first on PATH, which the embedded Python takes as its home
    ("pygobject initialization failed"); deblur-gst-env moves it behind /usr/bin."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("the tests do not run in a venv")
    venv_bin = str(Path(sys.prefix) / "bin")
    activated = {**os.environ, "VIRTUAL_ENV": sys.prefix, "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
                 "GST_REGISTRY": str(tmp_path / "registry.bin")}
    env = env_from(["deblur-gst-env"], activated)
    pipeline = "videotestsrc num-buffers=2 ! video/x-raw,format=BGR,width=64,height=48 ! deblur ! fakesink"
    done = launch(pipeline, env)
    assert done.returncode == 0, done.stderr
    unmoved = {**env, "PATH": activated["PATH"]}
    done = launch(pipeline, unmoved)
    assert done.returncode != 0 and "pygobject initialization failed" in done.stderr


def test_gst_env_exports(tmp_path, monkeypatch):
    """Idempotent exports; a venv's python3 ahead of /usr/bin moves behind it; a missing gst-launch names its package."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "bin" / "python3").write_text("")
    path = os.pathsep.join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
    new, moved = gst_env.loader_path(path)
    assert moved == [str(venv / "bin")]
    assert new.split(os.pathsep) == ["/usr/local/bin", "/usr/bin", str(venv / "bin"), "/bin"]
    assert gst_env.loader_path(new) == (new, [])
    first, _ = gst_env.exports({"PATH": "/usr/bin", "PYTHONPATH": "/x"})
    again, _ = gst_env.exports({**first, "PATH": "/usr/bin"})
    assert again["GST_PLUGIN_PATH"] == first["GST_PLUGIN_PATH"] and again["PYTHONPATH"] == first["PYTHONPATH"]
    assert first["PYTHONPATH"].split(os.pathsep)[-1] == "/x"
    assert (Path(first["GST_PLUGIN_PATH"].split(os.pathsep)[0]) / "python" / "deblur_element.py").is_file()
    monkeypatch.setenv("PATH", str(tmp_path))
    assert any("apt-get install gstreamer1.0-tools" in line for line in gst_env.missing())


def test_regular_install(tmp_path):
    """A wheel installed into a fresh venv (its dependencies reached through a .pth line): the element and the
    model come from that venv's site-packages."""
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    for package in ("train", "export", "runtime", "video", "robot"):
        shutil.copytree(REPO / package, src / package, ignore=skip)
    run = dict(capture_output=True, text=True, timeout=300)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                           "-w", str(tmp_path / "wheel")], **run)
    assert done.returncode == 0, done.stderr
    venv = tmp_path / "venv"
    done = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], **run)
    assert done.returncode == 0, done.stderr
    python = venv / "bin" / "python"
    wheel = next((tmp_path / "wheel").glob("deblur_edge-*.whl"))
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)], **run)
    assert done.returncode == 0, done.stderr
    site_packages = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        **run).stdout.strip())
    (site_packages / "zz_deps.pth").write_text("\n".join(gst_env.site_dirs()) + "\n")
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", gst_env.SITE_ENV, "GST_PLUGIN_PATH")}
    env = env_from([str(venv / "bin" / "deblur-gst-env")], {**base, "GST_REGISTRY": str(tmp_path / "registry.bin")})
    assert env["GST_PLUGIN_PATH"].split(os.pathsep)[0] == str(site_packages / "deblur" / "robot" / "gst")
    done = launch("videotestsrc num-buffers=2 ! video/x-raw,format=BGR,width=64,height=48 ! deblur ! fakesink",
                  {**env, "GST_DEBUG": "python:4"})
    assert done.returncode == 0, done.stderr
    assert f"Deblurrer('{site_packages}/deblur/runtime/models/default.onnx'" in done.stderr + done.stdout
